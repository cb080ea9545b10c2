"""Connections that Redis (or a NAT, or an operator) closes are reopened, not taken
for an outage: the store stays shared, logs nothing, and loses no update."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from turnout._budget import RetryBudget
from turnout._flow import Claim, Settle
from turnout._health import BreakerConfig, DeploymentState, Outcome
from turnout._redis_flow import Flow, Reconnect
from turnout.state import RedisStore

from .conftest import RedisServer

pytestmark = pytest.mark.redis

NAME = "turnout-under-test"  # the store's connections, as CLIENT LIST shows them
# Failures that count, never trip: `consecutive` counts the settles made.
COUNTING = BreakerConfig(consecutive_failures=10**9, failure_rate=1.1, window=1, min_calls=1)
# Each call deposits one token, never capped: the tokens count the deposits made.
DEPOSIT_ONE = RetryBudget(ratio=1.0, burst=1e9)


def claim(name: str, *, deposit: bool = False) -> Claim:
    """A place on `name` (inflight + 1), with the budget's deposit when `deposit`."""
    return Claim((name,), (name,), time.time(), COUNTING, DEPOSIT_ONE, deposit=deposit)


def failure(name: str) -> Settle:
    """An outcome that counts (consecutive + 1) and gives the place back (inflight - 1)."""
    return Settle(name, Outcome("failure", time.time(), error="server_error", health_failure=True), COUNTING)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "turnout.state" and r.levelno >= logging.WARNING]


def make_store(server: RedisServer, prefix: str = "d:") -> RedisStore:
    # A minute between tries: an outage taken by mistake would show until the test ends.
    return RedisStore(server.url, prefix=prefix, retry_interval=60.0, client_options={"client_name": NAME})


def connections(server: RedisServer) -> int:
    """How many connections of the store the server holds open."""
    client = server.client()
    try:
        return sum(1 for c in client.client_list() if c["name"] == NAME)
    finally:
        client.close()


def wait_until_closed_by_server(server: RedisServer) -> None:
    """Until `--timeout` has closed every connection of the store (a bounded wait)."""
    deadline = time.monotonic() + 10.0
    while connections(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert connections(server) == 0, "the server kept the idle connections open"


def stored_inflight(server: RedisServer, key: str) -> int:
    client = server.client()
    try:
        raw = client.get(key)
    finally:
        client.close()
    return 0 if raw is None else int(json.loads(raw)["inflight"])


@pytest.fixture
def idle_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server that closes connections idle for more than a second, as managed Redis
    services and NAT gateways do (after minutes, there)."""
    server = RedisServer(tmp_path, options=("--timeout", "1"))
    server.start()
    yield server
    server.stop()


class Calls:
    """The store's calls, sync or async (on one event loop of the test's own)."""

    def __init__(self, store: RedisStore, mode: str) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def run(self, sync: Callable[..., Any], asynchronous: Callable[..., Any], *args: Any) -> Any:
        if self.loop is None:
            return sync(*args)
        return self.loop.run_until_complete(asynchronous(*args))

    def load(self, name: str) -> DeploymentState:
        return self.run(self.store.load, self.store.aload, [name])[name]  # type: ignore[no-any-return]

    def claim(self, name: str, *, deposit: bool = False) -> int:
        """Claim a place on `name`: its calls in flight afterwards."""
        got = self.run(self.store.claim, self.store.aclaim, claim(name, deposit=deposit))
        return got.states[name].inflight  # type: ignore[no-any-return]

    def settle(self, name: str) -> int:
        """A failure on `name`: its consecutive failures afterwards."""
        _, after = self.run(self.store.settle, self.store.asettle, failure(name))
        return after.consecutive  # type: ignore[no-any-return]

    def tokens(self) -> float | None:
        return self.store._core.outage.seen_tokens

    def idle(self, server: RedisServer) -> None:
        """Idle until the server has closed the stores' connections; an event loop keeps
        running meanwhile (it sees the connections close, as a service's loop would)."""
        if self.loop is None:
            wait_until_closed_by_server(server)
        else:
            self.loop.run_until_complete(asyncio.to_thread(wait_until_closed_by_server, server))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.store.aclose())
            self.loop.close()
        self.store.close()


def test_an_idle_disconnect_is_not_an_outage(
    idle_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A blocking store and an asyncio one side by side (they idle together)."""
    caplog.set_level(logging.INFO, logger="turnout.state")
    both = [Calls(make_store(idle_redis, "s:"), "sync"), Calls(make_store(idle_redis, "a:"), "async")]
    idle = both[1].idle  # its event loop runs meanwhile, as a service's would
    for calls in both:
        assert calls.claim("a", deposit=True) == 1
        assert calls.tokens() == 11.0
    assert connections(idle_redis) >= 2
    # After each idle period the first step meets a connection the server has closed:
    # a load the first time, a claim the second.
    idle(idle_redis)
    for calls in both:
        assert calls.load("a").inflight == 1
        assert calls.claim("a", deposit=True) == 2
        assert calls.tokens() == 12.0
        assert calls.store.shared
    idle(idle_redis)
    for calls in both:
        assert calls.claim("a", deposit=True) == 3
        assert calls.settle("a") == 1
        assert calls.tokens() == 13.0
        assert calls.load("a").inflight == 2
        assert calls.store.shared
    assert warnings_of(caplog) == []
    assert not [r for r in caplog.records if r.name == "turnout.state"]  # no outage, no "answers again"
    for calls in both:
        assert stored_inflight(idle_redis, calls.store.key("a")) == 2  # every step reached Redis
        calls.close()


WORKERS = 8
KILLS = 5
MOST_ROUNDS = 5000  # a worker stops there (well after the kills, when the store works)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connections_killed_under_load_are_reopened(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """Eight workers (threads, or tasks on one loop) claim on their own record, claim
    on a shared one with a deposit, settle a failure there, and load; meanwhile every
    connection of the store is killed (CLIENT KILL), five times, each once every worker
    has moved on since the last. A step whose reply a kill lost is sent again, and its
    journal keeps it from being made twice."""
    caplog.set_level(logging.INFO, logger="turnout.state")
    store = make_store(private_redis)
    rounds = [0] * WORKERS
    stop = threading.Event()
    killer = private_redis.client()
    opened_before = int(killer.info("stats")["total_connections_received"])

    def kill_repeatedly() -> list[int]:
        """Kill the store's connections, each time after every worker has done two
        more rounds (so that each step meets one kill at the most)."""
        killed = []
        deadline = time.monotonic() + 30.0
        for _ in range(KILLS):
            seen = list(rounds)
            while any(then + 2 > now < MOST_ROUNDS for now, then in zip(rounds, seen, strict=True)):
                assert time.monotonic() < deadline, f"the workers stalled at {rounds}"
                time.sleep(0.002)
            killed.append(int(killer.client_kill_filter(_type="normal", skipme=True)))
        stop.set()
        return killed

    def one_round_sync(i: int) -> None:
        store.claim(claim(f"w{i}"))
        store.claim(claim("shared", deposit=True))
        store.settle(failure("shared"))
        store.load([f"w{i}", "shared"])

    async def one_round_async(i: int) -> None:
        await store.aclaim(claim(f"w{i}"))
        await store.aclaim(claim("shared", deposit=True))
        await store.asettle(failure("shared"))
        await store.aload([f"w{i}", "shared"])

    if mode == "sync":

        def work(i: int) -> None:
            while not stop.is_set() and rounds[i] < MOST_ROUNDS:
                one_round_sync(i)
                rounds[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        try:
            killed = kill_repeatedly()
        finally:
            stop.set()
            for t in threads:
                t.join()
    else:

        async def main() -> list[int]:
            async def work(i: int) -> None:
                while not stop.is_set() and rounds[i] < MOST_ROUNDS:
                    await one_round_async(i)
                    rounds[i] += 1

            tasks = [asyncio.create_task(work(i)) for i in range(WORKERS)]
            try:
                return await asyncio.to_thread(kill_repeatedly)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                await store.aclose()

        killed = asyncio.run(main())

    # No kill was taken for an outage: nothing logged, nothing served locally...
    assert store.shared
    assert warnings_of(caplog) == []
    assert not [r for r in caplog.records if r.name == "turnout.state"]
    # ...though every kill closed connections the store was using, and it opened new ones.
    assert max(rounds) < MOST_ROUNDS, "the kills took longer than the workers' rounds"
    assert len(killed) == KILLS
    assert min(killed) >= 1, killed
    opened = int(killer.info("stats")["total_connections_received"]) - opened_before
    assert opened >= KILLS + 1
    # No step lost, none made twice.
    states = store.load([f"w{i}" for i in range(WORKERS)] + ["shared"])
    assert [states[f"w{i}"].inflight for i in range(WORKERS)] == rounds
    assert (states["shared"].inflight, states["shared"].consecutive) == (0, sum(rounds))
    store.claim(claim("shared"))  # reads the tokens back
    assert store._core.outage.seen_tokens == store.budget_start + sum(rounds)
    killer.close()
    store.close()


def reconnect() -> Flow[None]:
    yield Reconnect()


def test_a_reconnect_closes_the_idle_connections_so_the_next_command_opens_a_fresh_one(
    redis_server: RedisServer,
) -> None:
    """The flows' Reconnect, as each driver performs it: not one idle connection is
    left open (any of them might be one the server closed while it idled)."""
    store = make_store(redis_server)
    pool = store._performer.pool
    held = [pool.get_connection() for _ in range(3)]
    for connection in held:
        pool.release(connection)
    assert connections(redis_server) == 3
    store._drive(reconnect())
    assert connections(redis_server) == 0
    assert store.load(["a"]) == {"a": DeploymentState()}
    assert connections(redis_server) == 1

    async def main() -> None:
        await asyncio.gather(*(store.aload(["a"]) for _ in range(3)))
        assert connections(redis_server) == 1 + 3
        await store._adrive(reconnect())
        assert connections(redis_server) == 1
        await store.aclose()

    asyncio.run(main())
    store.close()
