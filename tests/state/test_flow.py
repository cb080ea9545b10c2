"""The Redis store's decisions, with no Redis: its flows driven by hand.

Each flow yields Redis operations; here every operation gets a scripted answer
(a value, or an exception thrown in as the client would raise it), so the
transaction, the retry on a fresh connection and the outage switch are checked
step by step. The same flows run against a real server in the other tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest
import redis
from attrs import evolve

from turnout._health import DeploymentState
from turnout._redis_codec import Layout
from turnout._redis_flow import (
    MAX_CONFLICTS,
    Failure,
    Failures,
    Flow,
    MGet,
    Op,
    Reconnect,
    RedisCore,
    Sleep,
    TakeTurn,
    Unwatch,
    WatchGet,
    Write,
    conflict_pause,
)
from turnout._redis_outage import Outage

KEY = "p:dep:a"
ONE = b'{"inflight":1}'
TWO = b'{"inflight":2}'
HOUR_MS = 3600 * 1000
NOW = 100.0  # the scripted clock
ROUND = NOW + 3 * 0.25  # three socket timeouts


def make_core(retry_interval: float = 60.0) -> RedisCore:
    outage = Outage("redis://:***@h:6379/0", ("pw",), retry_interval, 10.0)
    return RedisCore(Layout("p:", 3600.0, 10.0), outage, Failures.of_redis(), 0.25)


class Inc:
    """inflight + 1, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, state: DeploymentState) -> tuple[DeploymentState, int]:
        self.calls += 1
        return evolve(state, inflight=state.inflight + 1), state.inflight + 1


def drive(flow: Flow[Any], answers: Iterable[Any]) -> tuple[list[Op], Any]:
    """Each operation the flow yields gets the next answer; returns the operations and
    what the flow returned."""
    ops: list[Op] = []
    script = iter(answers)
    try:
        op = next(flow)
        while True:
            ops.append(op)
            answer = next(script)
            op = flow.throw(answer) if isinstance(answer, BaseException) else flow.send(answer)
    except StopIteration as stop:
        assert next(script, "done") == "done", "the flow ended before the script"
        return ops, stop.value


def raised(exc: BaseException) -> BaseException:
    """`exc` with a traceback, as the client raises it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def broken_while_watching() -> BaseException:
    """What redis-py raises when the connection dies between WATCH and EXEC: a
    WatchError raised while handling the ConnectionError."""
    try:
        try:
            raise redis.ConnectionError("Connection closed by server.")
        except redis.ConnectionError:
            raise redis.WatchError("A ConnectionError occurred while watching one or more keys") from None
    except redis.WatchError as caught:
        return caught


def conflict() -> BaseException:
    return raised(redis.WatchError("Watched variable changed."))


def closed() -> BaseException:
    return raised(redis.ConnectionError("Connection closed by server."))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "turnout.state" and r.levelno >= logging.WARNING
    ]


# -- the transaction ---------------------------------------------------------------


def test_an_update_watches_reads_applies_and_writes_with_a_ttl() -> None:
    core, inc = make_core(), Inc()
    ops, result = drive(core.update("a", inc, clock=lambda: NOW), [None, None, [True]])
    assert ops == [TakeTurn(KEY), WatchGet(KEY, ROUND), Write(KEY, ONE, HOUR_MS, ROUND)]
    assert result == 1
    assert core.outage.seen["a"].inflight == 1


def test_nothing_changed_means_nothing_written() -> None:
    core = make_core()
    ops, result = drive(core.update("a", lambda s: (s, "same")), [None, ONE, None])
    assert ops == [TakeTurn(KEY), WatchGet(KEY, None), Unwatch(None)]
    assert result == "same"


def test_a_missing_key_is_written_even_when_the_state_stays_empty() -> None:
    core = make_core()
    ops, _ = drive(core.update("a", lambda s: (s, None)), [None, None, [True]])
    assert ops[-1] == Write(KEY, b"{}", HOUR_MS, None)


def test_a_conflict_runs_fn_again_on_the_new_value() -> None:
    core, inc = make_core(), Inc()
    ops, result = drive(core.update("a", inc), [None, None, conflict(), ONE, [True]])
    assert ops[1:] == [
        WatchGet(KEY, None),
        Write(KEY, ONE, HOUR_MS, None),
        WatchGet(KEY, None),
        Write(KEY, TWO, HOUR_MS, None),
    ]
    assert (result, inc.calls) == (2, 2)
    assert core.outage.down is False


def test_conflicts_pause_after_three_in_a_row_and_give_up_after_a_thousand() -> None:
    assert [conflict_pause(n) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert all(0.0 <= conflict_pause(n) <= 0.0005 * min(n - 1, 20) for n in range(4, 100))
    core = make_core()
    answers: list[Any] = [None]  # TakeTurn
    for n in range(1, MAX_CONFLICTS + 1):
        answers += [None, conflict()]  # WatchGet, Write
        if n > 3:
            answers.append(None)  # Sleep
    ops, result = drive(core.update("a", Inc()), answers)
    assert sum(isinstance(op, Write) for op in ops) == MAX_CONFLICTS
    sleeps = [op for op in ops if isinstance(op, Sleep)]
    assert len(sleeps) == MAX_CONFLICTS - 3
    assert ops[1:8] == [WatchGet(KEY, None), Write(KEY, ONE, HOUR_MS, None)] * 3 + [WatchGet(KEY, None)]
    # Given up: made locally, and Redis is not taken for down.
    assert result == 1
    assert core.outage.local.load(["a"])["a"].inflight == 1
    assert core.outage.down is False


def test_an_error_that_is_not_redis_s_goes_to_the_caller() -> None:
    core = make_core()
    with pytest.raises(KeyError):
        drive(core.update("a", Inc()), [None, raised(KeyError("x"))])

    def bad(state: DeploymentState) -> tuple[DeploymentState, None]:
        raise ValueError("a bug in fn")

    with pytest.raises(ValueError, match="a bug in fn"):
        drive(core.update("a", bad), [None, None])
    assert core.outage.down is False


# -- broken connections --------------------------------------------------------------


def test_a_connection_closed_before_watch_is_replaced_once_and_nothing_declared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, inc = make_core(), Inc()
    ops, result = drive(core.update("a", inc, clock=lambda: NOW), [None, closed(), None, None, [True]])
    assert ops == [
        TakeTurn(KEY),
        WatchGet(KEY, ROUND),
        Reconnect(ROUND),
        WatchGet(KEY, ROUND),
        Write(KEY, ONE, HOUR_MS, ROUND),
    ]
    assert (result, inc.calls) == (1, 1)
    assert core.outage.down is False
    assert warnings_of(caplog) == []


def test_a_connection_lost_while_watching_is_no_conflict_and_is_replaced_once() -> None:
    core = make_core()
    ops, result = drive(core.update("a", Inc()), [None, broken_while_watching(), None, None, [True]])
    assert [type(op) for op in ops] == [TakeTurn, WatchGet, Reconnect, WatchGet, Write]
    assert result == 1


def test_a_second_broken_connection_is_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    core = make_core()
    ops, result = drive(core.update("a", Inc()), [None, closed(), None, broken_while_watching()])
    assert [type(op) for op in ops] == [TakeTurn, WatchGet, Reconnect, WatchGet]
    assert result == 1  # made locally
    assert core.outage.down is True
    [warning] = warnings_of(caplog)
    # The cause is reported, not redis-py's WatchError.
    assert "unavailable (ConnectionError: Connection closed by server.)" in warning


@pytest.mark.parametrize(
    "error",
    [
        redis.TimeoutError("Timeout reading from socket"),
        TimeoutError(),  # asyncio's bound on a round
        redis.AuthenticationError("invalid password pw"),
        redis.ResponseError("READONLY You can't write against a read only replica."),
    ],
    ids=["socket-timeout", "round-timeout", "auth", "readonly"],
)
def test_other_redis_errors_are_an_outage_at_once(caplog: pytest.LogCaptureFixture, error: Exception) -> None:
    core = make_core()
    ops, result = drive(core.update("a", Inc()), [None, raised(error)])
    assert [type(op) for op in ops] == [TakeTurn, WatchGet]
    assert result == 1
    assert core.outage.down is True
    [warning] = warnings_of(caplog)
    assert "pw" not in warning


def test_a_write_whose_reply_was_lost_is_not_made_twice() -> None:
    core, inc = make_core(), Inc()
    answers = [None, None, broken_while_watching(), None, ONE, None]
    ops, result = drive(core.update("a", inc), answers)
    assert ops[1:] == [
        WatchGet(KEY, None),
        Write(KEY, ONE, HOUR_MS, None),
        Reconnect(None),
        WatchGet(KEY, None),  # holds what was written: the write was made
        Unwatch(None),
    ]
    assert (result, inc.calls) == (1, 1)


def test_a_write_lost_before_it_was_made_is_made_again() -> None:
    core, inc = make_core(), Inc()
    answers = [None, None, closed(), None, None, [True]]
    ops, result = drive(core.update("a", inc), answers)
    assert ops[3:] == [Reconnect(None), WatchGet(KEY, None), Write(KEY, ONE, HOUR_MS, None)]
    assert (result, inc.calls) == (1, 2)


def test_a_lost_write_is_made_again_on_whatever_another_process_wrote() -> None:
    core, inc = make_core(), Inc()
    answers = [None, None, closed(), None, TWO, [True]]
    ops, result = drive(core.update("a", inc), answers)
    assert ops[-1] == Write(KEY, b'{"inflight":3}', HOUR_MS, None)
    assert result == 3


# -- loads, modes, the budget ------------------------------------------------------------


def test_a_load_is_one_mget_retried_once_on_a_fresh_connection() -> None:
    core = make_core()
    ops, states = drive(core.load(["a", "b"], clock=lambda: NOW), [closed(), None, [ONE, None]])
    assert ops == [MGet(["p:dep:a", "p:dep:b"], ROUND), Reconnect(ROUND), MGet(["p:dep:a", "p:dep:b"], ROUND)]
    assert states == {"a": DeploymentState(inflight=1), "b": DeploymentState()}
    assert core.outage.down is False
    assert drive(core.load([]), []) == ([], {})


def test_an_outage_serves_locally_from_what_redis_last_said_and_probes_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state")
    core = make_core(retry_interval=60.0)
    drive(core.load(["a"]), [[b'{"status":"open","inflight":4}']])
    drive(core.load(["a"]), [closed(), None, closed()])
    assert core.outage.down is True
    # Within the retry interval nothing goes to Redis; the open breaker stays open,
    # the calls in flight elsewhere are not counted.
    ops, states = drive(core.load(["a"]), [])
    assert ops == []
    assert states["a"] == DeploymentState(status="open")
    ops, result = drive(core.update("a", Inc()), [])
    assert (ops, result) == ([], 1)
    # After it, one call probes; its success attaches the store again.
    core.outage.retry_interval = 0.0
    core.outage.failed(closed())  # sets the next try to now
    ops, states = drive(core.load(["a"]), [[None]])
    assert ops == [MGet(["p:dep:a"], None)]
    assert states == {"a": DeploymentState()}
    assert core.outage.down is False
    assert len(warnings_of(caplog)) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "Redis state store redis://:***@h:6379/0 answers again; router state is shared again"
    ]


def test_the_budget_is_a_number_under_its_own_key() -> None:
    core = make_core()
    ops, result = drive(core.update_budget(lambda tokens: (tokens - 1.0, True)), [None, None, [True]])
    assert ops == [TakeTurn("p:budget"), WatchGet("p:budget", None), Write("p:budget", b"9.0", HOUR_MS, None)]
    assert result is True
    assert core.outage.seen_tokens == 9.0


def test_failures_table() -> None:
    failures = Failures.of_redis()
    assert failures.classify(conflict())[0] is Failure.CONFLICT  # type: ignore[index]
    assert failures.classify(broken_while_watching())[0] is Failure.BROKEN  # type: ignore[index]
    assert failures.classify(ConnectionResetError())[0] is Failure.BROKEN  # type: ignore[index]
    assert failures.classify(OSError())[0] is Failure.OUTAGE  # type: ignore[index]
    assert failures.classify(ValueError()) is None
