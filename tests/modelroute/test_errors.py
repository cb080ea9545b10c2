"""ModelRoute's 12 codes, as HTTP errors and inside FAILED executions."""

from __future__ import annotations

import json

import pytest

import turnout
from turnout import ErrorKind
from turnout_modelroute.emulator import KIND_CODES, ModelRouteEmulator, Outcome
from turnout_modelroute.provider import MODELROUTE_CODES, ModelRoute

from .conftest import Harness

# The documented table, retyped here on purpose: the code's table must match it.
DOCUMENTED = {
    "INPUT_VALIDATION_ERROR": (400, ErrorKind.VALIDATION, False, turnout.ValidationError),
    "CONTENT_MODERATION_REJECTED": (400, ErrorKind.CONTENT_FILTERED, False, turnout.ContentFilterError),
    "FILE_NOT_FOUND": (400, ErrorKind.BAD_REQUEST, False, turnout.BadRequestError),
    "FILE_FORMAT_UNSUPPORTED": (400, ErrorKind.BAD_REQUEST, False, turnout.BadRequestError),
    "INSUFFICIENT_BALANCE": (402, ErrorKind.INSUFFICIENT_CREDITS, False, turnout.InsufficientCreditsError),
    "RATE_LIMITED": (429, ErrorKind.RATE_LIMITED, True, turnout.RateLimitError),
    "MODEL_OVERLOADED": (503, ErrorKind.UNAVAILABLE, True, turnout.ServiceUnavailableError),
    "MODEL_UNAVAILABLE": (503, ErrorKind.UNAVAILABLE, True, turnout.ServiceUnavailableError),
    "GENERATION_TIMEOUT": (504, ErrorKind.TIMEOUT, True, turnout.APITimeoutError),
    "GENERATION_FAILED": (500, ErrorKind.UPSTREAM_ERROR, True, turnout.UpstreamError),
    "SERVICE_UNAVAILABLE": (503, ErrorKind.UNAVAILABLE, True, turnout.ServiceUnavailableError),
    "INTERNAL_ERROR": (500, ErrorKind.SERVER_ERROR, False, turnout.InternalServerError),
}
CODES = sorted(DOCUMENTED)


def envelope(code: str, **fields: object) -> dict[str, object]:
    return {"error": {"code": code, "message": f"about {code}", "request_id": "req_body", **fields}}


def test_the_table_is_exactly_the_documented_one() -> None:
    assert set(MODELROUTE_CODES) == set(DOCUMENTED)
    for code, (status, kind, retryable, _) in DOCUMENTED.items():
        rule = MODELROUTE_CODES[code]
        assert (rule.status, rule.kind, rule.retryable) == (status, kind, retryable), code
    assert ModelRoute.error_table.case_sensitive is True


@pytest.mark.parametrize("code", CODES)
def test_each_code_as_an_http_error(code: str) -> None:
    status, kind, retryable, cls = DOCUMENTED[code]
    error = turnout.normalize_error("modelroute", status=status, body=json.dumps(envelope(code)).encode())
    assert type(error) is cls
    assert (error.kind, error.status, error.code, error.retryable) == (kind, status, code, retryable)
    assert error.provider == "modelroute"
    assert error.message == f"about {code}"
    assert error.request_id == "req_body"


@pytest.mark.parametrize("code", CODES)
def test_each_code_inside_a_failed_execution(code: str) -> None:
    status, kind, retryable, cls = DOCUMENTED[code]
    error = ModelRoute().execution_error(envelope(code)["error"], "exe_7")
    assert type(error) is cls
    assert (error.kind, error.status, error.code, error.retryable) == (kind, status, code, retryable)
    assert error.request_id == "req_body"
    assert error.extra["execution_id"] == "exe_7"


@pytest.mark.parametrize("code", CODES)
async def test_each_code_in_a_failed_execution_through_the_router(harness: Harness, code: str) -> None:
    status, kind, retryable, cls = DOCUMENTED[code]
    emulator = ModelRouteEmulator(default=Outcome.failed(code))
    with pytest.raises(cls) as caught:
        await harness.chat(emulator)
    error = caught.value
    assert (error.kind, error.status, error.code, error.retryable) == (kind, status, code, retryable)
    assert error.deployment == "mr"
    # Retryable failures are retried (3 retries), each with a new execution; the others are not.
    expected = 4 if retryable else 1
    assert len(error.attempts) == expected
    assert emulator.execution_count == expected
    assert len(set(emulator.submissions)) == expected


# -- the body's retryable wins ---------------------------------------------------------


def test_body_retryable_false_overrides_a_retryable_code() -> None:
    body = envelope("MODEL_OVERLOADED", retryable=False)
    error = turnout.normalize_error("modelroute", status=503, body=body)
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.retryable is False


def test_body_retryable_true_overrides_internal_error() -> None:
    error = turnout.normalize_error("modelroute", status=500, body=envelope("INTERNAL_ERROR", retryable=True))
    assert error.kind is ErrorKind.SERVER_ERROR
    assert error.retryable is True


def test_a_non_boolean_retryable_is_ignored() -> None:
    error = turnout.normalize_error(
        "modelroute", status=500, body=envelope("INTERNAL_ERROR", retryable="yes")
    )
    assert error.retryable is False


async def test_retryable_false_in_a_failed_execution_stops_the_retries(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome.failed("GENERATION_FAILED", retryable=False))
    with pytest.raises(turnout.UpstreamError) as caught:
        await harness.chat(emulator)
    assert caught.value.retryable is False
    assert len(caught.value.attempts) == 1


async def test_retryable_true_in_a_failed_execution_retries_internal_error(harness: Harness) -> None:
    emulator = ModelRouteEmulator(script=[Outcome.failed("INTERNAL_ERROR", retryable=True)])
    answer = await harness.chat(emulator)
    assert answer.content == "echo: hi"
    assert [a.error.code if a.error else None for a in answer.attempts] == ["INTERNAL_ERROR", None]


async def test_retryable_false_on_an_http_error_stops_the_retries(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome.rejected("SERVICE_UNAVAILABLE", retryable=False))
    with pytest.raises(turnout.ServiceUnavailableError) as caught:
        await harness.chat(emulator)
    assert len(caught.value.attempts) == 1


# -- the rest of the envelope ------------------------------------------------------------


def test_details_become_field_errors() -> None:
    body = envelope(
        "INPUT_VALIDATION_ERROR",
        details=[
            {"field": "input.temperature", "code": "out_of_range", "message": "must be <= 2"},
            {"field": "model", "message": "unknown"},
            "not an object",
        ],
    )
    error = turnout.normalize_error("modelroute", status=400, body=body)
    assert error.details == (
        turnout.FieldError("input.temperature", "out_of_range", "must be <= 2"),
        turnout.FieldError("model", None, "unknown"),
    )


def test_request_id_falls_back_to_the_header() -> None:
    body = {"error": {"code": "INTERNAL_ERROR", "message": "x"}}
    error = turnout.normalize_error("modelroute", status=500, headers={"X-Request-Id": "req_h"}, body=body)
    assert error.request_id == "req_h"


def test_codes_are_case_sensitive() -> None:
    error = turnout.normalize_error("modelroute", status=400, body=envelope("rate_limited"))
    assert error.kind is ErrorKind.BAD_REQUEST
    assert error.code == "rate_limited"


def test_rate_limit_headers_give_retry_after() -> None:
    error = turnout.normalize_error("modelroute", status=429, headers={"Retry-After": "9"}, body=b"")
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 9.0
    error = turnout.normalize_error("modelroute", status=429, headers={"X-RateLimit-Reset": "30"}, body=b"")
    assert error.retry_after == 30.0


def test_failed_execution_envelope_may_be_nested() -> None:
    error = ModelRoute().execution_error({"error": {"code": "RATE_LIMITED", "message": "x"}}, "exe_1")
    assert (error.kind, error.status) == (ErrorKind.RATE_LIMITED, 429)


# -- the emulator renders kinds too -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KIND_CODES))
def test_render_error_accepts_kinds(kind: str) -> None:
    rendered = ModelRouteEmulator().render_error(kind, retry_after=2)
    error = turnout.normalize_error(
        "modelroute", status=rendered.status, headers=dict(rendered.headers), body=rendered.body
    )
    assert error.kind == kind
    assert error.code == KIND_CODES[kind]
    assert error.retry_after is not None
    assert error.retry_after >= 2


@pytest.mark.parametrize(
    ("kind", "status"), [("authentication", 401), ("permission_denied", 403), ("not_found", 404)]
)
def test_render_error_status_only_kinds(kind: str, status: int) -> None:
    rendered = ModelRouteEmulator().render_error(kind)
    assert rendered.status == status
    assert turnout.normalize_error("modelroute", status=status, body=rendered.body).kind == kind


def test_render_error_refuses_what_modelroute_cannot_say() -> None:
    with pytest.raises(ValueError, match="no code for 'context_length_exceeded'"):
        ModelRouteEmulator().render_error("context_length_exceeded")


def test_error_names_are_the_twelve_codes() -> None:
    assert sorted(ModelRouteEmulator().error_names()) == CODES


def test_rate_limited_render_carries_both_headers() -> None:
    rendered = ModelRouteEmulator(clock=lambda: 1_710_924_600.0).render_error("RATE_LIMITED", retry_after=5)
    assert rendered.header("retry-after") == "5"
    assert rendered.header("x-ratelimit-reset") == "1710924605"
    assert rendered.header("x-ratelimit-remaining") == "0"
