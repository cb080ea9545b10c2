"""MeshAPI's default retry policy: its SDK's, as RetryPolicy.decide applies it, and as the
router applies it by default. (How the router applies any policy is tested once, in
tests/core/test_router_retries.py.)"""

from __future__ import annotations

import random
from typing import Any

import pytest

import turnout
from turnout import GiveUp, ProviderError, Retry
from turnout.emulation import Fault, FaultScript, mock_transport
from turnout_meshapi.emulator import MeshAPIEmulator
from turnout_meshapi.provider import MeshAPI

from .helpers import KEY, MODEL

POLICY = MeshAPI.retry_policy


def wire(status: int, code: str | None = None, retry_after: str | None = None) -> ProviderError:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": code, "message": "x"}} if code else b""
    return turnout.normalize_error("meshapi", status=status, headers=headers, body=body)


def test_the_documented_parameters() -> None:
    assert POLICY.max_retries == 3
    assert POLICY.base == 0.5
    assert POLICY.cap == 30.0
    assert POLICY.retry_statuses == frozenset({429, 502, 503, 504})
    assert POLICY.retry_streams is False
    assert POLICY.jitter != "none"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, "rate_limit_exceeded"),
        (429, None),
        (502, None),
        (503, None),
        (504, None),
        (504, "gateway_timeout"),
    ],
)
def test_retries_429_502_503_504(status: int, code: str | None) -> None:
    assert isinstance(POLICY.decide(wire(status, code), 0, rng=random.Random(1)), Retry)


@pytest.mark.parametrize("code", ["upstream_error", "gateway_timeout", "internal_error", None])
def test_never_retries_a_500(code: str | None) -> None:
    error = wire(500, code)
    assert error.retryable  # the kind may succeed again: the SDK's policy still does not repeat it
    decision = POLICY.decide(error, 0)
    assert isinstance(decision, GiveUp)
    assert "500" in decision.reason


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "unauthorized"), (403, "forbidden"), (402, "spend_limit_exceeded"), (404, "model_not_found"),
     (404, "not_found"), (422, "validation_error"), (422, "unprocessable_entity"), (400, None)],
)  # fmt: skip
def test_never_retries_client_errors(status: int, code: str | None) -> None:
    assert isinstance(POLICY.decide(wire(status, code), 0), GiveUp)


def test_never_retries_a_stream() -> None:
    decision = POLICY.decide(wire(429, "rate_limit_exceeded"), 0, streaming=True)
    assert isinstance(decision, GiveUp)
    assert isinstance(POLICY.decide(wire(503), 0, streaming=True), GiveUp)


def test_three_retries_then_give_up() -> None:
    error = wire(503)
    rng = random.Random(3)
    assert [isinstance(POLICY.decide(error, n, rng=rng), Retry) for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_backoff_doubles_from_half_a_second_to_thirty_with_its_sdks_jitter() -> None:
    # The SDK waits min(0.5 s * 2**n, 30 s), then ±20 %.
    rng = random.Random(11)
    for retry in range(10):
        nominal = min(30.0, 0.5 * 2**retry)
        delays = [POLICY.backoff(retry, rng) for _ in range(200)]
        assert all(0.8 * nominal - 1e-9 <= d <= min(30.0, 1.2 * nominal) + 1e-9 for d in delays)
        if nominal < 30.0:
            assert len(set(delays)) > 1  # jittered, not a constant


def test_retry_after_is_honoured() -> None:
    decision = POLICY.decide(wire(429, "rate_limit_exceeded", retry_after="12"), 0, rng=random.Random(1))
    assert decision == Retry(12.0)
    body = {"error": {"code": "rate_limit_exceeded", "retry_after_seconds": 7}}
    from_body = turnout.normalize_error("meshapi", status=429, body=body)
    assert POLICY.decide(from_body, 0, rng=random.Random(1)) == Retry(7.0)


def test_retry_after_beyond_the_cap_is_still_waited() -> None:
    decision = POLICY.decide(wire(429, "rate_limit_exceeded", retry_after="45"), 0, rng=random.Random(1))
    assert decision == Retry(45.0)


def test_a_short_retry_after_does_not_shorten_the_backoff() -> None:
    decision = POLICY.decide(wire(503, None, retry_after="0"), 2, rng=random.Random(1))
    assert isinstance(decision, Retry)
    assert decision.delay >= 0.5 * 2.0


def test_mid_stream_frames_are_never_retried(provider: MeshAPI) -> None:
    frame = provider.stream_error({"error": {"code": "rate_limit_exceeded"}}, turnout.HTTPResponse(200))
    assert frame is not None
    assert frame.status == 429
    assert isinstance(POLICY.decide(frame, 0, streaming=True), GiveUp)


def test_an_internal_error_under_a_2xx_is_not_retried(provider: MeshAPI) -> None:
    # An envelope with no status of its own gets its code's documented 500.
    error = provider.normalize(status=None, body={"error": {"code": "internal_error"}})
    assert isinstance(POLICY.decide(error, 0), GiveUp)


def test_never_retries_a_malformed_completion() -> None:
    # A 200 that is not a completion: not one of the statuses the SDK repeats.
    error = turnout.error_for(turnout.ErrorKind.PARSE_ERROR, "the response has no choices", status=200)
    assert isinstance(POLICY.decide(error, 0), GiveUp)


async def chat(mode: str, deployment: turnout.Deployment, transport: Any) -> turnout.ProviderError | None:
    """One call with the router of `mode`: the error it raised, or None."""
    hi = [{"role": "user", "content": "hi"}]
    try:
        if mode == "sync":
            with turnout.Router([deployment], transport=transport) as router:
                router.chat(hi)
        else:
            async with turnout.AsyncRouter([deployment], transport=transport) as arouter:
                await arouter.chat(hi)
    except turnout.ProviderError as error:
        return error
    return None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_router_applies_meshapis_policy_by_default(mode: str) -> None:
    # turnout's generic policy would repeat a server_error; MeshAPI's never repeats a 500.
    script = FaultScript(Fault(error="internal_error"))
    transport = mock_transport({"mesh.test": MeshAPIEmulator()}, script)
    deployment = turnout.Deployment("mesh", "meshapi", MODEL, api_key=KEY, base_url="https://mesh.test")
    error = await chat(mode, deployment, transport)
    assert isinstance(error, turnout.InternalServerError)
    assert len(script.requests) == 1
    assert len(error.attempts) == 1
