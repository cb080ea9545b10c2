"""A slow Redis never costs a call its deadline: calls to an instant upstream end
within their deadline plus a second, however slow Redis answers. A Redis slower than
the store's budget is an outage (state kept locally, one warning, Redis tried again
later); a claim cut short by the call's deadline is undone, not taken for an outage.

Redis is reached through `slow.SlowProxy`, which delays every round trip."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

import turnout
from turnout.emulation import mock_transport
from turnout.state import RedisStore

from .conftest import RedisServer
from .slow import slow_proxy
from .tiny import TinyEmulator, deployment, make_router, plugins

pytestmark = pytest.mark.redis

SLOW = 0.2  # seconds per round trip
MESSAGES = [{"role": "user", "content": "hello"}]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "turnout.state" and r.levelno >= logging.WARNING
    ]


class Calls:
    """Calls through a sync `Router` or an `AsyncRouter` (on one loop of the test's own)."""

    def __init__(self, store: RedisStore, mode: str) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        if self.loop is None:
            self.router: Any = make_router(store)[0]
        else:
            transport = mock_transport({"a.test": TinyEmulator(), "b.test": TinyEmulator()})
            self.router = turnout.AsyncRouter(
                [deployment("a"), deployment("b")], plugins=plugins(), transport=transport, store=store
            )

    def chat(self, deadline: float) -> float:
        """One call (its error, if any, swallowed): how long it took."""
        started = time.monotonic()
        error: BaseException | None = None
        try:
            if self.loop is None:
                self.router.chat(MESSAGES, deadline=deadline)
            else:
                self.loop.run_until_complete(self.router.chat(MESSAGES, deadline=deadline))
        except turnout.TurnoutError as raised:
            error = raised
        assert error is None or isinstance(error, turnout.APITimeoutError), error  # the deadline's only
        return time.monotonic() - started

    def close(self) -> None:
        if self.loop is None:
            self.router.close()
        else:
            self.loop.run_until_complete(self.router.aclose())
            self.loop.run_until_complete(self.store.aclose())
            self.loop.close()
        self.store.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def test_a_slow_redis_costs_a_call_at_most_its_deadline_and_a_second(
    redis_server: RedisServer, prefix: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """200 ms per round trip, within the store's budget: a call's two steps take about
    0.4 s, more than these deadlines. A claim that would pass the deadline is cut short
    (the call ends on its deadline); a settle is made after it."""
    with slow_proxy(redis_server.port, SLOW) as proxy:
        store = RedisStore(proxy.url, prefix=prefix, socket_timeout=1.0, connect_timeout=1.0)
        calls = Calls(store, mode)
        try:
            for deadline in (0.3, 0.15, 0.05, 1.0):
                for _ in range(2):
                    assert calls.chat(deadline) < deadline + 1.0
            assert store.shared  # slower than the calls, not than the store: no outage
            assert warnings_of(caplog) == []
        finally:
            calls.close()
    # Every place claimed was given back, by a settle or by a cancelled claim.
    client = redis_server.client()
    for name in ("a", "b"):
        raw = client.get(store.key(name))
        assert raw is None or json.loads(raw).get("inflight", 0) == 0
    client.close()


def test_a_redis_slower_than_the_store_s_budget_is_an_outage_until_it_answers_again(
    redis_server: RedisServer, prefix: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state")
    with slow_proxy(redis_server.port, 3 * SLOW) as proxy:
        store = RedisStore(proxy.url, prefix=prefix, socket_timeout=SLOW, retry_interval=0.5)
        calls = Calls(store, mode)
        try:
            for _ in range(5):
                assert calls.chat(1.0) < 2.0
            assert not store.shared
            [warning] = warnings_of(caplog)  # once, however many calls met it
            assert "unavailable (TimeoutError" in warning
            proxy.delay = 0.0
            time.sleep(0.6)
            assert calls.chat(1.0) < 2.0
            assert store.shared
            assert [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()] == [
                f"Redis state store {proxy.url} answers again; router state is shared again"
            ]
            assert len(warnings_of(caplog)) == 1
        finally:
            calls.close()


def test_a_claim_cut_short_by_the_deadline_gives_its_place_back(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim was on its way when the call's time ran out: it is cancelled by its
    number, whether it arrives before the cancellation or after."""
    client = redis_server.client()

    def inflight() -> int:
        count: int = json.loads(client.get(store.key("a")) or b"{}").get("inflight", 0)
        return count

    with slow_proxy(redis_server.port, 3 * SLOW) as proxy:
        store = RedisStore(proxy.url, prefix=prefix, socket_timeout=2.0, connect_timeout=2.0)
        calls = Calls(store, "sync")
        try:
            calls.chat(0.1)
            time.sleep(2 * SLOW)  # anything still on its way has arrived
            assert inflight() == 0
            assert store.shared
            assert warnings_of(caplog) == []
            # The store goes on as usual.
            assert store.claim(turnout_claim(), within=5.0).name == "a"
            assert inflight() == 1
        finally:
            calls.close()
    client.close()


def turnout_claim() -> Any:
    from turnout._flow import Claim
    from turnout._health import BreakerConfig
    from turnout.state import RetryBudget

    return Claim(("a",), ("a",), time.time(), BreakerConfig(), RetryBudget())
