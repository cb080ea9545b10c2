"""Profile one contender in one cell against the loopback upstream.

    python bench/profile_turnout.py                       # turnout, plain, sync: cProfile by own time
    python bench/profile_turnout.py --async --stream      # AsyncRouter, streamed
    python bench/profile_turnout.py --contender httpx     # the raw floor, for a side-by-side
    python bench/profile_turnout.py --tools               # a stream of tool calls
    python bench/profile_turnout.py --pyinstrument        # a call tree instead (pip install pyinstrument)

The upstream runs in its own process, as in the benchmark; only this
process's work is profiled.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from typing import Any

from contenders import CONTENDERS, EXPECTED, EXPECTED_TOOLS
from harness import Placement, Upstream
from loopback import STREAM_CHUNKS, TOOL_STREAM_CHUNKS


def _call(contender: Any, args: argparse.Namespace, *, asynchronous: bool = False) -> Any:
    if args.tools:
        return contender.astream_tools if asynchronous else contender.stream_tools
    if args.stream:
        return contender.astream if asynchronous else contender.stream
    return contender.achat if asynchronous else contender.chat


def _calls(call: Any, count: int) -> None:
    for _ in range(count):
        call()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contender", default="turnout", choices=sorted(CONTENDERS))
    parser.add_argument("--async", dest="asynchronous", action="store_true")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--tools", action="store_true", help="a stream of tool calls (implies --stream)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative, ...)")
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument call tree")
    args = parser.parse_args()
    args.stream = args.stream or args.tools

    upstream = Upstream(Placement.choose(pin=True), max_seconds=600)
    try:
        contender = CONTENDERS[args.contender](upstream.base_url)
        if args.asynchronous:
            # One loop for the whole run: the async client's connections belong to it.
            _profile_async(contender, args)
        else:
            call = _call(contender, args)
            _check(call(), args)
            _calls(call, max(1, args.calls // 10))  # warm-up
            _profile(lambda: _calls(call, args.calls), args)
            contender.close()
    finally:
        upstream.stop()


def _check(text: str, args: argparse.Namespace) -> None:
    if text != (EXPECTED_TOOLS if args.tools else EXPECTED[args.stream]):
        sys.exit(f"wrong answer: {text!r}")


def _profile_async(contender: Any, args: argparse.Namespace) -> None:
    call = _call(contender, args, asynchronous=True)

    async def run(count: int) -> None:
        for _ in range(count):
            await call()

    async def body() -> None:
        _check(await call(), args)
        await run(max(1, args.calls // 10))
        profiler: Any = _start(args)
        began = time.process_time()
        await run(args.calls)
        _stop(profiler, args, time.process_time() - began)
        await contender.aclose()

    asyncio.run(body())


def _start(args: argparse.Namespace) -> Any:
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        return profiler
    profile = cProfile.Profile()
    profile.enable()
    return profile


def _stop(profiler: Any, args: argparse.Namespace, cpu: float) -> None:
    if args.pyinstrument:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    else:
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.sort).print_stats(args.top)
    unit = "chunk" if args.stream else "request"
    per = cpu / (args.calls * (TOOL_STREAM_CHUNKS if args.tools else STREAM_CHUNKS if args.stream else 1))
    print(f"{args.contender}: {per * 1e6:.0f} us CPU per {unit} under the profiler ({args.calls} calls)")


def _profile(run: Any, args: argparse.Namespace) -> None:
    profiler = _start(args)
    began = time.process_time()
    run()
    _stop(profiler, args, time.process_time() - began)


if __name__ == "__main__":
    main()
