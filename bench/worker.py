"""One contender in its own process: `python bench/worker.py NAME BASE_URL`.

Each contender gets a fresh interpreter holding only its own library, so one
library's imports, caches, garbage and background threads never weigh on
another's figures. The harness talks to the worker in JSON lines: a command
on stdin, one reply on stdout. Anything a library prints goes to stderr.

Commands: `{"op": "check", "cell": {...}}` makes one call and verifies the
answer; `{"op": "run", "cell": {...}, "calls": N}` makes N calls and returns
the CPU and wall time they took; `{"op": "quit"}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from cells import Cell
from contenders import CONTENDERS, EXPECTED, EXPECTED_TOOLS, Contender


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]


def _loop(call: Callable[[], str], count: int) -> None:
    for _ in range(count):
        call()


class Worker:
    """Runs the commands. Each cell gets its own contender (its own clients and pools), so
    one cell's connection churn (a stream closing its connection) is never paid by another."""

    def __init__(self, factory: Callable[[], Contender]) -> None:
        self.factory = factory
        self.contender = factory()  # fails here, before the greeting, if the library is missing
        self.spare: Contender | None = self.contender
        self.by_cell: dict[Cell, Contender] = {}
        self.runner = asyncio.Runner()
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def use(self, cell: Cell) -> Contender:
        """The contender of `cell`, made on first use."""
        found = self.by_cell.get(cell)
        if found is None:
            found, self.spare = (self.spare or self.factory()), None
            self.by_cell[cell] = found
        self.contender = found
        return found

    def supports(self, cell: Cell) -> str | None:
        """Why this contender cannot run `cell`, or None."""
        c = self.contender
        if cell.asynchronous and not c.asynchronous:
            return "no async client"
        if not cell.asynchronous and not c.sync:
            return "no sync client"
        if cell.stream and not c.streams:
            return "no streaming"
        if cell.tools and not c.tools:
            return "no tool-call stream"
        return None

    def sync_call(self, cell: Cell) -> Callable[[], str]:
        c = self.contender
        return c.stream_tools if cell.tools else c.stream if cell.stream else c.chat

    def async_call(self, cell: Cell) -> Callable[[], Awaitable[str]]:
        c = self.contender
        return c.astream_tools if cell.tools else c.astream if cell.stream else c.achat

    def check(self, cell: Cell) -> dict[str, Any]:
        c = self.contender
        text = self.runner.run(self.async_call(cell)()) if cell.asynchronous else self.sync_call(cell)()
        expected = EXPECTED_TOOLS if cell.tools else EXPECTED[cell.stream]
        if text != expected:
            return {"ok": False, "note": f"answer was {text!r}, expected {expected!r}"}
        note = c.check(stream=cell.stream, asynchronous=cell.asynchronous)
        return {"ok": not note, "note": note}

    def run(self, cell: Cell, calls: int) -> dict[str, Any]:
        # No gc.collect() here: a library's garbage collections are part of its cost, and
        # a full collection of a large heap (litellm's) would take longer than a round.
        if cell.asynchronous:
            cpu, wall = self.runner.run(self._run_async(cell, calls))
        else:
            cpu, wall = self._run_sync(cell, calls)
        return {"calls": calls, "cpu": cpu, "wall": wall, "items": calls * cell.items_per_call}

    def _run_sync(self, cell: Cell, calls: int) -> tuple[float, float]:
        call = self.sync_call(cell)
        if cell.concurrency == 1:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            _loop(call, calls)
            return time.process_time() - cpu0, time.perf_counter() - wall0
        pool = self.pools.get(cell.concurrency)
        if pool is None:
            pool = self.pools[cell.concurrency] = ThreadPoolExecutor(cell.concurrency)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        futures = [pool.submit(_loop, call, share) for share in _shares(calls, cell.concurrency)]
        for future in futures:
            future.result()
        return time.process_time() - cpu0, time.perf_counter() - wall0

    async def _run_async(self, cell: Cell, calls: int) -> tuple[float, float]:
        call = self.async_call(cell)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if cell.concurrency == 1:
            for _ in range(calls):
                await call()
        else:
            semaphore = asyncio.Semaphore(cell.concurrency)

            async def one() -> None:
                async with semaphore:
                    await call()

            await asyncio.gather(*(one() for _ in range(calls)))
        return time.process_time() - cpu0, time.perf_counter() - wall0

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()
        try:
            for contender in {id(c): c for c in [*self.by_cell.values(), self.contender]}.values():
                contender.close()
                self.runner.run(contender.aclose())
        finally:
            self.runner.close()


def _protocol_stream() -> TextIO:
    """Keep the real stdout for replies; send whatever libraries print to stderr."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return out


def _baseline() -> str:
    """The baseline checkout's commit, as its label says it."""
    import subprocess

    from harness import BASELINE_ENV

    found = subprocess.run(
        ["git", "-C", os.environ[BASELINE_ENV], "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or os.environ[BASELINE_ENV]


def main() -> None:
    name, base_url = sys.argv[1], sys.argv[2]
    out = _protocol_stream()

    def reply(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")

    # `turnout@base`: the same contender, on the baseline checkout's turnout (see harness.py).
    kind, _, baseline = name.partition("@")
    try:
        worker = Worker(lambda: CONTENDERS[kind](base_url))
    except ImportError as exc:
        reply({"ready": False, "skip": f"not installed: {exc.name or exc}"})
        return
    except Exception as exc:
        reply({"ready": False, "skip": f"set-up failed: {type(exc).__name__}: {exc}"})
        return
    contender = worker.contender
    if baseline:
        contender.label += f" @ baseline {_baseline()}"
    versions = {} if baseline else contender.versions()
    reply({"ready": True, "label": contender.label, "versions": versions, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            if op == "quit":
                break
            cell = Cell.from_json(command["cell"])
            worker.use(cell)
            unsupported = worker.supports(cell)
            if unsupported:
                reply({"skip": unsupported})
                continue
            try:
                result = worker.check(cell) if op == "check" else worker.run(cell, int(command["calls"]))
            except Exception as exc:
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            reply(result)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
