"""turnout's CPU overhead over raw httpx, in one process, with no sockets.

Both go through httpx's `MockTransport` serving the loopback upstream's own
answers (a completion; a stream of 10 chunks; a stream of tool calls, one
event per body piece as the upstream's chunked body arrives), so what differs
is only the code above the transport: the quickest way to see a hot-path
change. Raw httpx reads streams with httpx-sse and assembles tool calls by
hand, as in the loopback benchmark (bench/contenders.py).

    python bench/inprocess.py                      # plain, stream and tools, sync
    python bench/inprocess.py --mode tools --async
    PYTHONPATH=/tmp/base/core/src python bench/inprocess.py   # another checkout's turnout
    python bench/inprocess.py --stdlib-json        # turnout parsing JSON without orjson

Rounds are interleaved; the figures are medians (and min-max) of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import turnout
from contenders import (
    EXPECTED,
    EXPECTED_TOOLS,
    MESSAGES,
    PAYLOAD,
    STREAM_PAYLOAD,
    TOOLS,
    TOOLS_PAYLOAD,
    loopback_plugins,
    tools_text,
)
from loopback import STREAM_CHUNKS, TOOL_STREAM_CHUNKS, _completion, _stream_events, _tool_events

URL = "http://upstream.test/v1/chat/completions"
HEADERS = {"content-type": "application/json", "x-request-id": "req_bench"}
SSE = {"content-type": "text/event-stream", "x-request-id": "req_bench"}
COMPLETION = _completion()
EVENTS = {"stream": _stream_events(), "tools": _tool_events()}
UNITS = {"plain": ("call", 1), "stream": ("chunk", STREAM_CHUNKS), "tools": ("chunk", TOOL_STREAM_CHUNKS)}


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives one SSE event per read, as the upstream's chunked body does."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._pieces)

    async def __aiter__(self) -> Any:
        for piece in self._pieces:
            yield piece


def handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if not body.get("stream"):
        return httpx.Response(200, headers=HEADERS, content=COMPLETION)
    events = EVENTS["tools" if "tools" in body else "stream"]
    return httpx.Response(200, headers=SSE, stream=_Pieces(events))


def _tool_pieces(data: str, calls: dict[int, list[Any]]) -> None:
    delta = json.loads(data)["choices"][0]["delta"]
    for piece in delta.get("tool_calls") or ():
        call = calls.get(piece["index"])
        if call is None:
            call = calls[piece["index"]] = [piece.get("id"), piece["function"].get("name"), []]
        call[2].append(piece["function"].get("arguments") or "")


def _tools(calls: dict[int, list[Any]]) -> str:
    return tools_text([(c[0], c[1], "".join(c[2])) for _, c in sorted(calls.items())])


def raw_calls(client: httpx.Client) -> dict[str, Callable[[], str]]:
    from httpx_sse import connect_sse

    def plain() -> str:
        content: str = client.post(URL, json=PAYLOAD).json()["choices"][0]["message"]["content"]
        return content

    def stream() -> str:
        parts: list[str] = []
        with connect_sse(client, "POST", URL, json=STREAM_PAYLOAD) as source:
            for event in source.iter_sse():
                if event.data != "[DONE]":
                    parts.append(json.loads(event.data)["choices"][0]["delta"].get("content") or "")
        return "".join(parts)

    def tools() -> str:
        calls: dict[int, list[Any]] = {}
        with connect_sse(client, "POST", URL, json=TOOLS_PAYLOAD) as source:
            for event in source.iter_sse():
                if event.data != "[DONE]":
                    _tool_pieces(event.data, calls)
        return _tools(calls)

    return {"plain": plain, "stream": stream, "tools": tools}


def raw_acalls(client: httpx.AsyncClient) -> dict[str, Callable[[], Awaitable[str]]]:
    from httpx_sse import aconnect_sse

    async def plain() -> str:
        content: str = (await client.post(URL, json=PAYLOAD)).json()["choices"][0]["message"]["content"]
        return content

    async def stream() -> str:
        parts: list[str] = []
        async with aconnect_sse(client, "POST", URL, json=STREAM_PAYLOAD) as source:
            async for event in source.aiter_sse():
                if event.data != "[DONE]":
                    parts.append(json.loads(event.data)["choices"][0]["delta"].get("content") or "")
        return "".join(parts)

    async def tools() -> str:
        calls: dict[int, list[Any]] = {}
        async with aconnect_sse(client, "POST", URL, json=TOOLS_PAYLOAD) as source:
            async for event in source.aiter_sse():
                if event.data != "[DONE]":
                    _tool_pieces(event.data, calls)
        return _tools(calls)

    return {"plain": plain, "stream": stream, "tools": tools}


def _answer_tools(response: Any) -> str:
    return tools_text([(c.id, c.name, c.arguments) for c in response.tool_calls])


def turnout_calls(router: turnout.Router) -> dict[str, Callable[[], str]]:
    def plain() -> str:
        return router.chat(MESSAGES).content

    def stream() -> str:
        with router.stream(MESSAGES) as chunks:
            return "".join(chunk.delta for chunk in chunks)

    def tools() -> str:
        with router.stream(MESSAGES, tools=TOOLS) as chunks:
            for _ in chunks:
                pass
        return _answer_tools(chunks.response)

    return {"plain": plain, "stream": stream, "tools": tools}


def turnout_acalls(router: turnout.AsyncRouter) -> dict[str, Callable[[], Awaitable[str]]]:
    async def plain() -> str:
        return (await router.chat(MESSAGES)).content

    async def stream() -> str:
        async with router.stream(MESSAGES) as chunks:
            return "".join([chunk.delta async for chunk in chunks])

    async def tools() -> str:
        async with router.stream(MESSAGES, tools=TOOLS) as chunks:
            async for _ in chunks:
                pass
        return _answer_tools(chunks.response)

    return {"plain": plain, "stream": stream, "tools": tools}


def _deployments() -> list[turnout.Deployment]:
    return [
        turnout.Deployment(
            "a", "loopback", "bench-model", api_key="sk-bench", base_url="http://upstream.test/v1"
        )
    ]


def _expected(mode: str) -> str:
    return EXPECTED_TOOLS if mode == "tools" else EXPECTED[mode == "stream"]


def measure(mode: str, asynchronous: bool, rounds: int, calls: int) -> None:
    transport = httpx.MockTransport(handler)
    results: dict[str, list[float]] = {"raw": [], "turnout": []}
    if asynchronous:

        async def run() -> None:
            async with (
                httpx.AsyncClient(transport=transport) as client,
                turnout.AsyncRouter(
                    _deployments(), plugins=loopback_plugins(), transport=transport
                ) as router,
            ):
                contenders = {"raw": raw_acalls(client)[mode], "turnout": turnout_acalls(router)[mode]}
                for name, call in contenders.items():
                    try:
                        got = await call()
                    except Exception as exc:  # an older turnout (a baseline) may lack the cell
                        got = f"{type(exc).__name__}: {exc}"
                    if got != _expected(mode):
                        print(f"{mode:>6} {'async':5}  skipped: {name} answered {got[:80]!r}")
                        return
                for _ in range(rounds):
                    for name, call in contenders.items():
                        started = time.process_time()
                        for _ in range(calls):
                            await call()
                        results[name].append(time.process_time() - started)

        asyncio.run(run())
        if not results["turnout"]:
            return
    else:
        with (
            httpx.Client(transport=transport) as client,
            turnout.Router(_deployments(), plugins=loopback_plugins(), transport=transport) as router,
        ):
            contenders = {"raw": raw_calls(client)[mode], "turnout": turnout_calls(router)[mode]}
            for name, call in contenders.items():
                try:
                    got = call()
                except Exception as exc:  # an older turnout (a baseline) may lack the cell
                    got = f"{type(exc).__name__}: {exc}"
                if got != _expected(mode):
                    print(f"{mode:>6} {'sync':5}  skipped: {name} answered {got[:80]!r}")
                    return
            for _ in range(rounds):  # interleaved, so drift hits both alike
                for name, call in contenders.items():
                    started = time.process_time()
                    for _ in range(calls):
                        call()
                    results[name].append(time.process_time() - started)
    unit, per_call = UNITS[mode]
    per = {name: [t / calls / per_call * 1e6 for t in times] for name, times in results.items()}
    ratios = [t / r for t, r in zip(per["turnout"], per["raw"], strict=True)]
    raw, ours = statistics.median(per["raw"]), statistics.median(per["turnout"])
    print(
        f"{mode:>6} {'async' if asynchronous else 'sync ':5}  raw httpx {raw:6.1f} µs/{unit}, "
        f"turnout {ours:6.1f} µs/{unit} ({min(per['turnout']):.1f}-{max(per['turnout']):.1f}): "
        f"overhead {ours - raw:+6.1f} µs, ratio {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}), median of {rounds} rounds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=[*UNITS, "all"], default="all")
    parser.add_argument("--async", dest="asynchronous", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="plain calls per round (streams: a fifth)")
    parser.add_argument(
        "--stdlib-json",
        action="store_true",
        help="turnout parses JSON with the stdlib, as without orjson (what orjson is worth)",
    )
    args = parser.parse_args()
    if args.stdlib_json:
        from turnout import _json

        _json._FAST = None  # a bench's switch: turnout without orjson
    for mode in UNITS if args.mode == "all" else [args.mode]:
        measure(mode, args.asynchronous, args.rounds, args.calls if mode == "plain" else args.calls // 5)


if __name__ == "__main__":
    main()
