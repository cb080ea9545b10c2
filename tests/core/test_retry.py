"""RetryPolicy: a pure decision from the error and the number of retries made."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout import ErrorKind, GiveUp, Retry, RetryPolicy
from turnout._errors import error_for


def err(kind: str, status: int | None = None, **kw):
    return error_for(ErrorKind(kind), "m", status=status, **kw)


def test_backoff_doubles_up_to_the_cap_without_jitter():
    policy = RetryPolicy(max_retries=10, base=0.5, cap=4.0, jitter="none")
    assert [policy.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@given(st.integers(0, 20), st.integers(0, 2**32))
def test_full_jitter_stays_within_zero_and_the_delay(retry, seed):
    policy = RetryPolicy(base=0.5, cap=8.0, jitter="full")
    delay = policy.backoff(retry, random.Random(seed))
    assert 0.0 <= delay <= min(8.0, 0.5 * 2**retry)


@given(st.integers(0, 20), st.integers(0, 2**32))
def test_symmetric_jitter_stays_within_its_ratio_and_the_cap(retry, seed):
    policy = RetryPolicy(base=1.0, cap=32.0, jitter="symmetric", jitter_ratio=0.25)
    delay = policy.backoff(retry, random.Random(seed))
    nominal = min(32.0, 2.0**retry)
    assert nominal * 0.75 <= delay <= min(32.0, nominal * 1.25)


def test_full_jitter_actually_spreads():
    policy = RetryPolicy(base=1.0, cap=1.0, jitter="full")
    rng = random.Random(1)
    delays = {round(policy.backoff(0, rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_never_retries_what_is_not_retryable():
    policy = RetryPolicy(max_retries=5)
    assert isinstance(policy.decide(err("bad_request", 400), 0), GiveUp)
    assert isinstance(policy.decide(err("server_error", 500, retryable=False), 0), GiveUp)


def test_gives_up_after_max_retries():
    policy = RetryPolicy(max_retries=2, jitter="none")
    error = err("unavailable", 503)
    assert isinstance(policy.decide(error, 0), Retry)
    assert isinstance(policy.decide(error, 1), Retry)
    assert policy.decide(error, 2) == GiveUp("2 retries used")


def test_retry_statuses_restrict_errors_that_have_a_status():
    policy = RetryPolicy(max_retries=3, retry_statuses={429, 502, 503, 504})
    assert isinstance(policy.decide(err("server_error", 500), 0), GiveUp)
    assert isinstance(policy.decide(err("upstream_error", 502), 0), Retry)
    # A transport failure has no status: the kinds decide.
    assert isinstance(policy.decide(err("connection"), 0), Retry)


def test_retry_on_restricts_kinds():
    policy = RetryPolicy(retry_on={"rate_limited", "unavailable"})
    assert isinstance(policy.decide(err("rate_limited", 429), 0), Retry)
    assert isinstance(policy.decide(err("timeout", 504), 0), GiveUp)


def test_streams_are_not_repeated_when_the_policy_says_so():
    policy = RetryPolicy(retry_streams=False)
    assert isinstance(policy.decide(err("unavailable", 503), 0, streaming=True), GiveUp)
    assert isinstance(policy.decide(err("unavailable", 503), 0, streaming=False), Retry)


@pytest.mark.parametrize("retry_after", [0.0, 3.0, 45.0])
def test_a_retry_never_waits_less_than_retry_after(retry_after):
    policy = RetryPolicy(max_retries=3, base=1.0, cap=2.0, jitter="full")
    decision = policy.decide(err("rate_limited", 429, retry_after=retry_after), 0, rng=random.Random(3))
    assert isinstance(decision, Retry)
    assert decision.delay >= retry_after
    assert decision.delay <= max(retry_after, 1.0)
