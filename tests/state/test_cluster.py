"""RedisStore(cluster=True) on a real Redis Cluster: three redis-server processes on
loopback (`redis_cluster`), two stores (as two routers' processes would have)
connected through different nodes. One router's failures open the breaker the
other sees, the retry budget is one bucket, and every key of a prefix lives in
one slot (a claim's script touches several deployments and the budget at once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import turnout
from turnout._flow import Claim
from turnout._health import BreakerConfig
from turnout.emulation import Fault, mock_transport
from turnout.state import RedisStore, RetryBudget

from .conftest import RedisCluster
from .tiny import NO_RETRY, TinyEmulator, chat, deployment, make_router, outcomes, plugins

pytestmark = pytest.mark.redis

NAME = "turnout-cluster-test"  # the store's connections, as CLIENT LIST shows them
TRIP_AT_FIVE = turnout.BreakerConfig(consecutive_failures=5)
HELLO = [{"role": "user", "content": "hello"}]


def cluster_store(url: str, prefix: str, **kw: Any) -> RedisStore:
    """A store on the cluster with time to spare: a step slower than the store's budget
    is an outage (and the state no longer shared), and a fresh cluster client's first
    step (the slot map, a connection per node, the scripts) can pass the default 0.25 s
    on a busy machine. These tests are about sharing; timings are bench/'s."""
    return RedisStore(url, prefix=prefix, cluster=True, socket_timeout=2.0, connect_timeout=2.0, **kw)


@pytest.fixture
def stores(redis_cluster: RedisCluster, prefix: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one prefix, each reaching the cluster through a node of its own."""
    first, last = redis_cluster.urls[0], redis_cluster.urls[-1]
    pair = cluster_store(first, prefix), cluster_store(last, prefix)
    yield pair
    for store in pair:
        store.close()


def keys_by_node(cluster: RedisCluster, prefix: str) -> list[list[bytes]]:
    """Each node's keys of `prefix` (hash-tagged: `{prefix}...`)."""
    found = []
    for node in cluster.nodes:
        client = node.client()
        found.append(sorted(client.keys(f"{{{prefix}}}*")))
        client.close()
    return found


def test_a_breaker_opened_through_one_router_is_respected_by_the_other(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    one, _ = make_router(stores[0], {"a": "overloaded"}, breaker=TRIP_AT_FIVE)
    other, hosts = make_router(stores[1], {"a": "overloaded"}, breaker=TRIP_AT_FIVE)
    for _ in range(5):
        assert outcomes(chat(one).attempts) == [("a", "unavailable"), ("b", None)]
    assert one.health()["a"].status == "open"
    # The other router has never seen `a` fail: it goes straight to b.
    assert [outcomes(chat(other).attempts) for _ in range(3)] == [[("b", None)]] * 3
    assert hosts == ["b.test"] * 3
    assert {name: h.status for name, h in other.health().items()} == {"a": "open", "b": "closed"}
    assert all(store.shared for store in stores)
    one.close()
    other.close()


def test_async_routers_share_a_breaker_on_the_cluster(stores: tuple[RedisStore, RedisStore]) -> None:
    def router(store: RedisStore, hosts: list[str]) -> turnout.AsyncRouter:
        def faults(request: turnout.emulation.EmulatedRequest) -> Fault | None:
            hosts.append(request.host)
            return Fault(error="overloaded") if request.host == "a.test" else None

        transport = mock_transport({"a.test": TinyEmulator(), "b.test": TinyEmulator()}, faults)
        return turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            plugins=plugins(),
            transport=transport,
            store=store,
            retry_policy=NO_RETRY,
            breaker=TRIP_AT_FIVE,
        )

    async def main() -> tuple[list[list[tuple[str, str | None]]], list[str], dict[str, str]]:
        first_hosts: list[str] = []
        other_hosts: list[str] = []
        async with router(stores[0], first_hosts) as one, router(stores[1], other_hosts) as other:
            # Five at once: each claims, fails on a, settles (the fifth failure trips it).
            first = await asyncio.gather(*(one.chat(HELLO) for _ in range(5)))
            assert [outcomes(r.attempts) for r in first] == [[("a", "unavailable"), ("b", None)]] * 5
            seen = [
                outcomes((await other.chat([{"role": "user", "content": "x"}])).attempts) for _ in range(3)
            ]
            health = {name: str(h.status) for name, h in (await other.health()).items()}
        for store in stores:
            await store.aclose()
        return seen, other_hosts, health

    seen, hosts, health = asyncio.run(main())
    assert seen == [[("b", None)]] * 3
    assert hosts == ["b.test"] * 3
    assert health == {"a": "open", "b": "closed"}
    assert all(store.shared for store in stores)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_retry_budget_is_one_bucket_across_the_cluster(
    redis_cluster: RedisCluster, prefix: str, mode: str
) -> None:
    pair = [cluster_store(url, prefix, budget_start=3.0) for url in redis_cluster.urls[::2]]
    retry = Claim(
        ("a",), ("a",), time.time(), BreakerConfig(), RetryBudget(ratio=0.0, burst=3.0), spend="always"
    )
    if mode == "sync":
        spent = [pair[i % 2].claim(retry).spent for i in range(6)]
    else:

        async def main() -> list[bool]:
            got = [(await pair[i % 2].aclaim(retry)).spent for i in range(6)]
            for store in pair:
                await store.aclose()
            return got

        spent = asyncio.run(main())
    # Three tokens in all, whichever store takes them: the fourth retry is refused on either.
    assert spent == [True, True, True, False, False, False]
    assert pair[0].load(["a"])["a"].inflight == 3
    assert all(store.shared for store in pair)
    for store in pair:
        store.close()


def test_every_key_of_a_prefix_lives_in_one_slot(
    redis_cluster: RedisCluster, stores: tuple[RedisStore, RedisStore], prefix: str
) -> None:
    router, _ = make_router(stores[0], {"a": "oops"}, names=("a", "b", "c"))
    other, _ = make_router(stores[1], names=("a", "b", "c"))
    chat(router)
    chat(other)
    assert stores[0].key("a") == f"{{{prefix}}}dep:a"
    found = keys_by_node(redis_cluster, prefix)
    holding = [keys for keys in found if keys]
    assert len(holding) == 1, found  # one node holds them all
    keys = holding[0]
    # Deployments tried, the budget, each store's journal: a claim reads them in one script.
    assert [k for k in keys if b"}dep:" in k] == [f"{{{prefix}}}dep:{n}".encode() for n in ("a", "b")]
    assert f"{{{prefix}}}budget".encode() in keys
    assert sum(1 for k in keys if b"}ops:" in k) == 2
    client = redis_cluster.nodes[0].client()
    slots = {client.execute_command("CLUSTER", "KEYSLOT", key) for key in keys}
    assert slots == {client.execute_command("CLUSTER", "KEYSLOT", prefix)}
    client.close()
    router.close()
    other.close()


def test_prefixes_spread_over_the_nodes(redis_cluster: RedisCluster) -> None:
    """One prefix is one slot, so one node: routers of different prefixes spread the load."""
    holders = set()
    for n in range(12):
        prefix = f"spread{n}:"
        store = cluster_store(redis_cluster.urls[n % 3], prefix)
        assert store.claim(Claim(("a",), ("a",), time.time(), BreakerConfig(), RetryBudget())).name == "a"
        store.close()
        holders.add(tuple(i for i, keys in enumerate(keys_by_node(redis_cluster, prefix)) if keys))
    assert all(len(h) == 1 for h in holders)
    assert {h[0] for h in holders} == {0, 1, 2}


def test_an_idle_disconnect_is_not_an_outage_on_the_cluster(
    redis_cluster: RedisCluster, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nodes that close connections idle for a second (as managed Redis and NAT gateways
    do, after minutes): the cluster client's next step opens a fresh one, the store stays
    shared and logs nothing."""
    caplog.set_level(logging.INFO, logger="turnout.state")
    admin = [node.client() for node in redis_cluster.nodes]
    # A minute between tries: an outage taken by mistake would show until the test ends.
    options = {"client_name": NAME}
    store = cluster_store(redis_cluster.urls[0], prefix, retry_interval=60.0, client_options=options)
    loop = asyncio.new_event_loop()
    claim = Claim(("a",), ("a",), time.time(), BreakerConfig(), RetryBudget())

    def connections() -> int:
        return sum(1 for client in admin for c in client.client_list() if c["name"] == NAME)

    def closed_by_the_servers() -> None:
        deadline = time.monotonic() + 10.0
        while connections() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connections() == 0, "the nodes kept the idle connections open"

    try:
        for client in admin:
            client.config_set("timeout", 1)
        assert store.claim(claim).states["a"].inflight == 1
        assert loop.run_until_complete(store.aclaim(claim)).states["a"].inflight == 2
        assert connections() >= 2  # one of the blocking client's, one of the asyncio one's
        # Idle, the event loop running meanwhile (it sees its connections close, as a service's would).
        loop.run_until_complete(asyncio.to_thread(closed_by_the_servers))
        assert store.claim(claim).states["a"].inflight == 3
        assert loop.run_until_complete(store.aclaim(claim)).states["a"].inflight == 4
        assert store.shared
        assert [r.getMessage() for r in caplog.records if r.name == "turnout.state"] == []
    finally:
        for client in admin:
            client.config_set("timeout", 0)
            client.close()
        loop.run_until_complete(store.aclose())
        loop.close()
        store.close()
