"""Benchmarks of turnout against raw httpx and its peers: `python bench/run.py [--quick]`.

Runs, in this order: import cost (fresh interpreters), error normalization
throughput (per installed provider), then the request matrix (plain and
streamed, sync and async, sequential and at concurrency 50; a stream of tool
calls, sync and async) against a loopback upstream, every contender in its
own process, rounds interleaved. Writes the markdown report to
docs/benchmarks.md (see `--output`).

`--cells tools --merge` measures some cells only and merges their targets and
tables into the existing report (the rest of it stays as its own run made it).

`--baseline DIR` also runs every turnout contender on the turnout of another
checkout (a git worktree of an earlier commit: `git worktree add /tmp/base REV`),
as `NAME@base`, rounds interleaved with this tree's; it prints each cell's
per-round ratio, this tree to the baseline. Before/after figures of a change
come from one such run, not from two runs made at different times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cells import Cell
from harness import BASELINE_ENV, Placement, Plan, log, run_matrix
from importcost import measure_imports
from merge import kept_sections, merge, splice
from normbench import measure_normalization
from report import against_baseline, machine, render, targets

ROOT = Path(__file__).resolve().parent.parent
EVERYONE = ("httpx", "turnout", "turnout-fallback", "openai", "litellm")
AIOHTTP = ("httpx-aiohttp", "turnout-aiohttp")
# The tool-call stream compares turnout with the floor: raw httpx + httpx-sse, assembling
# the calls by hand.
TOOLS = ("httpx", "turnout")


def cells(concurrency: int, only: str | None = None) -> dict[Cell, tuple[str, ...]]:
    """Every cell and its contenders; the aiohttp transport only exists for async clients.
    `only`: comma-separated cell keys (`tools/sync/c1`) or their first parts (`tools`)."""
    found: dict[Cell, tuple[str, ...]] = {}
    for stream in (False, True):
        for level in (1, concurrency):
            found[Cell(stream, False, level)] = EVERYONE
            found[Cell(stream, True, level)] = EVERYONE + AIOHTTP
    for asynchronous in (False, True):
        found[Cell(True, asynchronous, 1, tools=True)] = TOOLS
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        every = ", ".join(cell.key for cell in found)
        found = {
            c: n for c, n in found.items() if any(c.key == w or c.key.startswith(w + "/") for w in wanted)
        }
        if not found:
            raise SystemExit(f"--cells {only!r} names no cell; cells: {every}")
    return found


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 2)")
    parser.add_argument(
        "--calls", type=int, help="plain calls per contender per round (default 150; quick 20)"
    )
    parser.add_argument(
        "--stream-calls", type=int, help="streams per contender per round (default 40; quick 6)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="the concurrent level (default 50)")
    parser.add_argument(
        "--import-repeats", type=int, help="fresh interpreters per import (default 7; quick 2)"
    )
    parser.add_argument("--norm-seconds", type=float, help="CPU seconds per provider (default 1; quick 0.1)")
    parser.add_argument(
        "--contenders",
        help=f"comma-separated subset of {','.join(EVERYONE + AIOHTTP)} (raw httpx is always kept)",
    )
    parser.add_argument(
        "--cells", help="comma-separated cells to run, by key (tools/sync/c1) or kind (plain, stream, tools)"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge this run's targets and tables into the existing report instead of replacing it "
        "(measures no imports or normalization)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier commit (a git worktree): every turnout contender also runs "
        "on its turnout, as NAME@base, rounds interleaved with this tree's",
    )
    parser.add_argument("--skip-imports", action="store_true", help="do not measure import cost")
    parser.add_argument("--skip-requests", action="store_true", help="do not run the request matrix")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the upstream and clients to CPUs")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the report")
    parser.add_argument("--json", type=Path, help="also write every sample as JSON here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 7)
    args.calls = args.calls or (20 if quick else 150)
    args.stream_calls = args.stream_calls or (6 if quick else 40)
    args.import_repeats = args.import_repeats or (2 if quick else 7)
    args.norm_seconds = args.norm_seconds or (0.1 if quick else 1.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started, began = dt.datetime.now(dt.UTC), time.perf_counter()
    command = "python bench/run.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    placement = Placement.choose(not args.no_pin)
    host = machine(placement.describe())  # before pinning: it counts the usable CPUs
    # Pin this process: every child but the upstream inherits the clients' CPUs.
    Placement.apply(0, placement.clients)

    plan_cells = cells(args.concurrency, args.cells)
    if args.contenders:
        wanted = {"httpx", *args.contenders.split(",")}
        plan_cells = {c: tuple(n for n in names if n in wanted) for c, names in plan_cells.items()}
    if args.baseline is not None:
        if not (args.baseline / "core" / "src" / "turnout").is_dir():
            raise SystemExit(f"--baseline {args.baseline}: no core/src/turnout there")
        os.environ[BASELINE_ENV] = str(args.baseline.resolve())
        plan_cells = {
            c: tuple(m for n in names for m in ((n, f"{n}@base") if n.startswith("turnout") else (n,)))
            for c, names in plan_cells.items()
        }
    plan = Plan(
        rounds=args.rounds,
        calls=args.calls,
        stream_calls=args.stream_calls,
        divisors={"litellm": 4},
        cells=plan_cells,
    )

    imports = []
    if not args.skip_imports and not args.merge:
        log(f"import cost: {args.import_repeats} fresh interpreters per statement")
        imports = measure_imports(args.import_repeats, warm_up=not args.quick)
    normalization: dict[str, Any] = {"error": "not measured in this run"}
    if not args.merge:
        log(f"error normalization: {args.norm_seconds:g} CPU s per provider")
        normalization = measure_normalization(args.norm_seconds)
    result = None
    if not args.skip_requests:
        log(f"requests: {args.rounds} rounds, {placement.describe()}")
        result = run_matrix(plan, placement)

    settings = {
        "rounds": args.rounds,
        "plain calls/round": args.calls,
        "streams/round": args.stream_calls,
        "concurrency": args.concurrency,
        "import repeats": args.import_repeats,
        "normalization CPU s/provider": args.norm_seconds,
    }
    if args.merge:  # what this run did not measure says nothing about it
        for name in ("import repeats", "normalization CPU s/provider"):
            del settings[name]
    text = render(
        command=command,
        settings=settings,
        host=host,
        result=result,
        imports=imports,
        normalization=normalization,
        plan_calls=plan.calls_for,
        duration=time.perf_counter() - began,
        started=started,
        quick=args.quick,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        if result is None:
            raise SystemExit("--merge needs the request matrix (not --skip-requests)")
        label = "run of " + ", ".join(f"`{cell.key}`" for cell in plan_cells)
        text = merge(args.output.read_text(encoding="utf-8"), text, label=label)
    elif args.output.exists():
        # The server and concurrency cells are their own scripts': a full run keeps them as they were.
        for kept in kept_sections(args.output.read_text(encoding="utf-8")):
            text = splice(text, kept)
    args.output.write_text(text, encoding="utf-8")
    if args.json is not None:
        dump = {
            "imports": [asdict(r) for r in imports],
            "normalization": normalization,
            "requests": []
            if result is None
            else [
                {"cell": cell.key, "contender": name, "samples": [asdict(s) for s in series.samples]}
                for (cell, name), series in result.series.items()
            ],
        }
        args.json.write_text(json.dumps(dump, indent=1), encoding="utf-8")
    log(f"wrote {args.output} in {time.perf_counter() - began:.0f}s")
    if result is not None:
        for target in targets(result, imports):
            log(f"  {target.verdict:>8}  {target.text}: {target.measured}")
        for line in against_baseline(result):
            log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
