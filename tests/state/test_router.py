"""Routers on a RedisStore under concurrency: the counts add up as with MemoryStore."""

from __future__ import annotations

import asyncio
import threading

import pytest

import turnout
from turnout.emulation import Fault, mock_transport
from turnout.state import RedisStore, RetryBudget

from .conftest import RedisServer
from .tiny import NO_RETRY, TinyEmulator, deployment, make_router, plugins

pytestmark = pytest.mark.redis

LENIENT = turnout.BreakerConfig(consecutive_failures=10**6, failure_rate=1.1)
PLENTY = RetryBudget(ratio=1.0, burst=10**6)


# These tests are about updates lost or kept, not speed: a hundred connections opened
# at once on a loaded 2-core machine may take longer than the default 0.25 s, which
# would (rightly) count as an outage. Slow Redis has its own tests (test_slow.py).
def patient(server: RedisServer, prefix: str) -> RedisStore:
    return RedisStore(server.url, prefix=prefix, socket_timeout=2.0, connect_timeout=2.0)


def test_threads_over_two_routers_sharing_redis_lose_no_updates(
    redis_server: RedisServer, prefix: str
) -> None:
    routers = [
        make_router(
            patient(redis_server, prefix),
            {"a": "oops"},
            breaker=LENIENT,
            budget=PLENTY,
        )[0]
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def work(router: turnout.Router) -> None:
        try:
            for _ in range(25):
                assert router.chat([{"role": "user", "content": "x"}]).deployment == "b"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(routers[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for router in routers:
        health = router.health()
        assert health["a"].consecutive_failures == 200
        assert health["a"].inflight == health["b"].inflight == 0
        assert health["a"].recent_errors == {"server_error": 20}
        router.close()


def test_tasks_sharing_an_async_router_on_redis_lose_no_updates(
    redis_server: RedisServer, prefix: str
) -> None:
    store = patient(redis_server, prefix)
    transport = mock_transport(
        {"a.test": TinyEmulator(), "b.test": TinyEmulator()},
        lambda r: Fault(error="oops") if r.host == "a.test" else None,
    )

    async def main() -> dict[str, turnout.Health]:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            plugins=plugins(),
            transport=transport,
            store=store,
            retry_policy=NO_RETRY,
            breaker=LENIENT,
            budget=PLENTY,
        ) as router:
            results = await asyncio.gather(
                *(router.chat([{"role": "user", "content": "x"}]) for _ in range(100))
            )
            assert {r.deployment for r in results} == {"b"}
            health = await router.health()
        await store.aclose()
        return health

    health = asyncio.run(main())
    assert store.shared
    assert health["a"].consecutive_failures == 100
    assert health["a"].inflight == health["b"].inflight == 0
