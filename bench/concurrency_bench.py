"""The concurrency cell: `python bench/concurrency_bench.py [--quick]`.

AsyncRouter's default transport at 50 and 200 concurrent plain calls, against
raw `httpx.AsyncClient` (the floor the target is written against), the same
router on httpx's `AsyncHTTPTransport` (its default before issue 21), and
both on httpx-aiohttp's transport. The same harness as bench/run.py: one
worker process per contender, the loopback upstream in its own process,
rounds interleaved, CPU per request from `time.process_time()` in the worker.

Writes its own section of docs/benchmarks.md, between the markers
`CONCURRENCY_START` and `CONCURRENCY_END` (bench/merge.py); the rest of the
page stays as its own runs made it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import time
from pathlib import Path

from cells import Cell, Series, paired_ratios
from harness import MatrixResult, Placement, Plan, log, run_matrix
from merge import CONCURRENCY_END, CONCURRENCY_START, splice
from report import DASH, TIMES, load_average, machine, rate, spread, times, us

ROOT = Path(__file__).resolve().parent.parent
RAW, OURS, BEFORE = "httpx", "turnout", "turnout-httpcore"
CONTENDERS = (RAW, "httpx-aiohttp", OURS, BEFORE, "turnout-aiohttp")
TARGET = 0.35  # issue 21: CPU per request at concurrency 50 <= 0.35 x raw httpx.AsyncClient
LE = "\u2264"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 2)")
    parser.add_argument("--calls", type=int, help="calls per contender per round and level (default 600)")
    parser.add_argument("--levels", default="50,200", help="concurrency levels (default 50,200)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the upstream and clients to CPUs")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the report")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 7)
    args.calls = args.calls or (200 if args.quick else 600)
    args.levels = [int(level) for level in args.levels.split(",")]
    return args


def _series(result: MatrixResult, cell: Cell, name: str) -> Series | None:
    found = result.series.get((cell, name))
    return found if found is not None and found.samples else None


def _median_cpu(result: MatrixResult, cell: Cell, name: str) -> float | None:
    found = _series(result, cell, name)
    return statistics.median(found.cpu()) if found is not None else None


def _target_rows(result: MatrixResult, levels: list[int]) -> list[str]:
    rows = []
    for level in levels:
        cell = Cell(False, True, level)
        ours, raw = _series(result, cell, OURS), _series(result, cell, RAW)
        text = (
            f"AsyncRouter, default transport, concurrency {level}: CPU per request "
            f"{LE} {TARGET} {TIMES} raw httpx.AsyncClient"
        )
        if ours is None or raw is None:
            rows.append(f"| {text} | not measured | n/a |")
            continue
        ratios = paired_ratios(ours, raw)
        passed = sum(1 for r in ratios if r <= TARGET)
        verdict = "pass" if statistics.median(ratios) <= TARGET else "**miss**"
        if 0 < passed < len(ratios):
            verdict += f" ({passed} of {len(ratios)} rounds pass)"
        rows.append(f"| {text} | {spread(ratios, times)} | {verdict} |")
    return rows


def _table(result: MatrixResult, level: int, plan: Plan) -> list[str]:
    cell = Cell(False, True, level)
    raw = _series(result, cell, RAW)
    lines = [
        f"#### concurrency {level}",
        "",
        f"| contender | calls/round | CPU µs per request | {TIMES} raw httpx | calls/s "
        "| new connections/round |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in CONTENDERS:
        entry = result.series.get((cell, name))
        label = result.labels.get(name, name)
        if name == BEFORE:
            label += " (the default before)"
        if entry is None or not entry.samples:
            reason = (entry.skipped if entry is not None else None) or result.skipped.get(name) or "not run"
            lines.append(f"| {label} | {DASH} | {DASH} | {DASH} | {DASH} | skipped: {reason} |")
            continue
        ratio = spread(paired_ratios(entry, raw), times) if raw is not None and name != RAW else "1"
        lines.append(
            f"| {label} | {plan.calls_for(cell, name)} | {spread(entry.cpu(), us)} | {ratio} "
            f"| {spread(entry.rate(), rate)} | {statistics.median(entry.connections()):,.0f} |"
        )
    return [*lines, ""]


def _why(result: MatrixResult, levels: list[int]) -> list[str]:
    """The choice of transport, with this run's figures in it."""
    cell = Cell(False, True, levels[0])
    figures = {name: _median_cpu(result, cell, name) for name in CONTENDERS}
    ours, aio, before = figures[OURS], figures["turnout-aiohttp"], figures[BEFORE]
    measured = ""
    if ours is not None and aio is not None and before is not None:
        measured = (
            f" At concurrency {levels[0]} in this run: {us(before)} µs per request on httpx's pool, "
            f"{us(ours)} µs on the router's own, {us(aio)} µs on httpx-aiohttp's."
        )
    return [
        "### Why this transport",
        "",
        "httpcore's async pool (what `httpx.AsyncHTTPTransport` is) walks every queued request and "
        "every connection, and polls each idle connection's socket, on every request and every "
        "response closed: its cost per request grows with the calls in flight. AsyncRouter's default "
        "transport (`turnout._async_transport`) keeps httpcore's HTTP/1.1 connections and exceptions "
        "and replaces only that bookkeeping: per origin a stack of idle connections (the most recent "
        "is reused, its socket checked once), a count of open ones and a queue of waiters, so a "
        f"request costs the same with 1 or 200 others in flight.{measured}",
        "",
        "httpx-aiohttp's transport is cheaper still (aiohttp parses HTTP in C); both are well under "
        "the target. The router's own pool is the default because it needs no dependency: a plain "
        "`pip install turnout` gets it, where aiohttp would add aiohttp, multidict, yarl, frozenlist, "
        "aiosignal, propcache and aiohappyeyeballs to every install (or stay an extra most users never "
        "install). It also keeps httpx's exceptions, so every failure is normalized as before, and it "
        "honours `max_keepalive` and the pool timeout as httpx does (httpx-aiohttp reports a refused "
        "connection, a reset and a server that hung up all as `ConnectTimeout`; turnout reads the "
        "cause, so the kinds are right on it too). Through a proxy from the environment (`HTTPS_PROXY` "
        "and the like) requests go through httpx's own transport, as before. "
        "`transport=httpx_aiohttp.AiohttpTransport()` (the `aiohttp` extra) remains an option, and "
        "is what `turnout serve` uses by default.",
        "",
    ]


def render(
    result: MatrixResult, plan: Plan, args: argparse.Namespace, host: dict[str, str], took: float
) -> str:
    lines = [
        CONCURRENCY_START,
        "## Many concurrent calls: AsyncRouter's transport",
        "",
        "<!-- Generated by bench/concurrency_bench.py: do not edit by hand, run it again. -->",
        "",
        f"Plain calls through `asyncio.gather` + `Semaphore(N)` against the loopback upstream of the "
        f"request matrix; `{args.command}`. Each contender in its own worker process, "
        f"{args.rounds} rounds, interleaved in slices, the order rotating; CPU per request is the "
        "worker's `time.process_time()` over a round divided by its calls; medians (min to max); "
        "ratios are medians of per-round ratios. Every client and router allows 200 connections; "
        "httpx's pool keeps 50 of them idle, httpx-aiohttp's transport and AsyncRouter's own pool keep "
        "every connection they opened (for 5 s).",
        "",
        f"Machine: {host['CPU']}, {host['cores']}, {host['Python']}; {host['CPU placement']}; load "
        f"average at the start {host['load average when the run started (1 / 5 / 15 min)']}, at the "
        f"end {load_average()}. Started {args.started}, took {took:.0f} s. Versions: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(result.versions.items()))}.",
        "",
        "### Targets",
        "",
        f"| target | measured: median (min{DASH}max) | result |",
        "|---|---|---|",
        *_target_rows(result, args.levels),
        "",
        "### Figures",
        "",
    ]
    for level in args.levels:
        lines += _table(result, level, plan)
    lines += _why(result, args.levels)
    lines.append(CONCURRENCY_END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.command = "python bench/concurrency_bench.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    args.started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    began = time.perf_counter()
    placement = Placement.choose(not args.no_pin)
    host = machine(placement.describe())
    Placement.apply(0, placement.clients)
    cells = {Cell(False, True, level): CONTENDERS for level in args.levels}
    plan = Plan(rounds=args.rounds, calls=args.calls, stream_calls=args.calls, cells=cells)
    log(f"concurrency cell: levels {args.levels}, {args.rounds} rounds, {placement.describe()}")
    result = run_matrix(plan, placement)
    section = render(result, plan, args, host, time.perf_counter() - began)
    text = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
    args.output.write_text(splice(text, section), encoding="utf-8")
    log(f"wrote {args.output}")
    for row in _target_rows(result, args.levels):
        log("  " + row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
