"""The state-store protocol's behaviour, for MemoryStore and RedisStore, sync and async."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
from attrs import evolve

from turnout._errors import ErrorKind, error_for
from turnout._health import BreakerConfig, DeploymentState, admit, on_failure
from turnout.state import MemoryStore, RedisStore, RetryBudget, StateStore

from .conftest import RedisServer

EMPTY = DeploymentState()


def inc(state: DeploymentState) -> tuple[DeploymentState, int]:
    return evolve(state, inflight=state.inflight + 1), state.inflight + 1


class Api:
    """One face for the sync methods and the async ones (run on a loop of the test's own)."""

    def __init__(self, store: StateStore, mode: str) -> None:
        self.store = store
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def load(self, names: list[str]) -> dict[str, DeploymentState]:
        return self.store.load(names) if self.loop is None else self.run(self.store.aload(names))

    def update(self, name: str, fn: Callable[[DeploymentState], tuple[DeploymentState, Any]]) -> Any:
        return self.store.update(name, fn) if self.loop is None else self.run(self.store.aupdate(name, fn))

    def update_budget(self, fn: Callable[[float], tuple[float, Any]]) -> Any:
        if self.loop is None:
            return self.store.update_budget(fn)
        return self.run(self.store.aupdate_budget(fn))

    def at_once(
        self, count: int, name: str, fn: Callable[[DeploymentState], tuple[DeploymentState, Any]]
    ) -> list[Any]:
        """`count` updates started together: threads (sync) or tasks (async)."""
        if self.loop is None:
            barrier = threading.Barrier(count)
            results: list[Any] = [None] * count

            def one(i: int) -> None:
                barrier.wait()
                results[i] = self.store.update(name, fn)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return results

        async def gather() -> list[Any]:
            return list(await asyncio.gather(*(self.store.aupdate(name, fn) for _ in range(count))))

        return self.run(gather())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.loop is not None:
            aclose: Callable[[], Awaitable[None]] | None = getattr(self.store, "aclose", None)
            if aclose is not None:
                self.run(aclose())  # type: ignore[arg-type]
            self.loop.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


STORES = [
    pytest.param(("memory", "sync"), id="memory-sync"),
    pytest.param(("memory", "async"), id="memory-async"),
    pytest.param(("redis", "sync"), id="redis-sync", marks=pytest.mark.redis),
    pytest.param(("redis", "async"), id="redis-async", marks=pytest.mark.redis),
]


@pytest.fixture(params=STORES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_store(
    request: pytest.FixtureRequest, case: tuple[str, str], prefix: str
) -> Callable[..., StateStore]:
    def make(**kw: Any) -> StateStore:
        if case[0] == "memory":
            return MemoryStore(**kw)
        server: RedisServer = request.getfixturevalue("redis_server")
        return RedisStore(server.url, prefix=prefix, **kw)

    return make


@pytest.fixture
def api(case: tuple[str, str], make_store: Callable[..., StateStore]) -> Iterator[Api]:
    face = Api(make_store(), case[1])
    yield face
    face.close()


def test_unknown_names_load_as_empty_states(api: Api) -> None:
    assert api.load(["a", "b"]) == {"a": EMPTY, "b": EMPTY}
    assert api.load([]) == {}


def test_update_applies_fn_stores_it_and_returns_its_result(api: Api) -> None:
    assert api.update("a", inc) == 1
    assert api.update("a", inc) == 2
    assert api.update("a", lambda s: (evolve(s, cooldown_reason="authentication"), "done")) == "done"
    states = api.load(["a", "b"])
    assert (states["a"].inflight, states["a"].cooldown_reason) == (2, "authentication")
    assert states["b"] == EMPTY


def test_fn_sees_the_current_state_and_may_leave_it_unchanged(api: Api) -> None:
    api.update("a", lambda s: (evolve(s, latency=0.25, window=(True, False)), None))
    seen: list[DeploymentState] = []
    assert api.update("a", lambda s: (seen.append(s), (s, "same"))[1]) == "same"
    assert seen[0].latency == 0.25
    assert seen[0].window == (True, False)
    assert api.load(["a"])["a"] == seen[0]


def test_budget_deposit_and_withdraw(api: Api) -> None:
    budget = RetryBudget(ratio=0.5, burst=3.0)
    assert api.store.budget_start == 10.0
    api.update_budget(lambda _: (2.0, None))
    assert api.update_budget(budget.deposit) is None
    assert api.update_budget(budget.deposit) is None  # capped at the burst
    withdrawn = [api.update_budget(budget.withdraw) for _ in range(4)]
    assert withdrawn == [True, True, True, False]
    assert api.update_budget(lambda tokens: (tokens, tokens)) == 0.0


def test_budget_starts_at_budget_start(make_store: Callable[..., StateStore], api: Api) -> None:
    store = make_store(budget_start=2.0)
    face = Api(store, api.mode)
    try:
        assert [face.update_budget(RetryBudget().withdraw) for _ in range(3)] == [True, True, False]
    finally:
        face.close()


def test_concurrent_updates_lose_nothing(api: Api) -> None:
    def work() -> None:
        for _ in range(50):
            api.store.update("a", inc)

    if api.mode == "sync":
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:

        async def worker() -> None:
            for _ in range(50):
                await api.store.aupdate("a", inc)

        async def main() -> None:
            await asyncio.gather(*(worker() for _ in range(8)))

        api.run(main())
    assert api.load(["a"])["a"].inflight == 400


def test_concurrent_budget_withdrawals_never_overdraw(api: Api) -> None:
    api.update_budget(lambda _: (25.0, None))
    budget = RetryBudget()
    results: list[bool] = []
    lock = threading.Lock()
    if api.mode == "sync":

        def work() -> None:
            for _ in range(10):
                got = api.store.update_budget(budget.withdraw)
                with lock:
                    results.append(got)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:

        async def main() -> list[bool]:
            return list(await asyncio.gather(*(api.store.aupdate_budget(budget.withdraw) for _ in range(80))))

        results = api.run(main())
    assert results.count(True) == 25
    assert api.update_budget(lambda tokens: (tokens, tokens)) == 0.0


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_admits_exactly_the_probe_limit(api: Api, probes: int) -> None:
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0, probes=probes)
    error = error_for(ErrorKind.SERVER_ERROR, "down")
    now = time.time()
    api.update("a", lambda s: (on_failure(s, error, now - 20.0, config, random.Random(1)), None))
    assert api.load(["a"])["a"].status == "open"
    results = api.at_once(16, "a", lambda s: admit(s, now, config))
    assert results.count(True) == probes
    state = api.load(["a"])["a"]
    assert (state.status, state.probes, state.inflight) == ("half_open", probes, probes)


# -- Redis specifics -------------------------------------------------------------


@pytest.fixture
def store(redis_server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    made = RedisStore(redis_server.url, prefix=prefix)
    yield made
    made.close()


@pytest.mark.redis
def test_key_layout_values_and_ttls(store: RedisStore, redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    store.update("a", inc)
    store.update_budget(lambda _: (4.5, None))
    assert store.key("a") == f"{prefix}dep:a"
    assert sorted(client.keys(f"{prefix}*")) == [f"{prefix}budget".encode(), f"{prefix}dep:a".encode()]
    assert json.loads(client.get(f"{prefix}dep:a")) == {"inflight": 1}
    assert float(client.get(f"{prefix}budget")) == 4.5
    assert 3590 <= client.ttl(f"{prefix}dep:a") <= 3600
    assert 3590 <= client.ttl(f"{prefix}budget") <= 3600
    # A breaker open for two more hours keeps its record an hour past that.
    store.update("a", lambda s: (evolve(s, status="open", open_until=time.time() + 7200), None))
    assert 3 * 3600 - 10 <= client.ttl(f"{prefix}dep:a") <= 3 * 3600
    client.close()


@pytest.mark.redis
def test_prefixes_keep_routers_apart(redis_server: RedisServer, prefix: str) -> None:
    one, other, same = (
        RedisStore(redis_server.url, prefix=prefix),
        RedisStore(redis_server.url, prefix=prefix + "x:"),
        RedisStore(redis_server.url, prefix=prefix),
    )
    one.update("a", inc)
    assert other.load(["a"])["a"] == EMPTY
    assert same.load(["a"])["a"].inflight == 1
    for s in (one, other, same):
        s.close()


@pytest.mark.redis
@pytest.mark.parametrize(
    "value", [b"not json", b"[1, 2]", b'{"status": "sideways"}', b'{"inflight": "many"}', b"\xff\xfe"]
)
def test_a_corrupt_or_foreign_value_reads_as_empty(
    store: RedisStore, redis_server: RedisServer, value: bytes
) -> None:
    client = redis_server.client()
    client.set(store.key("a"), value)
    assert store.load(["a"])["a"] == EMPTY
    assert store.update("a", inc) == 1
    assert json.loads(client.get(store.key("a"))) == {"inflight": 1}
    client.close()


@pytest.mark.redis
def test_an_old_value_missing_fields_reads_with_defaults(
    store: RedisStore, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.set(store.key("a"), json.dumps({"status": "open", "open_until": 5.0, "unknown_later_field": 1}))
    assert store.load(["a"])["a"] == DeploymentState(status="open", open_until=5.0)
    client.close()


@pytest.mark.redis
def test_two_stores_on_one_redis_share_every_update(redis_server: RedisServer, prefix: str) -> None:
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(4)]

    def work(store: RedisStore) -> None:
        for _ in range(50):
            store.update("a", inc)

    threads = [threading.Thread(target=work, args=(stores[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s.load(["a"])["a"].inflight == 400 for s in stores)
    for s in stores:
        s.close()


def test_repr_and_errors_never_show_the_password() -> None:
    store = RedisStore("redis://user:hunter2pass@127.0.0.1:6399/0")
    assert "hunter2pass" not in repr(store)
    assert repr(store) == "RedisStore('redis://user:***@127.0.0.1:6399/0', prefix='turnout:')"
    with pytest.raises(ValueError) as bad:
        RedisStore("http://:hunter2pass@127.0.0.1:6399/0")
    assert "hunter2pass" not in str(bad.value)
    store.close()


@pytest.mark.redis
@pytest.mark.parametrize("probes", [1, 2])
def test_probe_limit_holds_across_stores_racing_in_redis(
    redis_server: RedisServer, prefix: str, probes: int
) -> None:
    """Each thread its own store (as separate processes are): the WATCH transactions
    race in Redis itself, and still only `probes` calls get through."""
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0, probes=probes)
    error = error_for(ErrorKind.SERVER_ERROR, "down")
    now = time.time()
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(12)]
    stores[0].update("a", lambda s: (on_failure(s, error, now - 20.0, config, random.Random(1)), None))
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []
    lock = threading.Lock()

    def one(store: RedisStore) -> None:
        barrier.wait()
        got = store.update("a", lambda s: admit(s, now, config))
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == probes
    assert stores[0].load(["a"])["a"].probes == probes
    for s in stores:
        s.close()
