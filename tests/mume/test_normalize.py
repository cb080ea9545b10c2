"""Mume's errors, normalized: every status, every code, wording, stream frames and
hostile bodies. Sans-IO: nothing here touches a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turnout
from turnout import KIND_RULES, ErrorKind, FieldError, HTTPResponse
from turnout_mume.provider import MUME_CODES

from .helpers import MUME, envelope, normalize

K = ErrorKind
# -- statuses ----------------------------------------------------------------

# Mume's documented statuses (and 403/404 as every gateway sends them).
DOCUMENTED = [
    (400, K.BAD_REQUEST, turnout.BadRequestError),
    (401, K.AUTHENTICATION, turnout.AuthenticationError),
    (402, K.INSUFFICIENT_CREDITS, turnout.InsufficientCreditsError),
    (403, K.PERMISSION_DENIED, turnout.PermissionDeniedError),
    (404, K.NOT_FOUND, turnout.NotFoundError),
    (429, K.RATE_LIMITED, turnout.RateLimitError),
    (500, K.SERVER_ERROR, turnout.InternalServerError),
    (503, K.UNAVAILABLE, turnout.ServiceUnavailableError),
]
# What a proxy in front of Mume, or an undocumented answer, may add.
UNDOCUMENTED = [
    (408, K.TIMEOUT, turnout.APITimeoutError),
    (409, K.BAD_REQUEST, turnout.BadRequestError),
    (413, K.BAD_REQUEST, turnout.BadRequestError),
    (418, K.BAD_REQUEST, turnout.BadRequestError),
    (422, K.VALIDATION, turnout.ValidationError),
    (502, K.UPSTREAM_ERROR, turnout.UpstreamError),
    (504, K.TIMEOUT, turnout.APITimeoutError),
    (529, K.UNAVAILABLE, turnout.ServiceUnavailableError),
    (599, K.SERVER_ERROR, turnout.InternalServerError),
    (301, K.UPSTREAM_ERROR, turnout.UpstreamError),
]


@pytest.mark.parametrize(("status", "kind", "cls"), DOCUMENTED + UNDOCUMENTED)
def test_status_decides_when_the_code_is_not_one_of_mume(status: int, kind: ErrorKind, cls: type) -> None:
    err = normalize(status, envelope("something went wrong", type_="api_error"))
    assert type(err) is cls
    assert err.kind is kind
    assert err.status == status
    assert err.provider == "mume"
    assert err.message == "something went wrong"
    assert err.code == "api_error"  # no code: the envelope's type is kept as the code
    assert err.retryable is KIND_RULES[kind].retryable


def test_503_is_provider_temporarily_unavailable_and_retryable() -> None:
    err = normalize(503, envelope("Provider temporarily unavailable", type_="service_unavailable"))
    assert isinstance(err, turnout.ServiceUnavailableError)
    assert err.retryable is True
    assert err.fallback is turnout.Fallback.ALWAYS


def test_redirects_are_upstream_errors_naming_the_location() -> None:
    err = normalize(302, b"", {"Location": "https://elsewhere.example/login"})
    assert err.kind is K.UPSTREAM_ERROR
    assert "https://elsewhere.example/login" in err.message


# -- codes -------------------------------------------------------------------

# Written out here rather than read from the plugin, so a wrong row fails.
EXPECTED_CODES = {
    "invalid_api_key": (401, K.AUTHENTICATION),
    "insufficient_quota": (429, K.INSUFFICIENT_CREDITS),
    "model_not_found": (404, K.MODEL_NOT_FOUND),
    "rate_limit_exceeded": (429, K.RATE_LIMITED),
    "context_length_exceeded": (400, K.CONTEXT_LENGTH_EXCEEDED),
    "content_filter": (400, K.CONTENT_FILTERED),
    "content_policy_violation": (400, K.CONTENT_FILTERED),
}


def test_the_code_table_is_exactly_the_documented_one() -> None:
    assert {code: (rule.status, rule.kind) for code, rule in MUME_CODES.items()} == EXPECTED_CODES
    assert MUME.error_table.codes == MUME_CODES


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
def test_every_code_at_its_status(code: str) -> None:
    status, kind = EXPECTED_CODES[code]
    err = normalize(status, envelope("msg", type_="invalid_request_error", code=code))
    assert err.kind is kind
    assert isinstance(err, KIND_RULES[kind].exception)
    assert err.code == code
    assert err.status == status
    assert err.extra["type"] == "invalid_request_error"


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
@pytest.mark.parametrize("status", [None, 400, 500])
def test_the_code_wins_over_the_status(code: str, status: int | None) -> None:
    documented_status, kind = EXPECTED_CODES[code]
    err = normalize(status, envelope("msg", code=code))
    assert err.kind is kind
    # An in-band error (a 200 carrying an envelope) takes its code's documented status.
    assert err.status == (documented_status if status is None else status)


def test_codes_are_matched_case_insensitively() -> None:
    assert normalize(400, envelope(code="Context_Length_Exceeded")).kind is K.CONTEXT_LENGTH_EXCEEDED


def test_insufficient_quota_is_credits_not_a_rate_limit() -> None:
    err = normalize(
        429,
        envelope("You exceeded your current quota", type_="insufficient_quota", code="insufficient_quota"),
        {"retry-after": "20"},
    )
    assert isinstance(err, turnout.InsufficientCreditsError)
    assert err.retryable is False
    assert err.retry_after == 20.0


def test_param_becomes_a_field_error_and_type_param_stay_in_extra() -> None:
    message = "This model's maximum context length is 128000 tokens."
    err = normalize(
        400,
        envelope(message, type_="invalid_request_error", code="context_length_exceeded", param="messages"),
    )
    assert isinstance(err, turnout.ContextLengthError)
    assert err.details == (FieldError("messages", "context_length_exceeded", message),)
    assert dict(err.extra) == {"type": "invalid_request_error", "param": "messages"}


def test_no_param_no_details() -> None:
    err = normalize(400, envelope("bad", type_="invalid_request_error"))
    assert err.details == ()
    assert dict(err.extra) == {"type": "invalid_request_error"}


def test_a_numeric_code_is_the_real_status() -> None:
    err = normalize(500, envelope("upstream said so", code=503))
    assert err.kind is K.UNAVAILABLE
    assert err.status == 500  # the response's own status is kept
    assert err.code == "503"
    assert normalize(None, envelope("x", code="502")).kind is K.UPSTREAM_ERROR
    assert normalize(500, envelope("x", code="200")).kind is K.SERVER_ERROR  # not an error status


# -- wording -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (404, "The model `openai/gpt-0` does not exist", K.MODEL_NOT_FOUND),
        (404, "No such route", K.NOT_FOUND),
        (403, "Insufficient credits on this account", K.INSUFFICIENT_CREDITS),
        (403, "Your key may not use this model", K.PERMISSION_DENIED),
        (
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            K.INSUFFICIENT_CREDITS,
        ),
        (429, "Rate limit reached for requests", K.RATE_LIMITED),
        (400, "This model's maximum context length is 8192 tokens", K.CONTEXT_LENGTH_EXCEEDED),
        (413, "prompt is too long: 210000 tokens > 200000 maximum", K.CONTEXT_LENGTH_EXCEEDED),
        (400, "The response was filtered due to content management policy", K.CONTENT_FILTERED),
        (400, "Invalid request parameters or malformed JSON", K.BAD_REQUEST),
        # Wording rules are scoped to their statuses: a 500 naming a model is a 500.
        (500, "model crashed while loading", K.SERVER_ERROR),
        (503, "context window service down", K.UNAVAILABLE),
    ],
)
def test_wording_decides_when_there_is_no_code(status: int, message: str, kind: ErrorKind) -> None:
    assert normalize(status, envelope(message, type_="invalid_request_error")).kind is kind


# -- hints: retry-after and request ids ---------------------------------------


def test_request_id_from_the_header_or_the_body_reqid() -> None:
    assert normalize(500, envelope(), {"X-Request-Id": "hdr-1"}).request_id == "hdr-1"
    assert normalize(500, envelope(reqId="body-2"), {"x-request-id": "hdr-1"}).request_id == "body-2"
    assert normalize(500, envelope(reqId=["not", "an", "id"]), {"x-request-id": "h"}).request_id == "h"


# -- stream frames -----------------------------------------------------------

HEAD = HTTPResponse(200, {"content-type": "text/event-stream", "x-request-id": "stream-header-id"})


def frame_error(payload: dict[str, Any]) -> Any:
    return MUME.stream_error(payload, HEAD)


def test_frame_with_a_code_has_the_tables_status_and_its_reqid() -> None:
    err = frame_error(
        {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}, "reqId": "r-1"}
    )
    assert isinstance(err, turnout.RateLimitError)
    assert err.request_id == "r-1"
    assert err.status == 429
    assert err.message == "Rate limit reached"


def test_frame_without_a_code_is_upstream_error_without_a_status() -> None:
    err = frame_error({"error": {"message": "provider disconnected"}, "reqId": "r-2"})
    assert type(err) is turnout.UpstreamError
    assert err.status is None
    assert err.request_id == "r-2"
    assert err.retryable is True


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        (503, K.UNAVAILABLE, 503),
        ("500", K.SERVER_ERROR, 500),
        (402, K.INSUFFICIENT_CREDITS, 402),
        ("context_length_exceeded", K.CONTEXT_LENGTH_EXCEEDED, 400),
        ("content_filter", K.CONTENT_FILTERED, 400),
        ("something_new", K.UPSTREAM_ERROR, None),
    ],
)
def test_frame_codes(code: Any, kind: ErrorKind, status: int | None) -> None:
    err = frame_error({"error": {"message": "failed", "code": code}, "reqId": "r"})
    assert err.kind is kind
    assert err.status == status


def test_frame_with_a_404_code_and_a_model_message_is_model_not_found() -> None:
    err = frame_error({"error": {"message": "model openai/gpt-0 not found", "code": 404}, "reqId": "r"})
    assert err.kind is K.MODEL_NOT_FOUND


def test_frame_error_as_a_string_and_odd_reqids() -> None:
    err = frame_error({"error": "upstream went away", "reqId": 12345})
    assert err.kind is K.UPSTREAM_ERROR
    assert err.message == "upstream went away"
    assert err.request_id == "12345"
    # No usable reqId: the stream's own request id.
    assert frame_error({"error": {"message": "x"}, "reqId": {"no": 1}}).request_id == "stream-header-id"
    assert frame_error({"error": {"message": "x"}}).request_id == "stream-header-id"
    assert frame_error({"error": {"message": "x", "reqId": "inner"}}).request_id == "inner"


@pytest.mark.parametrize(
    "payload",
    [
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {"error": None, "choices": []},
        {"error": {}, "reqId": "r"},
        {"error": "", "reqId": "r"},
    ],
)
def test_ordinary_chunks_are_not_errors(payload: dict[str, Any]) -> None:
    assert frame_error(payload) is None


# -- hostile bodies (a table of them on every status, and the forms of Retry-After: the
# conformance kit, test_conformance.py; here, Mume's envelope gone wrong, and fuzzing) --


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"null", K.UNAVAILABLE),
        (b"42", K.UNAVAILABLE),
        (b'"just a string"', K.UNAVAILABLE),
        (b'{"error": {"message": "cut', K.UNAVAILABLE),
        (b'{"error": null}', K.UNAVAILABLE),
        (b'{"error": {"message": ["a"], "code": {"x": 1}, "param": 5, "type": null}}', K.UNAVAILABLE),
        (b'{"error": {"message": "\xff\xfe bad utf-8", "code": "invalid_api_key"}}', K.AUTHENTICATION),
        (b'{"error": "Service Unavailable"}', K.UNAVAILABLE),
    ],
)
def test_malformed_json_bodies(body: bytes, kind: ErrorKind) -> None:
    err = normalize(503, body)
    assert err.kind is kind
    assert err.status == 503


def assert_status(err: turnout.ProviderError, status: int | None) -> None:
    """The response's status is kept; without one, only a table code may give one."""
    if status is not None or err.status is None:
        assert err.status == status
    else:
        assert err.code is not None
        assert err.status == MUME_CODES[err.code.lower()].status


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ERROR_LIKE = st.fixed_dictionaries(
    {"error": st.fixed_dictionaries({}, optional=dict.fromkeys(("message", "type", "code", "param"), JSON))},
    optional={"reqId": JSON},
)
STATUSES = st.sampled_from([None, 400, 401, 402, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504])


@settings(max_examples=300, deadline=None)
@given(status=STATUSES, payload=JSON | ERROR_LIKE)
def test_any_json_normalizes_without_raising(status: int | None, payload: Any) -> None:
    for body in (payload, json.dumps(payload).encode()):
        err = normalize(status, body)
        assert isinstance(err, turnout.ProviderError)
        assert err.provider == "mume"
        assert_status(err, status)
        assert len(err.message) <= 500
        assert type(err) is KIND_RULES[err.kind].exception


@settings(max_examples=200, deadline=None)
@given(status=STATUSES, body=st.binary(max_size=2048))
def test_any_bytes_normalize_without_raising(status: int | None, body: bytes) -> None:
    err = normalize(status, body)
    assert isinstance(err, turnout.ProviderError)
    assert_status(err, status)


@settings(max_examples=200, deadline=None)
@given(payload=ERROR_LIKE)
def test_any_error_frame_normalizes_without_raising(payload: dict[str, Any]) -> None:
    err = frame_error(payload)
    if payload["error"]:
        assert isinstance(err, turnout.ProviderError)
        assert err.provider == "mume"
    else:
        assert err is None
