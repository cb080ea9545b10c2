"""Wall time of `import turnout`, of `turnout.providers()` after it, and of `import httpx`,
each in a fresh interpreter, median of 15.

    python bench/import_time.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

TIMED = (
    "import time, json; t = time.perf_counter(); {stmt}; a = time.perf_counter() - t; {after}; "
    "print(json.dumps([a, time.perf_counter() - t]))"
)


def run(stmt: str, after: str = "pass") -> tuple[float, float]:
    code = TIMED.format(stmt=stmt, after=after)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, total = json.loads(out)
    return first, total - first


def main(repeats: int = 15) -> None:
    rows: dict[str, list[float]] = {"import turnout": [], "turnout.providers()": [], "import httpx": []}
    for _ in range(repeats):
        imported, discovered = run("import turnout", "turnout.providers()")
        rows["import turnout"].append(imported)
        rows["turnout.providers()"].append(discovered)
        rows["import httpx"].append(run("import httpx")[0])
    for name, values in rows.items():
        print(f"{name:22s} median {statistics.median(values) * 1000:6.1f} ms (min {min(values) * 1000:.1f})")


if __name__ == "__main__":
    main()
