"""The request benchmarks: the upstream, one worker process per contender, rounds interleaved.

Every contender runs in its own interpreter (see worker.py) and the upstream
in another, so the CPU time a worker measures with `time.process_time()` is
its library's and the harness's loop only. The harness itself waits on pipes
while a worker runs. Rounds are interleaved: round r runs every cell, and in
each cell every contender in turn (the order rotating from round to round),
so slow drifts of the machine spread over all of them alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cells import Cell, Sample, Series

HERE = Path(__file__).resolve().parent
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


# A contender named `NAME@base` is NAME run on the turnout of another checkout (`--baseline`):
# its worker imports turnout from this directory's core/src.
BASELINE_ENV = "TURNOUT_BENCH_BASELINE"


def child_env(name: str = "") -> dict[str, str]:
    """The environment of every child: litellm must never fetch its cost map from the network.
    A baseline contender's child imports turnout from the baseline checkout."""
    env = {**os.environ, **LITELLM_ENV, "PYTHONDONTWRITEBYTECODE": "0"}
    if name.endswith("@base"):
        core = str(Path(os.environ[BASELINE_ENV]) / "core" / "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (core, env.get("PYTHONPATH", "")) if p)
    return env


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- CPU placement -------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the upstream and the clients may use (Linux only; None: anywhere)."""

    server: frozenset[int] | None
    clients: frozenset[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        if not pin or not hasattr(os, "sched_getaffinity"):
            return cls(None, None)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None)
        return cls(frozenset(cpus[-1:]), frozenset(cpus[:-1]))

    def describe(self) -> str:
        if self.server is None or self.clients is None:
            return "not pinned"
        return (
            f"upstream pinned to CPU {','.join(map(str, sorted(self.server)))}, "
            f"clients to CPU {','.join(map(str, sorted(self.clients)))}"
        )

    @staticmethod
    def apply(pid: int, cpus: frozenset[int] | None) -> None:
        """Pin a process (0: this one, and so every child it starts from now on)."""
        if cpus is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)


# -- the upstream --------------------------------------------------------------


class Upstream:
    """The loopback server in its own process; it also stops by itself (see loopback.py)."""

    def __init__(self, placement: Placement, max_seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "loopback.py"), "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        Placement.apply(self.process.pid, placement.server)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the upstream did not start: {line!r}")
        self.port = int(line)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        """`{"connections": accepted so far, "requests": {path: count}}` (this request included)."""
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=5) as response:  # noqa: S310 - loopback
            stats: dict[str, Any] = json.load(response)
        return stats

    def connections(self) -> int:
        return int(self.stats()["connections"])

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # its signal to stop
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- workers -------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class Worker:
    """One contender's process, driven by JSON lines."""

    def __init__(self, name: str, base_url: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.log: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "worker.py"), name, base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=child_env(name),
            cwd=HERE,
        )
        self._buffer = b""
        self.ready = False
        self.skip: str | None = "not started"
        self.label = name
        self.versions: dict[str, str] = {}

    def wait_ready(self) -> None:
        """Read the worker's greeting: its library is imported and its clients are built."""
        try:
            hello = self._read(self.timeout)
        except WorkerError as exc:
            hello = {"ready": False, "skip": str(exc).splitlines()[0]}
        self.ready = bool(hello.get("ready"))
        self.skip = hello.get("skip")
        self.label = hello.get("label", self.name)
        self.versions = hello.get("versions", {})

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.name}: no answer within {timeout:.0f}s")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                piece = os.read(fd, 65536)
                if not piece:
                    raise WorkerError(f"{self.name}: the worker exited\n{self.tail()}")
                self._buffer += piece
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self._read(self.timeout)

    def tail(self, lines: int = 15) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                assert self.process.stdin is not None
                self.process.stdin.write(b'{"op": "quit"}\n')
                self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# -- the matrix ----------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rounds: int
    calls: int  # per round, plain cells
    stream_calls: int  # per round, streamed cells
    # Contenders whose calls cost ~10x the others' run calls // divisor (same relative precision).
    divisors: dict[str, int] = field(default_factory=dict)
    cells: dict[Cell, tuple[str, ...]] = field(default_factory=dict)
    timeout: float = 300.0
    # Each round's calls are made in up to this many interleaved slices.
    slices: int = 3

    def calls_for(self, cell: Cell, contender: str) -> int:
        base = self.stream_calls if cell.stream else self.calls
        return max(cell.concurrency if cell.concurrency > 1 else 1, base // self.divisors.get(contender, 1))


@dataclass
class MatrixResult:
    series: dict[tuple[Cell, str], Series]
    labels: dict[str, str]
    versions: dict[str, str]
    skipped: dict[str, str]
    upstream: dict[str, Any]
    seconds: float


def _rotated(names: Sequence[str], by: int) -> list[str]:
    if not names:
        return []
    k = by % len(names)
    return [*names[k:], *names[:k]]


@contextlib.contextmanager
def _workers(names: Sequence[str], base_url: str, timeout: float) -> Iterator[dict[str, Worker]]:
    started: dict[str, Worker] = {}
    try:
        began = time.perf_counter()
        for name in names:  # all at once: their imports overlap
            started[name] = Worker(name, base_url, timeout)
        for name, worker in started.items():
            worker.wait_ready()
            state = "ready" if worker.ready else f"skipped ({worker.skip})"
            log(f"  worker {name}: {state} after {time.perf_counter() - began:.1f}s")
        yield started
    finally:
        for worker in started.values():
            worker.close()


class _Session:
    """One run of the matrix: the upstream, the live workers and what they measured."""

    def __init__(self, plan: Plan, upstream: Upstream, workers: dict[str, Worker]) -> None:
        self.plan = plan
        self.upstream = upstream
        self.workers = workers
        self.series = {(cell, n): Series(n, cell) for cell, names in plan.cells.items() for n in names}
        self.live = {cell: [n for n in names if workers[n].ready] for cell, names in plan.cells.items()}

    def ask(self, cell: Cell, name: str, command: dict[str, Any]) -> dict[str, Any] | None:
        """Send a command; a failure or a skip stops this contender in this cell."""
        entry = self.series[(cell, name)]
        if entry.skipped is not None:
            return None
        try:
            reply = self.workers[name].ask({**command, "cell": cell.to_json()})
        except WorkerError as exc:
            entry.skipped = str(exc).splitlines()[0]
            return None
        if "skip" in reply or "error" in reply:
            entry.skipped = reply.get("skip") or f"failed: {reply['error']}"
            return None
        return reply

    def check(self, stage: str) -> None:
        for cell, names in self.live.items():
            for name in names:
                reply = self.ask(cell, name, {"op": "check"})
                if reply is not None and not reply["ok"]:
                    self.series[(cell, name)].notes.append(f"{stage}: {reply['note']}")

    def warm_up(self) -> None:
        """Fill every pool (at least `concurrency` calls) before anything is measured."""
        for cell, names in self.live.items():
            for name in names:
                calls = max(cell.concurrency, self.plan.calls_for(cell, name) // 4)
                self.ask(cell, name, {"op": "run", "calls": calls})

    def round(self, index: int) -> None:
        """Every cell; in each, every contender in turn, in slices: A B C A B C ... so that
        the blocks compared with each other ran within moments of each other."""
        for cell, names in self.live.items():
            order = _rotated(names, index)
            for name in order:
                # Untimed first: as many calls as the concurrency, so that connections which
                # expired since the last round (httpx keeps idle ones 5 s) are open again and
                # the round measures the steady state.
                self.ask(cell, name, {"op": "run", "calls": cell.concurrency})
            shares = {name: self._slices(cell, name) for name in order}
            parts: dict[str, list[Sample]] = {name: [] for name in order}
            for piece in range(max(len(share) for share in shares.values())):
                for name in order:
                    if piece < len(shares[name]):
                        sample = self._timed(cell, name, shares[name][piece])
                        if sample is not None:
                            parts[name].append(sample)
            for name, samples in parts.items():
                if samples and len(samples) == len(shares[name]):
                    self.series[(cell, name)].samples.append(Sample.total(samples))

    def _slices(self, cell: Cell, name: str) -> list[int]:
        """A round's calls cut in up to `plan.slices` pieces of at least `concurrency` calls."""
        calls = self.plan.calls_for(cell, name)
        count = max(1, min(self.plan.slices, calls // max(cell.concurrency, 1)))
        base, extra = divmod(calls, count)
        return [base + (1 if i < extra else 0) for i in range(count)]

    def _timed(self, cell: Cell, name: str, calls: int) -> Sample | None:
        before = self.upstream.connections()
        reply = self.ask(cell, name, {"op": "run", "calls": calls})
        # Minus one: the connection of the second /stats request itself.
        opened = self.upstream.connections() - before - 1
        if reply is None:
            return None
        return Sample(reply["calls"], reply["cpu"], reply["wall"], reply["items"], opened)


def run_matrix(plan: Plan, placement: Placement, progress: Callable[[str], None] = log) -> MatrixResult:
    began = time.perf_counter()
    names = list(dict.fromkeys(name for cell_names in plan.cells.values() for name in cell_names))
    upstream = Upstream(placement, max_seconds=60 * 60)
    try:
        with _workers(names, upstream.base_url, plan.timeout) as workers:
            session = _Session(plan, upstream, workers)
            progress("  checking every contender's answers, then warming up")
            session.check("before the rounds")
            session.warm_up()
            for index in range(plan.rounds):
                started = time.perf_counter()
                session.round(index)
                progress(f"  round {index + 1}/{plan.rounds} done in {time.perf_counter() - started:.1f}s")
            session.check("after the rounds")
            labels = {name: w.label for name, w in workers.items()}
            versions = {k: v for w in workers.values() for k, v in w.versions.items()}
            skipped = {name: w.skip or "" for name, w in workers.items() if not w.ready}
        stats = upstream.stats()
    finally:
        upstream.stop()
    return MatrixResult(session.series, labels, versions, skipped, stats, time.perf_counter() - began)
