"""The router under load over real loopback HTTP: one upstream failing half the time.

A small ASGI app on uvicorn plays two OpenAI-compatible gateways; 200
concurrent calls go through one AsyncRouter. Nothing is mocked below httpx.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import turnout
from tests.core.acme import Acme

uvicorn = pytest.importorskip("uvicorn")

OK = json.dumps({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}).encode()
BUSY = json.dumps({"error": {"message": "busy", "code": "overloaded"}}).encode()


class Upstreams:
    """/a/... fails half the time (seeded), /b/... always answers."""

    def __init__(self) -> None:
        self.rng = random.Random(1234)
        self.hits: Counter[str] = Counter()
        self.log: list[tuple[float, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        name = scope["path"].strip("/").split("/")[0]
        self.hits[name] += 1
        self.log.append((time.monotonic(), name))
        await asyncio.sleep(0.002)
        failing = name == "a" and self.rng.random() < 0.5
        status, body = (503, BUSY) if failing else (200, OK)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstreams, str]]:
    app = Upstreams()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # bounded wait for the server to listen
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_200_concurrent_calls_with_a_failing_upstream(upstreams):
    app, base = upstreams
    plugins = turnout.Plugins(entry_points=False)
    plugins.add_provider(Acme())
    deployments = [
        turnout.Deployment("a", "acme", "m", api_key="key-a-0123456789", base_url=f"{base}/a"),
        turnout.Deployment("b", "acme", "m", api_key="key-b-0123456789", base_url=f"{base}/b"),
    ]
    policy = turnout.RetryPolicy(max_retries=2, base=0.01, cap=0.05)
    budget = turnout.RetryBudget(ratio=0.2, burst=10.0)
    deadline = 10.0

    async def one(router: turnout.AsyncRouter) -> tuple[Any, float]:
        started = time.monotonic()
        try:
            result: Any = await router.chat([{"role": "user", "content": "hi"}], deadline=deadline)
        except turnout.TurnoutError as error:
            result = error
        return result, time.monotonic() - started

    async def main() -> tuple[list[tuple[Any, float]], list[tuple[Any, float]], dict]:
        async with turnout.AsyncRouter(
            deployments,
            plugins=plugins,
            retry_policy=policy,
            budget=budget,
            # A breaker that trips at half the answers failing (the defaults spare an
            # upstream that fails half the time: docs/resilience.md): this test is about
            # what comes after the trip, under concurrency.
            breaker=turnout.BreakerConfig(
                consecutive_failures=5, failure_rate=0.4, window=20, min_calls=10, open_for=60.0
            ),
        ) as router:
            first = await asyncio.gather(*(one(router) for _ in range(200)))
            hits_before = dict(app.hits)
            second = await asyncio.gather(*(one(router) for _ in range(100)))
            return first, second, {"before": hits_before, "health": await router.health()}

    first, second, info = asyncio.run(main())
    calls = first + second
    # Every call ends with a response or a normalized error, within its deadline.
    for result, elapsed in calls:
        assert isinstance(
            result, turnout.ChatResponse | turnout.ProviderError | turnout.NoHealthyDeploymentError
        )
        assert elapsed < deadline
    assert all(isinstance(r, turnout.ChatResponse) for r, _ in calls)
    # Every attempt reached an upstream, and attempts stay within the retry budget:
    # a call's first attempt, its fallback to the healthy upstream, and extra attempts
    # on the failing one only as the budget allows (ratio x calls + burst).
    attempts = [a for r, _ in calls for a in r.attempts]
    assert len(attempts) == app.hits["a"] + app.hits["b"]
    first_tries = len(calls)
    healthy_fallbacks = sum(1 for r, _ in calls if len(r.attempts) > 1)
    assert len(attempts) - first_tries - healthy_fallbacks <= budget.ratio * len(calls) + budget.burst
    assert len(attempts) <= 2 * len(calls)
    # The breaker opened on the failing upstream; after that it received no more than probes.
    assert info["health"]["a"].status == "open"
    assert app.hits["a"] - info["before"]["a"] <= 1
    assert all(r.deployment == "b" for r, _ in second)
