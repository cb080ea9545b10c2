"""MythicDot's default retry policy: 2 retries on 429, 500, 503, timeouts and connection errors;
base 0.5 s, cap 8 s, full jitter; never sooner than Retry-After."""

from __future__ import annotations

import json
import random

import pytest

from turnout import ErrorKind, GiveUp, ProviderError, Retry
from turnout._errors import error_for
from turnout_mythicdot.provider import MYTHICDOT_RETRY_POLICY, MythicDot

from .helpers import NoJitter

P = MythicDot()
POLICY = P.retry_policy


class HighestJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def wire(status: int, code: str | None = None, retry_after: str | None = None) -> ProviderError:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    payload = {"error": {"message": "m", "type": "t", "param": None, "code": code}}
    return P.normalize(status=status, headers=headers, body=json.dumps(payload).encode())


def transport(kind: ErrorKind) -> ProviderError:
    """What the drivers throw for a client-side failure: no status."""
    return error_for(kind, "ReadTimeout" if kind is ErrorKind.TIMEOUT else "ConnectError")


def test_the_provider_ships_the_documented_policy() -> None:
    assert POLICY is MYTHICDOT_RETRY_POLICY
    assert (POLICY.max_retries, POLICY.base, POLICY.cap, POLICY.jitter) == (2, 0.5, 8.0, "full")
    assert POLICY.retry_streams is True


RETRIED = [
    pytest.param(wire(429, "rate_limit_exceeded"), id="429"),
    pytest.param(wire(429), id="429-no-body"),
    pytest.param(wire(500, "server_error"), id="500"),
    pytest.param(wire(503, "overloaded"), id="503-overloaded"),
    pytest.param(wire(503, "maintenance"), id="503-maintenance"),
    pytest.param(transport(ErrorKind.TIMEOUT), id="client-timeout"),
    pytest.param(transport(ErrorKind.CONNECTION), id="connection"),
    # An in-band stream frame carries no status: its code decides.
    pytest.param(P.normalize(status=None, body={"error": {"code": "overloaded"}}), id="frame-overloaded"),
]


@pytest.mark.parametrize("error", RETRIED)
def test_retried(error: ProviderError) -> None:
    for retries in (0, 1):
        decision = POLICY.decide(error, retries, rng=NoJitter())
        assert isinstance(decision, Retry), decision
    assert isinstance(POLICY.decide(error, 0, streaming=True, rng=NoJitter()), Retry)


@pytest.mark.parametrize("error", RETRIED)
def test_two_retries_then_give_up(error: ProviderError) -> None:
    decision = POLICY.decide(error, 2)
    assert isinstance(decision, GiveUp)
    assert "2 retries" in decision.reason


NOT_RETRIED = [
    pytest.param(wire(400, "invalid_parameter"), id="400"),
    pytest.param(wire(400, "context_length_exceeded"), id="400-context"),
    pytest.param(wire(401, "invalid_api_key"), id="401"),
    pytest.param(wire(403, "account_suspended"), id="403"),
    pytest.param(wire(404, "model_not_found"), id="404-model"),
    pytest.param(wire(404, "not_found"), id="404"),
    # Not in MythicDot's list, though retryable kinds: the router falls back instead.
    pytest.param(wire(502), id="502"),
    pytest.param(wire(504), id="504"),
    pytest.param(wire(408), id="408"),
    pytest.param(error_for(ErrorKind.PARSE_ERROR, "not JSON", status=200), id="parse-error"),
    pytest.param(error_for(ErrorKind.STREAM_INTERRUPTED, "dropped"), id="stream-interrupted"),
    # A 503 the body marks as final.
    pytest.param(error_for(ErrorKind.UNAVAILABLE, "gone", status=503, retryable=False), id="503-final"),
]


@pytest.mark.parametrize("error", NOT_RETRIED)
def test_not_retried(error: ProviderError) -> None:
    assert isinstance(POLICY.decide(error, 0), GiveUp)


def test_backoff_is_full_jitter_doubling_from_half_a_second_capped_at_eight() -> None:
    error = wire(500, "server_error")
    highest = [POLICY.backoff(n, HighestJitter()) for n in range(8)]
    assert highest == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert [POLICY.backoff(n, NoJitter()) for n in range(8)] == [0.0] * 8
    decision = POLICY.decide(error, 1, rng=HighestJitter())
    assert decision == Retry(1.0)


def test_jittered_delays_stay_within_bounds() -> None:
    rng = random.Random(1234)
    error = wire(503, "overloaded")
    delays = []
    for _ in range(200):
        decision = POLICY.decide(error, 1, rng=rng)
        assert isinstance(decision, Retry)
        delays.append(decision.delay)
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a constant


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limit_exceeded"), (503, "maintenance")])
def test_retry_after_is_honoured_even_beyond_the_cap(status: int, code: str) -> None:
    error = wire(status, code, retry_after="20")
    assert error.retry_after == 20.0
    assert POLICY.decide(error, 0, rng=HighestJitter()) == Retry(20.0)


def test_backoff_wins_when_longer_than_retry_after() -> None:
    error = wire(429, "rate_limit_exceeded", retry_after="0")
    assert POLICY.decide(error, 1, rng=HighestJitter()) == Retry(1.0)
