"""MythicDot's error table: every status and documented cause, headers, and hostile bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout import ErrorKind, FieldError
from turnout_mythicdot.provider import MYTHICDOT_CODES, MythicDot

P = MythicDot()


def envelope(
    code: str | None, message: str = "something went wrong", *, type_: str = "x", param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def body(code: str | None, message: str = "something went wrong", **kwargs: Any) -> bytes:
    return json.dumps(envelope(code, message, **kwargs)).encode()


# Every cause MythicDot documents, with the status it arrives with and its kind.
DOCUMENTED = [
    (400, "invalid_json", ErrorKind.BAD_REQUEST, turnout.BadRequestError),
    (400, "missing_parameter", ErrorKind.BAD_REQUEST, turnout.BadRequestError),
    (400, "invalid_parameter", ErrorKind.BAD_REQUEST, turnout.BadRequestError),
    (400, "max_tokens_exceeded", ErrorKind.CONTEXT_LENGTH_EXCEEDED, turnout.ContextLengthError),
    (400, "context_length_exceeded", ErrorKind.CONTEXT_LENGTH_EXCEEDED, turnout.ContextLengthError),
    (401, "invalid_api_key", ErrorKind.AUTHENTICATION, turnout.AuthenticationError),
    (401, "missing_api_key", ErrorKind.AUTHENTICATION, turnout.AuthenticationError),
    (401, "revoked_api_key", ErrorKind.AUTHENTICATION, turnout.AuthenticationError),
    (401, "invalid_organization", ErrorKind.AUTHENTICATION, turnout.AuthenticationError),
    (403, "model_not_in_plan", ErrorKind.PERMISSION_DENIED, turnout.PermissionDeniedError),
    (403, "insufficient_scope", ErrorKind.PERMISSION_DENIED, turnout.PermissionDeniedError),
    (403, "unsupported_region", ErrorKind.PERMISSION_DENIED, turnout.PermissionDeniedError),
    (403, "account_suspended", ErrorKind.PERMISSION_DENIED, turnout.PermissionDeniedError),
    (404, "not_found", ErrorKind.NOT_FOUND, turnout.NotFoundError),
    (404, "model_not_found", ErrorKind.MODEL_NOT_FOUND, turnout.ModelNotFoundError),
    (429, "rate_limit_exceeded", ErrorKind.RATE_LIMITED, turnout.RateLimitError),
    (500, "server_error", ErrorKind.SERVER_ERROR, turnout.InternalServerError),
    (503, "overloaded", ErrorKind.UNAVAILABLE, turnout.ServiceUnavailableError),
    (503, "maintenance", ErrorKind.UNAVAILABLE, turnout.ServiceUnavailableError),
]
RETRYABLE = {ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.UNAVAILABLE}


def test_the_table_is_exactly_the_documented_codes() -> None:
    assert {code: (rule.status, rule.kind) for code, rule in MYTHICDOT_CODES.items()} == {
        code: (status, kind) for status, code, kind, _ in DOCUMENTED
    }


@pytest.mark.parametrize(("status", "code", "kind", "cls"), DOCUMENTED, ids=[d[1] for d in DOCUMENTED])
def test_documented_cause(status: int, code: str, kind: ErrorKind, cls: type[Exception]) -> None:
    error = turnout.normalize_error(
        "mythicdot", status=status, headers={"x-request-id": "req_abc"}, body=body(code, "it failed")
    )
    assert type(error) is cls
    assert error.kind is kind
    assert error.provider == "mythicdot"
    assert error.status == status
    assert error.code == code
    assert error.message == "it failed"
    assert error.request_id == "req_abc"
    assert error.retryable is (kind in RETRYABLE)
    assert error.retry_after is None
    assert error.deployment is None


@pytest.mark.parametrize(("status", "code", "kind", "cls"), DOCUMENTED, ids=[d[1] for d in DOCUMENTED])
def test_documented_cause_in_a_stream_frame(
    status: int, code: str, kind: ErrorKind, cls: type[Exception]
) -> None:
    # Mid-stream, the same envelope arrives in a 200 stream: the code alone decides,
    # and the error carries the status the table documents for it.
    error = P.normalize(status=None, headers={}, body=envelope(code))
    assert error.kind is kind
    assert error.status == status


STATUS_ONLY = [
    (400, ErrorKind.BAD_REQUEST),
    (401, ErrorKind.AUTHENTICATION),
    (403, ErrorKind.PERMISSION_DENIED),
    (404, ErrorKind.NOT_FOUND),
    (429, ErrorKind.RATE_LIMITED),
    (500, ErrorKind.SERVER_ERROR),
    (503, ErrorKind.UNAVAILABLE),
    # Undocumented statuses from whatever sits in front of the gateway.
    (402, ErrorKind.INSUFFICIENT_CREDITS),
    (408, ErrorKind.TIMEOUT),
    (409, ErrorKind.BAD_REQUEST),
    (413, ErrorKind.BAD_REQUEST),
    (422, ErrorKind.VALIDATION),
    (502, ErrorKind.UPSTREAM_ERROR),
    (504, ErrorKind.TIMEOUT),
    (507, ErrorKind.SERVER_ERROR),
    (301, ErrorKind.UPSTREAM_ERROR),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_ONLY)
def test_unknown_code_falls_back_by_status(status: int, kind: ErrorKind) -> None:
    error = P.normalize(status=status, body=body("brand_new_code_2031"))
    assert error.kind is kind
    assert error.code == "brand_new_code_2031"


def test_a_stream_frame_with_no_known_code_is_upstream_error() -> None:
    assert P.normalize(status=None, body=envelope("mystery")).kind is ErrorKind.UPSTREAM_ERROR


def test_codes_are_compared_case_insensitively_and_kept_verbatim() -> None:
    error = P.normalize(status=401, body=body("Invalid_API_Key"))
    assert error.kind is ErrorKind.AUTHENTICATION
    assert error.code == "Invalid_API_Key"


def test_the_code_wins_over_a_contradicting_status() -> None:
    # "overloaded" documented as 503; a proxy rewrote the status to 500.
    assert P.normalize(status=500, body=body("overloaded")).kind is ErrorKind.UNAVAILABLE
    assert P.normalize(status=500, body=body("context_length_exceeded")).kind is (
        ErrorKind.CONTEXT_LENGTH_EXCEEDED
    )


def test_type_stands_in_for_a_missing_code() -> None:
    error = P.normalize(status=429, body=body(None, "slow down", type_="tokens"))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.code == "tokens"


@pytest.mark.parametrize("limit", ["requests", "tokens"])
def test_rpm_and_tpm_limits_keep_their_type(limit: str) -> None:
    error = P.normalize(
        status=429,
        headers={"Retry-After": "7"},
        body=body("rate_limit_exceeded", f"Rate limit reached on {limit} per min", type_=limit),
    )
    assert isinstance(error, turnout.RateLimitError)
    assert error.extra["type"] == limit
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    "message",
    [
        "Request exceeded max token limit: 'max_tokens' plus the prompt must not exceed 32768 tokens.",
        "This model's maximum context length is 32768 tokens, however you requested 40000 tokens.",
        "Too many tokens in the request.",
    ],
)
def test_token_limit_wording_without_a_code_is_context_length(message: str) -> None:
    error = P.normalize(status=400, body=body(None, message, type_="invalid_request_error"))
    assert error.kind is ErrorKind.CONTEXT_LENGTH_EXCEEDED
    assert isinstance(error, turnout.BadRequestError)


def test_token_limit_wording_on_another_status_does_not_change_the_kind() -> None:
    error = P.normalize(status=500, body=body(None, "exceeded max token limit", type_="server_error"))
    assert error.kind is ErrorKind.SERVER_ERROR


def test_other_400_wording_stays_bad_request() -> None:
    error = P.normalize(status=400, body=body(None, "We could not parse the JSON body.", type_="invalid"))
    assert error.kind is ErrorKind.BAD_REQUEST


# -- parameters ----------------------------------------------------------------


def test_param_becomes_a_field_detail() -> None:
    error = P.normalize(
        status=400, body=body("invalid_parameter", "temperature must be <= 2", param="temperature")
    )
    assert error.details == (FieldError("temperature", "invalid_parameter", "temperature must be <= 2"),)
    assert error.extra["param"] == "temperature"


def test_max_tokens_param_is_kept_on_a_context_error() -> None:
    error = P.normalize(status=400, body=body("max_tokens_exceeded", "too long", param="max_tokens"))
    assert isinstance(error, turnout.ContextLengthError)
    assert [d.field for d in error.details] == ["max_tokens"]


def test_no_param_means_no_details() -> None:
    assert P.normalize(status=401, body=body("invalid_api_key")).details == ()


# -- Retry-After (its forms on any status: the conformance kit, test_conformance.py) --


def test_openai_style_rate_limit_reset_headers_are_not_mistaken_for_retry_after() -> None:
    # MythicDot sends x-ratelimit-reset-requests / -tokens as durations ("1s",
    # "6m0s"); only Retry-After is a wait.
    headers = {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s", "retry-after": "2"}
    assert P.normalize(status=429, headers=headers, body=body("rate_limit_exceeded")).retry_after == 2.0


def test_request_id_header_name_is_case_insensitive() -> None:
    assert P.normalize(status=500, headers={"X-Request-ID": "req_9"}, body=b"").request_id == "req_9"


# -- bodies (hostile ones, and envelopes under a 2xx: the conformance kit) ------------


def test_a_string_error_is_its_message() -> None:
    error = P.normalize(status=403, body=b'{"error": "Your account has been suspended."}')
    assert error.kind is ErrorKind.PERMISSION_DENIED
    assert error.message == "Your account has been suspended."


def test_body_as_text_and_as_parsed_json() -> None:
    as_text = P.normalize(status=403, body=body("unsupported_region").decode())
    as_json = P.normalize(status=403, body=envelope("unsupported_region"))
    assert as_text.code == as_json.code == "unsupported_region"
    assert as_text.kind is as_json.kind is ErrorKind.PERMISSION_DENIED


def test_long_code_and_message_are_cut() -> None:
    error = P.normalize(status=400, body=body("c" * 5000, "m" * 5000))
    assert len(error.message) <= 500
    assert error.code is not None
    assert len(error.code) <= 200
