"""turnout's CPU overhead per plain call over raw httpx, in one process, with no sockets.

Both go through httpx's `MockTransport`, so what differs is only the code
above the transport: the quickest way to see a hot-path change.

    python bench/inprocess.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import turnout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.core.acme import Acme  # the repository's own test provider

BODY = json.dumps(
    {
        "id": "x",
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()
MESSAGES = [{"role": "user", "content": "hi"}]


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=BODY)


def main(rounds: int = 7, calls: int = 3000) -> None:
    plugins = turnout.Plugins(entry_points=False)
    plugins.add_provider(Acme())
    router = turnout.Router(
        [turnout.Deployment("a", "acme", "m", api_key="k", base_url="http://a.test/v1")],
        plugins=plugins,
        transport=httpx.MockTransport(handler),
    )
    client = httpx.Client(transport=httpx.MockTransport(handler))

    def raw() -> Any:
        response = client.post(
            "http://a.test/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer k"},
        )
        return response.json()["choices"][0]["message"]["content"]

    def routed() -> Any:
        return router.chat(MESSAGES).content

    results: dict[str, list[float]] = {"raw": [], "turnout": []}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for name, call in (("raw", raw), ("turnout", routed)):
            started = time.process_time()
            for _ in range(calls):
                call()
            results[name].append((time.process_time() - started) / calls * 1e6)
    raw_us, turnout_us = statistics.median(results["raw"]), statistics.median(results["turnout"])
    print(
        f"raw httpx {raw_us:.1f} µs/call, turnout {turnout_us:.1f} µs/call: "
        f"overhead {turnout_us - raw_us:+.1f} µs, ratio {turnout_us / raw_us:.2f} (median of {rounds} rounds)"
    )


if __name__ == "__main__":
    main()
