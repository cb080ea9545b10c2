"""Hedging: a slow first attempt gets a parallel second one; the first success wins."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

import turnout

from .conftest import deployment
from .scripted import kinds

OK = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
HI = [{"role": "user", "content": "hi"}]
ROUTES = {"r": {"deployments": ["a", "b"], "hedge_after": 0.05}}
NO_RETRY = turnout.RetryPolicy(max_retries=0)


def body(host: str) -> dict:
    return {"choices": [{"message": {"content": f"from {host}"}, "finish_reason": "stop"}]}


def test_async_hedge_returns_the_faster_answer_and_cancels_the_other(plugins):
    cancelled = asyncio.Event()
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "a.test":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return httpx.Response(200, json=body(request.url.host))

    async def main() -> tuple[turnout.ChatResponse, dict]:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            ROUTES,
            plugins=plugins,
            transport=httpx.MockTransport(handler),
        ) as router:
            response = await router.chat(HI)
            return response, await router.health()

    response, health = asyncio.run(main())
    assert response.content == "from b.test"
    assert seen == ["a.test", "b.test"]
    assert cancelled.is_set()
    # The leg that lost is in the record too: abandoned, because it lost the race.
    assert kinds(response.attempts) == [("a", None), ("b", None)]
    assert [(a.decision, a.reason) for a in response.attempts] == [
        ("abandoned", "lost the race"),
        ("done", ""),
    ]
    assert response.attempts[1].waited == 0.05
    assert health["a"].inflight == health["b"].inflight == 0


def test_async_no_hedge_when_the_first_answers_in_time(plugins):
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(200, json=body(request.url.host))

    routes = {"r": {"deployments": ["a", "b"], "hedge_after": 5.0}}

    async def main() -> turnout.ChatResponse:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            routes,
            plugins=plugins,
            transport=httpx.MockTransport(handler),
        ) as router:
            return await router.chat(HI)

    assert asyncio.run(main()).deployment == "a"
    assert seen == ["a.test"]


def test_a_fast_failure_starts_the_hedge_at_once(plugins):
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return httpx.Response(503, json={"error": {"message": "busy"}})
        return httpx.Response(200, json=body(request.url.host))

    routes = {"r": {"deployments": ["a", "b"], "hedge_after": 30.0}}

    async def main() -> turnout.ChatResponse:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            routes,
            plugins=plugins,
            retry_policy=NO_RETRY,
            transport=httpx.MockTransport(handler),
        ) as router:
            return await asyncio.wait_for(router.chat(HI), timeout=10)

    response = asyncio.run(main())
    assert kinds(response.attempts) == [("a", "unavailable"), ("b", None)]


def test_sync_hedge_returns_the_faster_answer_and_the_loser_gives_back_its_place(plugins):
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            release.wait(10)
        return httpx.Response(200, json=body(request.url.host))

    router = turnout.Router(
        [deployment("a"), deployment("b")], ROUTES, plugins=plugins, transport=httpx.MockTransport(handler)
    )
    with router:
        response = router.chat(HI)
        assert response.content == "from b.test"
        assert router.health()["a"].inflight == 1  # still waiting on its request
        release.set()
        for _ in range(200):  # bounded: the loser notices it lost once its request returns
            if router.health()["a"].inflight == 0:
                break
            time.sleep(0.01)
        assert router.health()["a"].inflight == 0
        assert router.health()["a"].latency is None  # a lost race is not an outcome


def test_hedge_after_in_config(plugins):
    config = {
        "deployments": [
            {"name": "a", "provider": "acme", "model": "m", "base_url": "https://a.test/v1"},
            {"name": "b", "provider": "acme", "model": "m", "base_url": "https://b.test/v1"},
        ],
        "routes": {"r": {"deployments": ["a", "b"], "hedge_after": 0.5}},
    }
    router = turnout.Router.from_config(config, plugins=plugins)
    assert router.routes["r"].hedge_after == 0.5
