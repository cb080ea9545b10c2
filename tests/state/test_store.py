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
from turnout._health import BreakerConfig, DeploymentState, Outcome
from turnout._state import Claim, Claimed, Settle
from turnout.state import MemoryStore, RedisStore, RetryBudget, StateStore

from .conftest import RedisServer

EMPTY = DeploymentState()
BREAKER = BreakerConfig()
BUDGET = RetryBudget()
NOW = 1_700_000_000.0


def claim_of(*candidates: str, names: tuple[str, ...] = ("a", "b"), **kw: Any) -> Claim:
    kw.setdefault("breaker", BREAKER)
    kw.setdefault("budget", BUDGET)
    return Claim(candidates, names, kw.pop("at", NOW), **kw)


def failed(name: str, kind: ErrorKind = ErrorKind.SERVER_ERROR, config: BreakerConfig = BREAKER) -> Settle:
    error = error_for(kind, "down")
    return Settle(name, Outcome.failure(error, NOW - 20.0, 0.1, random.Random(1)), config)


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

    def claim(self, command: Claim) -> Claimed:
        return self.store.claim(command) if self.loop is None else self.run(self.store.aclaim(command))

    def settle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        return self.store.settle(command) if self.loop is None else self.run(self.store.asettle(command))

    def at_once(self, count: int, command: Claim) -> list[Claimed]:
        """`count` claims started together: threads (sync) or tasks (async)."""
        if self.loop is None:
            barrier = threading.Barrier(count)
            results: list[Any] = [None] * count

            def one(i: int) -> None:
                barrier.wait()
                results[i] = self.store.claim(command)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return results

        async def gather() -> list[Claimed]:
            return list(await asyncio.gather(*(self.store.aclaim(command) for _ in range(count))))

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
        # The protocol's semantics, not speed: eighty connections opened at once on a
        # loaded machine once took longer than the default 0.25 s, an outage (rightly:
        # slow Redis has its own tests, test_slow.py and test_outage.py).
        patient = {"socket_timeout": 2.0, "connect_timeout": 2.0}
        return RedisStore(server.url, prefix=prefix, **{**patient, **kw})

    return make


@pytest.fixture
def api(case: tuple[str, str], make_store: Callable[..., StateStore]) -> Iterator[Api]:
    face = Api(make_store(), case[1])
    yield face
    face.close()


def test_unknown_names_load_as_empty_states(api: Api) -> None:
    assert api.load(["a", "b"]) == {"a": EMPTY, "b": EMPTY}
    assert api.load([]) == {}


def test_a_claim_takes_a_place_on_the_first_candidate_and_reads_the_states_back(api: Api) -> None:
    got = api.claim(claim_of("a", "b", names=("a", "b", "c")))
    assert (got.name, got.spent, got.before, got.candidates) == ("a", True, EMPTY, ("a", "b"))
    assert got.states == {"a": evolve(EMPTY, inflight=1), "b": EMPTY, "c": EMPTY}
    assert api.load(["a", "b"]) == {"a": evolve(EMPTY, inflight=1), "b": EMPTY}


def test_a_claim_passes_over_a_deployment_set_aside(api: Api) -> None:
    api.settle(failed("a", ErrorKind.AUTHENTICATION))  # cools it down for 10 minutes
    got = api.claim(claim_of("a", "b"))
    assert got.name == "b"
    assert got.states["a"].cooldown_reason == "authentication"
    assert api.claim(claim_of("a")).name is None
    # ...until it may be tried again.
    assert api.claim(claim_of("a", at=NOW + 600.0)).name == "a"


def test_a_plan_orders_the_candidates_from_the_states(api: Api) -> None:
    api.claim(claim_of("a"))
    api.claim(claim_of("a"))

    def least_busy(states: Any) -> list[str]:
        return sorted(states, key=lambda name: states[name].inflight)

    got = api.claim(claim_of(plan=least_busy))
    assert (got.name, got.candidates) == ("b", ("b", "a"))


def test_settle_applies_the_outcome_and_returns_before_and_after(api: Api) -> None:
    api.claim(claim_of("a"))
    before, after = api.settle(Settle("a", Outcome.success(NOW, 0.25), BREAKER))
    assert (before.inflight, after.inflight, after.latency) == (1, 0, 0.25)
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0)
    _, opened = api.settle(failed("a", config=config))
    assert (opened.status, opened.open_until, opened.errors) == ("open", NOW - 10.0, ("server_error",))
    assert api.load(["a"])["a"] == opened


def test_a_release_gives_the_place_back(api: Api) -> None:
    api.claim(claim_of("a"))
    _, after = api.settle(Settle("a", Outcome.release(NOW), BREAKER))
    assert after == EMPTY


def test_a_quota_sets_the_deployment_aside_until_its_reset(api: Api) -> None:
    api.settle(Settle("a", Outcome.quota(NOW, NOW + 30.0), BREAKER))
    assert api.claim(claim_of("a")).name is None
    assert api.claim(claim_of("a", at=NOW + 30.0)).name == "a"


def test_the_budget_deposits_its_ratio_up_to_the_burst_and_pays_retries(
    make_store: Callable[..., StateStore], api: Api
) -> None:
    assert api.store.budget_start == 10.0
    face = Api(make_store(budget_start=1.0), api.mode)
    budget = RetryBudget(ratio=0.5, burst=2.0)
    try:
        retry = claim_of("a", budget=budget, spend="always")
        assert face.claim(retry).name == "a"  # the one token
        refused = face.claim(retry)
        assert (refused.name, refused.spent) == (None, False)
        assert face.load(["a"])["a"].inflight == 1  # a refused claim takes no place
        for _ in range(5):  # four deposits would do: the burst caps them at 2
            face.claim(claim_of("b", budget=budget, deposit=True))
        assert [face.claim(retry).spent for _ in range(3)] == [True, True, False]
    finally:
        face.close()


def test_a_fallback_pays_only_into_a_failing_deployment(
    make_store: Callable[..., StateStore], api: Api
) -> None:
    face = Api(make_store(budget_start=0.0), api.mode)
    try:
        assert face.claim(claim_of("a", spend="if_failing")).name == "a"  # healthy: free
        face.settle(failed("b"))  # one failure: failing, not yet set aside
        refused = face.claim(claim_of("b", spend="if_failing"))
        assert (refused.name, refused.spent) == (None, False)
    finally:
        face.close()


def test_concurrent_claims_lose_nothing(api: Api) -> None:
    command = claim_of("a", names=("a",))

    def work() -> None:
        for _ in range(50):
            api.store.claim(command)

    if api.mode == "sync":
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:

        async def worker() -> None:
            for _ in range(50):
                await api.store.aclaim(command)

        async def main() -> None:
            await asyncio.gather(*(worker() for _ in range(8)))

        api.run(main())
    assert api.load(["a"])["a"].inflight == 400


def test_concurrent_retries_never_overdraw_the_budget(
    make_store: Callable[..., StateStore], api: Api
) -> None:
    face = Api(make_store(budget_start=25.0), api.mode)
    try:
        results = face.at_once(80, claim_of("a", names=("a",), spend="always"))
        assert sum(1 for r in results if r.name == "a") == 25
        assert sum(1 for r in results if not r.spent) == 55
        assert face.load(["a"])["a"].inflight == 25
    finally:
        face.close()


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_admits_exactly_the_probe_limit(api: Api, probes: int) -> None:
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0, probes=probes)
    api.settle(failed("a", config=config))
    assert api.load(["a"])["a"].status == "open"
    results = api.at_once(16, claim_of("a", names=("a",), breaker=config))
    assert sum(1 for r in results if r.name == "a") == probes
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
    store.claim(claim_of("a", names=("a",), deposit=True))
    assert store.key("a") == f"{prefix}dep:a"
    budget, record, journal = sorted(client.keys(f"{prefix}*"))
    assert (budget, record) == (f"{prefix}budget".encode(), f"{prefix}dep:a".encode())
    # The store's journal: what its last steps did, kept a minute (see test_disconnects).
    assert journal.startswith(f"{prefix}ops:".encode())
    assert client.hlen(journal) == 1
    assert 55 <= client.ttl(journal) <= 60
    assert json.loads(client.get(f"{prefix}dep:a")) == {"inflight": 1}
    assert float(client.get(f"{prefix}budget")) == 10.0  # the start (10), the deposit capped at the burst
    assert 3590 <= client.ttl(f"{prefix}dep:a") <= 3600
    assert 3590 <= client.ttl(f"{prefix}budget") <= 3600
    # A breaker open for two more hours keeps its record an hour past that.
    store.settle(Settle("a", Outcome.quota(time.time(), time.time() + 7200), BREAKER))
    assert 3 * 3600 - 10 <= client.ttl(f"{prefix}dep:a") <= 3 * 3600
    client.close()


@pytest.mark.redis
def test_prefixes_keep_routers_apart(redis_server: RedisServer, prefix: str) -> None:
    one, other, same = (
        RedisStore(redis_server.url, prefix=prefix),
        RedisStore(redis_server.url, prefix=prefix + "x:"),
        RedisStore(redis_server.url, prefix=prefix),
    )
    one.claim(claim_of("a"))
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
    assert store.claim(claim_of("a")).states["a"].inflight == 1
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
            store.claim(claim_of("a", names=("a",)))

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
    """Each thread its own store (as separate processes are): the claims race in Redis
    itself, and still only `probes` calls get through."""
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0, probes=probes)
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(12)]
    stores[0].settle(failed("a", config=config))
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []
    lock = threading.Lock()

    def one(store: RedisStore) -> None:
        barrier.wait()
        got = store.claim(claim_of("a", names=("a",), breaker=config)).name == "a"
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
