"""Redis goes away mid-run: calls keep succeeding on local state; when it returns,
the router re-attaches and shares again."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

import turnout
from turnout.state import RedisStore

from .conftest import RedisServer
from .tiny import TinyEmulator, chat, deployment, make_router, outcomes, plugins

pytestmark = pytest.mark.redis

RETRY = 0.3


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "turnout.state" and r.levelno >= logging.WARNING]


def test_calls_survive_a_redis_outage_and_sharing_resumes(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state")
    store = RedisStore(private_redis.url, prefix="o:", retry_interval=RETRY)
    router, _ = make_router(store, {"a": "overloaded"})
    client = private_redis.client()
    for _ in range(5):
        assert chat(router).deployment == "b"
    assert json.loads(client.get("o:dep:a"))["status"] == "open"

    private_redis.kill()
    started = time.monotonic()
    for _ in range(20):
        response = chat(router)
        # The breaker Redis last reported open stays open locally: straight to b.
        assert outcomes(response.attempts) == [("b", None)]
    assert time.monotonic() - started < 5.0  # short timeouts, no stalls
    assert not store.shared
    assert router.health()["a"].status == "open"
    [warning] = warnings_of(caplog)  # once, however many calls met the outage
    assert "unavailable" in warning.getMessage()
    assert "redis://:***@127.0.0.1" in warning.getMessage()
    assert private_redis.password not in caplog.text

    private_redis.start()  # the same port, empty: as a restarted server comes back
    time.sleep(RETRY + 0.1)
    # Redis's copy wins again: it has forgotten the trip, so `a` is tried, and what
    # this call learns is written to Redis.
    assert outcomes(chat(router).attempts) == [("a", "unavailable"), ("b", None)]
    assert store.shared
    resumed = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(resumed) == 1
    assert json.loads(client.get("o:dep:a"))["errors"] == ["unavailable"]
    # ...and another router's writes reach this one.
    router2, _ = make_router(RedisStore(private_redis.url, prefix="o:"), {"a": "invalid_key"})
    chat(router2)
    assert json.loads(client.get("o:dep:a"))["cooldown_reason"] == "authentication"
    assert router.health()["a"].cooldown_reason == "authentication"
    assert len(warnings_of(caplog)) == 1
    assert private_redis.password not in caplog.text
    router.close()
    router2.close()
    client.close()


def test_a_server_that_never_answers_costs_one_short_timeout_per_retry_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 192.0.2.0/24 is reserved for documentation: connections there go nowhere.
    store = RedisStore(
        "redis://192.0.2.1:6379/0", retry_interval=60.0, connect_timeout=0.1, socket_timeout=0.1
    )
    router, _ = make_router(store)
    started = time.monotonic()
    for _ in range(10):
        assert chat(router).deployment == "a"
    assert time.monotonic() - started < 2.0
    assert len(warnings_of(caplog)) == 1
    router.close()


def test_the_async_router_survives_an_outage_too(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state")
    store = RedisStore(private_redis.url, prefix="oa:", retry_interval=RETRY)
    from turnout.emulation import Fault, mock_transport

    transport = mock_transport(
        {"a.test": TinyEmulator(), "b.test": TinyEmulator()},
        lambda r: Fault(error="invalid_key") if r.host == "a.test" else None,
    )

    async def main() -> None:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")], plugins=plugins(), transport=transport, store=store
        ) as router:
            assert (await router.chat([{"role": "user", "content": "x"}])).deployment == "b"
            private_redis.kill()
            for _ in range(10):
                response = await router.chat([{"role": "user", "content": "x"}])
                assert outcomes(response.attempts) == [("b", None)]
            assert not store.shared
            private_redis.start()
            await asyncio.sleep(RETRY + 0.1)
            await router.chat([{"role": "user", "content": "x"}])
            assert store.shared
            assert (await router.health())["b"].inflight == 0
        await store.aclose()

    asyncio.run(main())
    assert len(warnings_of(caplog)) == 1
    client = private_redis.client()
    assert json.loads(client.get("oa:dep:b"))["latency"] > 0
    client.close()


def test_a_redis_that_refuses_us_is_an_outage_not_a_failed_call(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server wants a password this URL lacks: every command is refused (NOAUTH).
    store = RedisStore(f"redis://127.0.0.1:{private_redis.port}/0", prefix="na:", retry_interval=60.0)
    router, _ = make_router(store, {"a": "invalid_key"})
    for _ in range(3):
        assert outcomes(chat(router).attempts)[-1] == ("b", None)
    assert not store.shared
    [warning] = warnings_of(caplog)
    assert "unavailable" in warning.getMessage()
    router.close()
