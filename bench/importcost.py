"""Import cost: each statement in a fresh interpreter, repeated, interleaved, median.

The child times only the statement (the interpreter's own start-up is the
same for all and is shown as the `pass` row), then reports its peak RSS
(`ru_maxrss`, which includes the interpreter itself: compare with `pass`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from cells import Spread
from harness import child_env

# What is imported, as a user's first lines would do it.
STATEMENTS: dict[str, str] = {
    "nothing (the interpreter alone)": "pass",
    "import httpx": "import httpx",
    "import turnout": "import turnout",
    "import turnout + turnout.providers()": "import turnout\nfound = turnout.providers()",
    "import turnout + providers() + turnout.Router": (
        "import turnout\nfound = turnout.providers()\nturnout.Router"
    ),
    "import openai": "import openai",
    "import litellm": "import litellm",
}

_CHILD = """
import json, resource, sys, time
found = None
statement = sys.argv[1]
cpu0, wall0 = time.process_time(), time.perf_counter()
exec(compile(statement, "<bench>", "exec"))
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
modules = len(sys.modules)
print(json.dumps({"wall": wall, "cpu": cpu, "rss_kib": rss, "modules": modules,
                  "found": sorted(found) if isinstance(found, dict) else None}))
"""


@dataclass
class ImportResult:
    label: str
    statement: str
    wall: list[float]
    cpu: list[float]
    rss_mib: float
    modules: int
    found: list[str] | None
    error: str | None = None

    @property
    def wall_spread(self) -> Spread:
        return Spread.of(self.wall)

    @property
    def cpu_spread(self) -> Spread:
        return Spread.of(self.cpu)


def _once(statement: str, cwd: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, statement],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=cwd,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(last)
    reply: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


def measure_imports(repeats: int, *, warm_up: bool = True) -> list[ImportResult]:
    """Run every statement `repeats` times (after one unmeasured run that warms the
    bytecode caches, unless `warm_up` is false), interleaved so that a busy moment hits
    all of them."""
    results = {label: ImportResult(label, stmt, [], [], 0.0, 0, None) for label, stmt in STATEMENTS.items()}
    first = 0 if warm_up else 1
    # A neutral directory: nothing in it shadows an installed module.
    with tempfile.TemporaryDirectory() as cwd:
        for run in range(first, repeats + 1):
            for result in results.values():
                if result.error is not None:
                    continue
                try:
                    reply = _once(result.statement, cwd)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    result.error = str(exc)
                    continue
                if run == 0:
                    continue
                result.wall.append(float(reply["wall"]))  # type: ignore[arg-type]
                result.cpu.append(float(reply["cpu"]))  # type: ignore[arg-type]
                result.rss_mib = max(result.rss_mib, float(reply["rss_kib"]) / 1024)  # type: ignore[arg-type]
                result.modules = int(reply["modules"])  # type: ignore[call-overload]
                found = reply.get("found")
                result.found = list(found) if isinstance(found, list) else None
    return list(results.values())


def median_wall(results: list[ImportResult], label: str) -> float | None:
    for result in results:
        if result.label == label and result.wall:
            return statistics.median(result.wall)
    return None
