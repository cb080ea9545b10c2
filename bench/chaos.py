"""Chaos benchmark: turnout's default resilience against misbehaving upstreams over loopback HTTP.

    python bench/chaos.py            # every scenario, sync and async (about 3 minutes)
    python bench/chaos.py --quick    # fewer calls, a shorter dead-upstream run
    nox -s chaos

A chaos upstream (bench/chaos_upstream.py, in its own process on 127.0.0.1)
answers each request as its path says:

    /healthy/...     always a completion
    /degraded/...    30 % of answers fail at random, spread over 429 (Retry-After 1),
                     500, 503, an HTML 502 page, a garbage 200, a reset connection,
                     and a stall longer than the request timeout
    /ratelimited/... 20 % of answers are 429 with Retry-After between 0.5 and 1 s
    /flapping/...    503 for 10 s out of every 30 s
    /dead/...        every connection is reset before an answer

Routers use turnout's defaults (breaker, retry budget, retry policy), with a
10 s deadline and a 2 s timeout per request. Every call is checked to end
within its deadline + 1 s. Reported: calls answered, attempts per call (the
router's), requests the upstream received per call, and for a dead upstream
among healthy ones the requests it received per breaker open period.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import turnout

HERE = Path(__file__).resolve().parent
DEADLINE = 10.0
TIMEOUT = 2.0
MESSAGES = [{"role": "user", "content": "hello"}]
BREAKER = turnout.BreakerConfig()  # the defaults, which the benchmark measures


class Chaos(turnout.OpenAICompatible):
    """An OpenAI-compatible gateway with turnout's default retry policy."""

    name = "chaos"
    default_base_url = "http://127.0.0.1:9/v1"


class Upstream:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "chaos_upstream.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.base = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(f"{self.base}/stats", timeout=5).json()
        return counts

    def reset(self) -> None:
        httpx.post(f"{self.base}/reset", timeout=5)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@dataclass
class Result:
    scenario: str
    mode: str
    calls: int
    answered: int
    attempts: int
    requests: int
    slowest: float
    median: float
    errors: dict[str, int]

    @property
    def share(self) -> float:
        return self.answered / self.calls


def plugins() -> turnout.Plugins:
    found = turnout.Plugins(entry_points=False)
    found.add_provider(Chaos())
    return found


def deployments(upstream: Upstream, paths: list[str]) -> list[turnout.Deployment]:
    return [
        turnout.Deployment(
            f"d{i}", "chaos", "m", api_key=f"sk-chaos-{i}", base_url=f"{upstream.base}/{path}/v1"
        )
        for i, path in enumerate(paths)
    ]


def run(
    upstream: Upstream,
    scenario: str,
    paths: list[str],
    *,
    mode: str,
    calls: int,
    concurrency: int = 20,
    pace: float = 0.0,
) -> Result:
    """`calls` calls at `concurrency` (one every `pace` seconds at most), through a fresh router."""
    upstream.reset()
    outcomes: list[tuple[bool, int, float, str]] = []
    deps = deployments(upstream, paths)

    def record(started: float, response: Any, error: Any) -> None:
        elapsed = time.monotonic() - started
        if error is None:
            outcomes.append((True, len(response.attempts), elapsed, ""))
        else:
            attempts = len(getattr(error, "attempts", ()))
            outcomes.append((False, attempts, elapsed, type(error).__name__))

    began = time.monotonic()
    if mode == "sync":
        with turnout.Router(deps, plugins=plugins(), deadline=DEADLINE, timeout=TIMEOUT) as router:

            def one(index: int) -> None:
                time.sleep(max(0.0, began + index * pace - time.monotonic()))
                started = time.monotonic()
                try:
                    record(started, router.chat(MESSAGES), None)
                except turnout.TurnoutError as error:
                    record(started, None, error)

            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(calls)))
    else:

        async def main() -> None:
            gate = asyncio.Semaphore(concurrency)
            async with turnout.AsyncRouter(
                deps, plugins=plugins(), deadline=DEADLINE, timeout=TIMEOUT
            ) as router:

                async def one(index: int) -> None:
                    await asyncio.sleep(index * pace)
                    async with gate:
                        started = time.monotonic()
                        try:
                            record(started, await router.chat(MESSAGES), None)
                        except turnout.TurnoutError as error:
                            record(started, None, error)

                await asyncio.gather(*(one(i) for i in range(calls)))

        asyncio.run(main())
    served = upstream.stats()
    errors: dict[str, int] = {}
    for ok, _, _, name in outcomes:
        if not ok:
            errors[name] = errors.get(name, 0) + 1
    return Result(
        scenario,
        mode,
        len(outcomes),
        sum(1 for o in outcomes if o[0]),
        sum(o[1] for o in outcomes),
        sum(served.values()),
        max(o[2] for o in outcomes),
        statistics.median(o[2] for o in outcomes),
        errors,
    )


def dead_among_healthy(
    upstream: Upstream, *, mode: str, seconds: float, rate: float = 10.0
) -> tuple[Result, list[float]]:
    """A dead deployment first in a route of three: after its breaker trips (twelve
    failures in a row), the times its probes arrive (seconds after the trip)."""
    calls = int(seconds * rate)
    result = run(
        upstream, "dead among healthy", ["dead", "healthy", "healthy"], mode=mode, calls=calls, pace=1 / rate
    )
    times = [float(t) for t in httpx.get(f"{upstream.base}/times/dead", timeout=5).json()]
    trip = BREAKER.consecutive_failures
    after = times[trip - 1] if len(times) >= trip else 0.0
    return result, [round(t - after, 1) for t in times[trip:]]


def row(result: Result) -> list[str]:
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items())) or "-"
    return [
        result.scenario,
        result.mode,
        f"{result.answered}/{result.calls} ({result.share:.1%})",
        f"{result.attempts / result.calls:.2f}",
        f"{result.requests / result.calls:.2f}",
        f"{result.median:.2f} s / {result.slowest:.2f} s",
        errors,
    ]


def table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    calls = 200 if args.quick else 600
    dead_seconds = 35.0 if args.quick else 95.0
    flap_pace = (40.0 if args.quick else 90.0) / calls
    upstream = Upstream()
    results: list[Result] = []
    probes: dict[str, list[float]] = {}
    failed: list[str] = []
    try:
        for mode in ("sync", "async"):
            scenarios: list[tuple[str, list[str], Callable[[Result], bool], float]] = [
                ("degraded 30 %, two deployments", ["degraded", "degraded"], lambda r: r.share >= 0.95, 0.0),
                ("429 20 %, one deployment", ["ratelimited"], lambda r: r.share >= 0.95, 0.0),
                ("primary dead, secondary healthy", ["dead", "healthy"], lambda r: r.share == 1.0, 0.0),
                # Paced over a minute and a half (quick: 40 s): the upstream is down a third of the time.
                ("flapping, two deployments", ["flapping", "flapping"], lambda r: True, flap_pace),
            ]
            for label, paths, target, pace in scenarios:
                print(f"{mode}: {label} ...", file=sys.stderr, flush=True)
                result = run(upstream, label, paths, mode=mode, calls=calls, pace=pace)
                results.append(result)
                if not target(result):
                    failed.append(f"{mode}: {label}: {result.share:.1%} answered")
                if result.slowest > DEADLINE + 1.0:
                    failed.append(f"{mode}: {label}: a call took {result.slowest:.2f} s")
            print(f"{mode}: dead among healthy ({dead_seconds:g} s) ...", file=sys.stderr, flush=True)
            result, probe_times = dead_among_healthy(upstream, mode=mode, seconds=dead_seconds)
            results.append(result)
            probes[mode] = probe_times
            # One probe per open period: each at least the shortest open time (open_for
            # less its jitter) after the one before.
            gaps = [b - a for a, b in zip([0.0, *probe_times], probe_times, strict=False)]
            shortest = BREAKER.open_for * (1 - BREAKER.jitter)
            if any(gap < shortest - 0.5 for gap in gaps):
                failed.append(f"{mode}: probes to the dead upstream came closer than {shortest:g} s: {gaps}")
    finally:
        upstream.stop()
    head = [
        "upstream",
        "router",
        "answered",
        "attempts/call",
        "upstream requests/call",
        "call time p50 / max",
        "errors",
    ]
    print(table([row(r) for r in results], head))
    print()
    for mode, times in probes.items():
        print(f"- {mode}: after the trip, the dead upstream's probes came at {times} s")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"share": r.share} for r in results], indent=1))
    for problem in failed:
        print(f"MISSED: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
