"""Mume's default retry policy (the OpenAI SDK's): its decisions, one by one."""

from __future__ import annotations

import random

import pytest

import turnout
from turnout import ErrorKind, GiveUp, Retry
from turnout_mume.provider import MUME_RETRY_POLICY, Mume

from .helpers import envelope, normalize

POLICY = MUME_RETRY_POLICY
K = ErrorKind


class Extreme(random.Random):
    """A random source that always draws the top (or the bottom) of the range."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_it_is_the_documented_policy() -> None:
    assert Mume.retry_policy is POLICY
    assert POLICY.max_retries == 2
    assert POLICY.base == 0.5
    assert POLICY.cap == 8.0
    assert POLICY.multiplier == 2.0
    assert POLICY.jitter == "full"
    assert POLICY.retry_streams is True
    assert POLICY.retry_statuses is None


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (408, None, True),
        (429, None, True),
        (429, "rate_limit_exceeded", True),
        (500, None, True),
        (501, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (529, None, True),
        # The SDK repeats a 409; turnout's taxonomy calls it bad_request, never repeated.
        (409, None, False),
        (400, None, False),
        (401, "invalid_api_key", False),
        (402, None, False),
        (403, None, False),
        (404, "model_not_found", False),
        (404, None, False),
        (413, None, False),
        (422, None, False),
        (400, "context_length_exceeded", False),
        (400, "content_policy_violation", False),
        # OpenAI's empty-account error rides on a 429: waiting cannot fix it.
        (429, "insufficient_quota", False),
        # A 5xx whose code says the request itself is wrong.
        (500, "context_length_exceeded", False),
    ],
)
def test_decisions_by_status_and_code(status: int, code: str | None, retried: bool) -> None:
    error = normalize(status, envelope("x", code=code))
    decision = POLICY.decide(error, 0, rng=random.Random(1))
    assert isinstance(decision, Retry) is retried, decision
    if not retried:
        assert isinstance(decision, GiveUp)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (turnout.APITimeoutError("ReadTimeout"), True),
        (turnout.APIConnectionError("ConnectError: refused"), True),
        (turnout.UpstreamError("frame without a code"), True),
        (turnout.StreamInterruptedError("peer closed the connection"), False),
        # A 200 that is not a completion: the SDK does not repeat it either.
        (turnout.ResponseParseError("the response has no choices"), False),
    ],
)
def test_decisions_for_transport_and_stream_failures(error: turnout.ProviderError, retried: bool) -> None:
    assert isinstance(POLICY.decide(error, 0), Retry) is retried


def test_two_retries_then_give_up() -> None:
    error = normalize(503, envelope())
    assert isinstance(POLICY.decide(error, 0), Retry)
    assert isinstance(POLICY.decide(error, 1), Retry)
    third = POLICY.decide(error, 2)
    assert isinstance(third, GiveUp)
    assert "2 retries" in third.reason


def test_streams_are_retried_too() -> None:
    assert isinstance(POLICY.decide(normalize(429, envelope()), 0, streaming=True), Retry)


def test_the_body_flag_wins() -> None:
    error = normalize(503, envelope())
    error.retryable = False
    assert isinstance(POLICY.decide(error, 0), GiveUp)


@pytest.mark.parametrize(("retry", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)])
def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling(retry: int, ceiling: float) -> None:
    assert POLICY.backoff(retry, Extreme(top=True)) == ceiling
    assert POLICY.backoff(retry, Extreme(top=False)) == 0.0
    rng = random.Random(retry)
    assert all(0.0 <= POLICY.backoff(retry, rng) <= ceiling for _ in range(200))


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    error = normalize(429, envelope(), {"Retry-After": "7"})
    assert POLICY.decide(error, 0, rng=Extreme(top=True)) == Retry(7.0)
    error = normalize(503, envelope(), {"retry-after-ms": "250"})
    assert POLICY.decide(error, 1, rng=Extreme(top=True)) == Retry(1.0)  # the backoff is longer
    assert POLICY.decide(error, 1, rng=Extreme(top=False)) == Retry(0.25)  # never less than asked


def test_retry_after_never_makes_a_non_retryable_error_retryable() -> None:
    error = normalize(402, envelope(), {"Retry-After": "1"})
    assert isinstance(POLICY.decide(error, 0), GiveUp)
