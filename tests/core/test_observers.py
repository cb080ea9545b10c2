"""Seeing what the router does: per-router observers and the decision record, and the
`turnout` loggers (issue 18). Every test runs with both routers (`calls`)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import turnout
from turnout.emulation import Fault

from .calls import FAST, HI, emulated, per_host
from .conftest import deployment

KEY_A = "sk-acme-a-0123456789"


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[turnout.AttemptEvent] = []
        self.calls: list[turnout.CallEvent] = []
        self.breakers: list[turnout.BreakerEvent] = []

    def on_attempt(self, event: turnout.AttemptEvent) -> None:
        self.attempts.append(event)

    def on_call(self, event: turnout.CallEvent) -> None:
        self.calls.append(event)

    def on_breaker(self, event: turnout.BreakerEvent) -> None:
        self.breakers.append(event)


def decisions(events: list[turnout.AttemptEvent]) -> list[tuple[str, str, str]]:
    return [(e.deployment, e.decision, e.reason) for e in events]


async def test_retry_fallback_and_done_are_told_as_they_happen(calls: Any) -> None:
    seen = Recorder()
    script = per_host({"a": [Fault(error="slow_down", retry_after=0.001), Fault(error="overloaded")]})
    response = await calls.chat(
        [deployment("a"), deployment("b")],
        emulated(script),
        retry_policy=turnout.RetryPolicy(max_retries=1, base=0.001, cap=0.001, jitter="none"),
        observers=[seen],
        params={"metadata": {"user": "u-1"}},
    )
    assert response.deployment == "b"
    assert decisions(seen.attempts) == [
        ("a", "retry", "429, retry after 0.0 s"),
        ("a", "fallback", "1 retries used"),
        ("b", "done", ""),
    ]
    first, second, third = seen.attempts
    assert [e.number for e in seen.attempts] == [1, 2, 3]
    assert {e.call_id for e in seen.attempts} == {seen.calls[0].call_id}
    assert first.route == "default"
    assert first.provider == "acme"
    assert first.model == "model-a"
    assert first.error is not None
    assert first.error.kind is turnout.ErrorKind.RATE_LIMITED
    assert second.error is not None
    assert second.error.kind is turnout.ErrorKind.UNAVAILABLE
    assert second.waited >= 0.001
    assert first.elapsed >= 0.0
    assert third.error is None
    assert third.usage == response.usage
    assert all(e.metadata == {"user": "u-1"} for e in seen.attempts)
    # The response's own record tells the same story.
    assert [(a.deployment, a.decision, a.reason) for a in response.attempts] == decisions(seen.attempts)
    [call] = seen.calls
    assert call.deployment == "b"
    assert call.error is None
    assert call.stream is False
    assert call.attempts == response.attempts
    assert call.usage == response.usage
    assert call.elapsed > 0
    assert call.metadata == {"user": "u-1"}
    assert call.time_to_first_chunk is None


async def test_a_failed_call_is_told_with_its_error(calls: Any) -> None:
    seen = Recorder()
    script = per_host({"a": [Fault(error="invalid_field")]})
    error = await calls.chat([deployment("a"), deployment("b")], emulated(script), observers=[seen])
    assert isinstance(error, turnout.ValidationError)
    assert decisions(seen.attempts) == [("a", "give_up", "not retryable")]
    [call] = seen.calls
    assert call.error is error
    assert call.deployment is None
    assert call.attempts == error.attempts


async def test_a_stream_closed_early_is_an_abandoned_attempt(calls: Any) -> None:
    seen = Recorder()
    router = calls._build([deployment("a")], emulated(), {"observers": [seen]})
    if calls.mode == "sync":
        with router, router.stream(HI) as stream:
            next(stream)
    else:
        async with router, router.stream(HI) as astream:
            await anext(astream)
    assert decisions(seen.attempts) == [("a", "abandoned", "the caller closed the stream")]
    [call] = seen.calls
    assert call.error is None
    assert call.deployment is None
    assert call.stream is True
    assert call.time_to_first_chunk is not None
    assert 0 <= call.time_to_first_chunk <= call.elapsed


async def test_a_stream_read_to_its_end_gives_its_time_to_first_chunk(calls: Any) -> None:
    seen = Recorder()
    streamed = await calls.stream([deployment("a")], emulated(), observers=[seen])
    assert streamed.error is None
    [call] = seen.calls
    assert call.stream is True
    assert call.deployment == "a"
    assert call.time_to_first_chunk is not None
    assert call.time_to_first_chunk <= call.elapsed
    assert decisions(seen.attempts) == [("a", "done", "")]


async def test_a_breaker_opening_and_a_cooldown_are_told(calls: Any) -> None:
    seen = Recorder()
    script = per_host({"a": [Fault(error="overloaded")], "b": [Fault(error="invalid_key")]})
    breaker = turnout.BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    await calls.chat(
        [deployment("a"), deployment("b"), deployment("c")],
        emulated(script),
        retry_policy=turnout.RetryPolicy(max_retries=0),
        breaker=breaker,
        observers=[seen],
    )
    opened, cooled = seen.breakers
    assert (opened.deployment, opened.old, opened.new, opened.reason) == (
        "a",
        "closed",
        "open",
        "too many failures",
    )
    assert opened.until is not None
    assert (cooled.deployment, cooled.old, cooled.new) == ("b", "closed", "closed")
    assert cooled.reason == "cooling down after authentication"
    assert cooled.until is not None


async def test_an_observer_that_raises_is_logged_and_ignored(
    calls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_attempt(self, event: Any) -> None:
            raise RuntimeError("observer bug")

    seen = Recorder()
    caplog.set_level(logging.ERROR, logger="turnout")
    response = await calls.chat([deployment("a")], emulated(), observers=[Broken(), seen])
    assert response.content.startswith("echo:")
    assert [e.decision for e in seen.attempts] == ["done"]  # the next observer still hears
    assert any("an observer failed" in r.getMessage() for r in caplog.records)


async def test_the_logs(calls: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="turnout")
    script = per_host({"a": [Fault(error="overloaded"), Fault(error="invalid_key")]})
    response = await calls.chat(
        [deployment("a", api_key=KEY_A), deployment("b")],
        emulated(script),
        retry_policy=FAST,
        params={"metadata": {"user": "secret-user"}},
    )
    assert response.deployment == "b"
    records = [r for r in caplog.records if r.name.startswith("turnout")]
    debug = [r for r in records if r.levelno == logging.DEBUG and r.name == "turnout.router"]
    info = [r for r in records if r.levelno == logging.INFO and r.name == "turnout.router"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    # DEBUG: one record per attempt (and one per call).
    assert len([r for r in debug if r.getMessage().startswith("attempt ")]) == 3
    # INFO: each retry and fallback, with its reason.
    assert [r.getMessage().split(":")[0] for r in info] == ["retrying on a", "falling back from a"]
    # WARNING: a deployment cooling down after a wrong key.
    assert any("a set aside" in r.getMessage() and "authentication" in r.getMessage() for r in warnings)
    for record in records:
        assert hasattr(record, "call_id")
        assert hasattr(record, "deployment")
        assert hasattr(record, "kind")
        text = record.getMessage()
        assert KEY_A not in text
        assert "hello there world" not in text
        assert "secret-user" not in text
    assert {r.kind for r in debug if r.getMessage().startswith("attempt 1 ")} == {"unavailable"}


async def test_nothing_is_made_when_nobody_listens(calls: Any) -> None:
    """No observer, logging at WARNING: the flow yields no Notify for a plain success."""
    logging.getLogger("turnout").setLevel(logging.WARNING)
    try:
        observers = turnout._observe.Observers()
        assert not observers.wanted(turnout.AttemptEvent)
        assert not observers.wanted(turnout.CallEvent)
    finally:
        logging.getLogger("turnout").setLevel(logging.NOTSET)
