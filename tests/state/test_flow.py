"""The Redis store's decisions, with no Redis: its flows driven by hand.

Each flow yields Redis operations; here every operation gets a scripted answer
(a reply, or an exception thrown in as the client would raise it), so the
round trips, their time limits, the NOSCRIPT reload, the retry on a fresh
connection and the outage switch are checked step by step. The same flows run
against a real server in the other tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest
import redis

from turnout._budget import RetryBudget
from turnout._flow import Claim, Claimed, Settle
from turnout._health import BreakerConfig, DeploymentState, Outcome
from turnout._redis_codec import Layout
from turnout._redis_flow import Eval, Failure, Failures, Flow, Op, Reconnect, RedisCore
from turnout._redis_lua import CANCEL, CLAIM, LOAD, SETTLE
from turnout._redis_outage import Outage
from turnout._state import OutOfTime

BUDGET = 0.25  # the store's own time for one round trip
NOW = 1_700_000_000.0
BREAKER = BreakerConfig()
JOURNAL = "p:ops:s1"
DEPLOYMENT_KEYS = ("p:dep:a", "p:dep:b")
CLAIM_KEYS = (JOURNAL, "p:budget", *DEPLOYMENT_KEYS)
ONE = b'{"inflight":1}'


class Clock:
    """The flows' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_core(retry_interval: float = 60.0, clock: Clock | None = None) -> RedisCore:
    outage = Outage("redis://:***@h:6379/0", ("pw",), retry_interval, 10.0)
    layout = Layout("p:", 3600.0, 10.0)
    return RedisCore(
        layout, outage, Failures.of_redis(), BUDGET, JOURNAL, wall=lambda: NOW, clock=clock or Clock()
    )


def claim_of(*candidates: str, **kw: Any) -> Claim:
    return Claim(candidates, ("a", "b"), NOW, BREAKER, RetryBudget(), **kw)


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


def closed() -> BaseException:
    return raised(redis.ConnectionError("Connection closed by server."))


def noscript() -> BaseException:
    return raised(redis.exceptions.NoScriptError("No matching script. Please use EVAL."))


def claimed_a(tokens: bytes = b"9") -> list[Any]:
    """CLAIM's reply: `a` claimed (a token paid), its state before, then both states."""
    return [1, 1, tokens, b"{}", ONE, b"{}"]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "turnout.state" and r.levelno >= logging.WARNING
    ]


# -- one round trip per step -------------------------------------------------------------


def test_a_claim_is_one_script_with_every_deployment_and_the_budget() -> None:
    core = make_core()
    command = claim_of("a", "b", deposit=True, spend="always")
    ops, got = drive(core.claim(command), [claimed_a()])
    [op] = ops
    assert op == Eval(CLAIM, CLAIM_KEYS, op.args, BUDGET)
    assert op.args[:2] == ("1", repr(NOW))  # the operation's number, the time for expiries
    assert op.args[5:] == ("1", "0.5", "10.0", "always", "1", "120.0", "1", "2")  # ..., candidates
    assert op.command()[:3] == ("EVALSHA", CLAIM.sha, "4")
    empty = DeploymentState()
    assert got == Claimed("a", {"a": DeploymentState(inflight=1), "b": empty}, empty, candidates=("a", "b"))
    # What it read is what the next plan orders by, and what an outage starts from.
    assert core.outage.seen == {"a": DeploymentState(inflight=1), "b": empty}
    assert core.outage.seen_tokens == 9.0


def test_a_settle_is_one_script_bounded_by_the_store_alone() -> None:
    core = make_core()
    settled = Settle("a", Outcome.success(NOW, 0.5), BREAKER)
    ops, got = drive(core.settle(settled), [[ONE, b'{"latency":0.5}']])
    [op] = ops
    assert (op.script, op.keys, op.timeout) == (SETTLE, ("p:ops:s1", "p:dep:a"), BUDGET)
    assert op.args[11:16] == ("success", repr(NOW), "0.5", "", "0")
    assert got == (DeploymentState(inflight=1), DeploymentState(latency=0.5))
    assert core.outage.seen["a"] == DeploymentState(latency=0.5)


def test_a_load_is_one_script() -> None:
    core = make_core()
    ops, states = drive(core.load(["a", "b"]), [[ONE, b"{}"]])
    assert ops == [Eval(LOAD, DEPLOYMENT_KEYS, (), BUDGET)]
    assert states == {"a": DeploymentState(inflight=1), "b": DeploymentState()}
    assert drive(core.load([]), []) == ([], {})


def test_steps_carry_their_own_operation_numbers() -> None:
    core = make_core()
    first, _ = drive(core.claim(claim_of("a")), [claimed_a()])
    second, _ = drive(core.settle(Settle("a", Outcome.release(NOW), BREAKER)), [[ONE, b"{}"]])
    assert [op.args[0] for op in first + second if isinstance(op, Eval)] == ["1", "2"]


def test_a_plan_orders_the_candidates_from_the_states_last_read() -> None:
    core = make_core()
    drive(core.load(["a", "b"]), [[b'{"inflight":4}', ONE]])
    seen: list[dict[str, DeploymentState]] = []

    def least_busy(states: Any) -> list[str]:
        seen.append(dict(states))
        return sorted(states, key=lambda name: states[name].inflight)

    ops, got = drive(core.claim(claim_of(plan=least_busy)), [[2, 1, b"10", ONE, b'{"inflight":4}', b"{}"]])
    assert seen == [{"a": DeploymentState(inflight=4), "b": DeploymentState(inflight=1)}]
    assert ops[0].args[11:] == ("2", "1")  # b, then a
    assert (got.name, got.candidates) == ("b", ("b", "a"))


# -- failures ------------------------------------------------------------------------------


def test_noscript_sends_the_source_once_and_declares_nothing(caplog: pytest.LogCaptureFixture) -> None:
    core = make_core()
    ops, got = drive(core.claim(claim_of("a")), [noscript(), claimed_a()])
    assert [op.source for op in ops if isinstance(op, Eval)] == [False, True]
    assert ops[1].command()[:2] == ("EVAL", CLAIM.source)
    assert ops[0].args == ops[1].args
    assert got.name == "a"
    assert not core.outage.down
    assert warnings_of(caplog) == []


def test_a_broken_connection_is_replaced_once_and_the_same_operation_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sent again with its number: if the first had been made, the script's journal
    says so and it is not made twice (tests/state/test_disconnects.py)."""
    core = make_core()
    ops, got = drive(core.claim(claim_of("a")), [closed(), None, claimed_a()])
    assert [type(op) for op in ops] == [Eval, Reconnect, Eval]
    assert ops[0] == ops[2]
    assert got.name == "a"
    assert not core.outage.down
    assert warnings_of(caplog) == []


def test_a_second_broken_connection_is_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    core = make_core()
    ops, got = drive(core.claim(claim_of("a")), [closed(), None, closed()])
    assert [type(op) for op in ops] == [Eval, Reconnect, Eval]
    assert got.name == "a"  # made locally
    assert core.outage.local.load(["a"])["a"].inflight == 1
    assert core.outage.down
    [warning] = warnings_of(caplog)
    assert "unavailable (ConnectionError: Connection closed by server.)" in warning


@pytest.mark.parametrize(
    "error",
    [
        redis.TimeoutError("Timeout reading from socket"),
        TimeoutError(),  # asyncio's bound on a round trip
        redis.AuthenticationError("invalid password pw"),
        redis.ResponseError("READONLY You can't write against a read only replica."),
        redis.exceptions.RedisClusterException("no startup node answered"),
    ],
    ids=["socket-timeout", "round-timeout", "auth", "readonly", "cluster"],
)
def test_other_redis_errors_are_an_outage_at_once(caplog: pytest.LogCaptureFixture, error: Exception) -> None:
    core = make_core()
    ops, result = drive(core.settle(Settle("a", Outcome.release(NOW), BREAKER)), [raised(error)])
    assert len(ops) == 1
    assert result == (DeploymentState(), DeploymentState())  # made locally
    assert core.outage.down
    [warning] = warnings_of(caplog)
    assert "pw" not in warning


def test_an_error_that_is_not_redis_s_goes_to_the_caller() -> None:
    core = make_core()
    with pytest.raises(KeyError):
        drive(core.claim(claim_of("a")), [raised(KeyError("x"))])
    assert not core.outage.down


def test_failures_table() -> None:
    failures = Failures.of_redis()
    assert failures.classify(noscript()) is Failure.NOSCRIPT
    assert failures.classify(closed()) is Failure.BROKEN
    assert failures.classify(ConnectionResetError()) is Failure.BROKEN
    assert failures.classify(redis.AuthenticationError()) is Failure.OUTAGE  # not a mere broken connection
    assert failures.classify(TimeoutError()) is Failure.SLOW
    assert failures.classify(OSError()) is Failure.OUTAGE
    assert failures.classify(ValueError()) is None


# -- the call's time -------------------------------------------------------------------------


def test_a_claim_is_bounded_by_the_time_left_in_the_call_too() -> None:
    core = make_core()
    ops, _ = drive(core.claim(claim_of("a"), within=0.125), [claimed_a()])
    assert ops[0].timeout == 0.125
    ops, _ = drive(core.claim(claim_of("a"), within=5.0), [claimed_a()])
    assert ops[0].timeout == BUDGET


def test_the_time_left_is_the_whole_claim_s_not_each_round_trip_s() -> None:
    clock = Clock()
    core = make_core(clock=clock)
    flow = core.claim(claim_of("a"), within=0.5)
    assert next(flow).timeout == BUDGET  # the store's own time binds first
    clock.now += 0.375
    again = flow.throw(noscript())
    assert (again.source, again.timeout) == (True, 0.125)  # then what is left of the call's
    clock.now += 0.125  # ...which runs out while the source is on its way
    cancel = flow.throw(raised(TimeoutError()))
    assert (cancel.script, cancel.timeout) == (CANCEL, BUDGET)
    with pytest.raises(OutOfTime):
        flow.send(0)
    assert not core.outage.down


def test_a_claim_cut_short_by_the_deadline_is_cancelled_and_is_no_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = make_core()
    flow = core.claim(claim_of("a", "b"), within=0.125)
    first = next(flow)
    assert isinstance(first, Eval)
    assert first.timeout == 0.125
    cancel = flow.throw(raised(redis.TimeoutError("Timeout reading from socket")))
    # The same operation, by number, on the same keys, with the store's own time.
    assert cancel == Eval(CANCEL, CLAIM_KEYS, (first.args[0], repr(NOW), "3600.0"), BUDGET)
    with pytest.raises(OutOfTime):
        flow.send(1)  # it had claimed `a`: given back
    assert not core.outage.down
    assert warnings_of(caplog) == []


def test_a_claim_with_no_time_left_goes_nowhere() -> None:
    with pytest.raises(OutOfTime):
        drive(make_core().claim(claim_of("a"), within=0.0), [])


def test_a_claim_slower_than_the_store_s_own_time_is_an_outage() -> None:
    core = make_core()
    ops, got = drive(core.claim(claim_of("a"), within=5.0), [raised(redis.TimeoutError("slow"))])
    assert len(ops) == 1  # no cancel: made locally from now on
    assert got.name == "a"
    assert core.outage.down


# -- the outage switch -------------------------------------------------------------------------


def test_an_outage_serves_locally_from_what_redis_last_said_and_probes_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state")
    core = make_core(retry_interval=60.0)
    drive(core.load(["a"]), [[b'{"status":"open","open_until":1700000060,"inflight":4}']])
    drive(core.load(["a"]), [closed(), None, closed()])
    assert core.outage.down
    # Within the retry interval nothing goes to Redis; the open breaker stays open,
    # the calls in flight elsewhere are not counted.
    ops, states = drive(core.load(["a"]), [])
    assert ops == []
    assert states["a"] == DeploymentState(status="open", open_until=NOW + 60)
    ops, got = drive(core.claim(claim_of("a")), [])
    assert (ops, got.name) == ([], None)
    # After it, one call probes; its success attaches the store again.
    core.outage.retry_interval = 0.0
    core.outage.failed(closed())  # sets the next try to now
    ops, states = drive(core.load(["a"]), [[b"{}"]])
    assert len(ops) == 1
    assert states == {"a": DeploymentState()}
    assert not core.outage.down
    assert len(warnings_of(caplog)) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "Redis state store redis://:***@h:6379/0 answers again; router state is shared again"
    ]


def test_the_keys_are_hash_tagged_on_a_cluster() -> None:
    assert Layout("turnout:", 3600.0, 10.0).key("a") == "turnout:dep:a"
    tagged = Layout("turnout:", 3600.0, 10.0, tagged=True)
    assert (tagged.key("a"), tagged.budget_key, tagged.journal("s1")) == (
        "{turnout:}dep:a",
        "{turnout:}budget",
        "{turnout:}ops:s1",
    )
    # A prefix with a tag of its own keeps it; an empty pair of braces is no tag.
    assert Layout("{app}:t:", 1.0, 1.0, tagged=True).key("a") == "{app}:t:dep:a"
    assert Layout("{}x:", 1.0, 1.0, tagged=True).key("a") == "{{}x:}dep:a"
