"""MeshAPI's error table, envelope and hints, normalized without any network."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout import KIND_RULES, ErrorKind, FieldError, HTTPResponse
from turnout_meshapi.provider import MESHAPI_CODES, MeshAPI

from .helpers import DOCUMENTED


def envelope(code: str | None = None, **fields: Any) -> bytes:
    error: dict[str, Any] = {"message": f"mesh says {code}", **fields}
    if code is not None:
        error["code"] = code
    return json.dumps({"error": error}).encode()


def wire_status(code: str) -> int:
    """The status a code comes with; codes MeshAPI documents without one are tried at 502."""
    return DOCUMENTED[code][0] or 502


def test_the_table_is_the_documented_one() -> None:
    assert {code: (rule.status, rule.kind.value) for code, rule in MESHAPI_CODES.items()} == DOCUMENTED
    assert MeshAPI.error_table.codes == MESHAPI_CODES


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_every_code_through_normalize_error(code: str) -> None:
    kind = ErrorKind(DOCUMENTED[code][1])
    error = turnout.normalize_error("meshapi", status=wire_status(code), body=envelope(code))
    assert type(error) is KIND_RULES[kind].exception
    assert error.kind is kind
    assert error.code == code
    assert error.provider == "meshapi"
    assert error.status == wire_status(code)
    assert error.message == f"mesh says {code}"
    assert error.retryable is KIND_RULES[kind].retryable


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_every_code_through_the_provider(provider: MeshAPI, code: str) -> None:
    error = provider.normalize(status=wire_status(code), headers={}, body=json.loads(envelope(code)))
    assert error.kind == DOCUMENTED[code][1]
    assert error.code == code


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_error_code_is_an_alias_of_code(code: str) -> None:
    body = {"error": {"error_code": code, "message": "aliased"}}
    error = turnout.normalize_error("meshapi", status=wire_status(code), body=body)
    assert error.kind == DOCUMENTED[code][1]
    assert error.code == code


def test_code_wins_over_error_code_and_a_flat_envelope_is_read() -> None:
    both = {"error": {"code": "forbidden", "error_code": "unauthorized"}}
    assert turnout.normalize_error("meshapi", status=403, body=both).kind == "permission_denied"
    flat = {"error_code": "spend_limit_exceeded", "message": "top up"}
    error = turnout.normalize_error("meshapi", status=402, body=flat)
    assert (error.kind, error.code, error.message) == (
        "insufficient_credits",
        "spend_limit_exceeded",
        "top up",
    )


def test_codes_decide_over_the_status() -> None:
    # All three arrive as 500: the code tells them apart.
    kinds = [
        turnout.normalize_error("meshapi", status=500, body=envelope(code)).kind
        for code in ("upstream_error", "gateway_timeout", "internal_error")
    ]
    assert kinds == ["upstream_error", "timeout", "server_error"]
    assert turnout.normalize_error("meshapi", status=404, body=envelope("model_not_found")).kind == (
        "model_not_found"
    )
    assert isinstance(
        turnout.normalize_error("meshapi", status=404, body=envelope("model_not_found")),
        turnout.NotFoundError,
    )
    assert turnout.normalize_error("meshapi", status=429, body=envelope("RATE_LIMIT_EXCEEDED")).kind == (
        "rate_limited"
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "bad_request"), (409, "bad_request"), (418, "bad_request"), (503, "unavailable"),
     (502, "upstream_error"), (504, "timeout"), (529, "unavailable"), (500, "server_error"),
     (501, "server_error")],
)  # fmt: skip
def test_an_unknown_code_is_classified_by_status(status: int, kind: str) -> None:
    error = turnout.normalize_error("meshapi", status=status, body=envelope("brand_new_code"))
    assert error.kind == kind
    assert error.code == "brand_new_code"


# -- request ids -------------------------------------------------------------


def test_request_id_from_the_body() -> None:
    error = turnout.normalize_error(
        "meshapi", status=401, body=envelope("unauthorized", request_id="req_body")
    )
    assert error.request_id == "req_body"
    top = {"error": {"code": "unauthorized"}, "request_id": "req_top"}
    assert turnout.normalize_error("meshapi", status=401, body=top).request_id == "req_top"


@pytest.mark.parametrize("name", ["X-Request-Id", "x-request-id", "X-REQUEST-ID"])
def test_request_id_from_the_header(name: str) -> None:
    error = turnout.normalize_error(
        "meshapi", status=401, headers={name: "req_hdr"}, body=envelope("unauthorized")
    )
    assert error.request_id == "req_hdr"


def test_the_body_request_id_wins_over_the_header() -> None:
    body = envelope("unauthorized", request_id="req_body")
    error = turnout.normalize_error("meshapi", status=401, headers={"X-Request-Id": "req_hdr"}, body=body)
    assert error.request_id == "req_body"


def test_request_id_from_the_header_when_the_body_is_not_json() -> None:
    error = turnout.normalize_error("meshapi", status=502, headers={"x-request-id": "req_x"}, body=b"<html>")
    assert error.request_id == "req_x"


# -- retry-after ---------------------------------------------------------------


def test_retry_after_seconds_from_the_body() -> None:
    body = envelope("rate_limit_exceeded", retry_after_seconds=7)
    error = turnout.normalize_error("meshapi", status=429, body=body)
    assert error.retry_after == 7.0
    text = envelope("rate_limit_exceeded", retry_after_seconds="4.5")
    assert turnout.normalize_error("meshapi", status=429, body=text).retry_after == 4.5


def test_the_longer_of_body_and_header_wins() -> None:
    body = envelope("rate_limit_exceeded", retry_after_seconds=2)
    error = turnout.normalize_error("meshapi", status=429, headers={"Retry-After": "9"}, body=body)
    assert error.retry_after == 9.0
    body = envelope("rate_limit_exceeded", retry_after_seconds=20)
    assert (
        turnout.normalize_error("meshapi", status=429, headers={"Retry-After": "9"}, body=body).retry_after
        == 20
    )


@pytest.mark.parametrize("value", ["soon", -1, True, None, [3], {"s": 3}, "NaN", "inf", 1e400])
def test_a_nonsensical_retry_after_seconds_is_ignored(value: Any) -> None:
    body = {"error": {"code": "rate_limit_exceeded", "retry_after_seconds": value}}
    error = turnout.normalize_error("meshapi", status=429, body=body)
    assert error.kind == "rate_limited"
    assert error.retry_after is None


# -- details and provider_error ---------------------------------------------------


def test_details_become_field_errors() -> None:
    details = [
        {"field": "temperature", "code": "less_than_equal", "message": "must be <= 2"},
        {"loc": ["body", "messages", 0, "role"], "type": "missing", "msg": "Field required"},
        "top_p is out of range",
    ]
    error = turnout.normalize_error("meshapi", status=422, body=envelope("validation_error", details=details))
    assert isinstance(error, turnout.ValidationError)
    assert error.details == (
        FieldError("temperature", "less_than_equal", "must be <= 2"),
        FieldError("body.messages.0.role", "missing", "Field required"),
        FieldError("", None, "top_p is out of range"),
    )


def test_details_as_a_mapping_of_fields() -> None:
    details = {"max_tokens": ["must be >= 1", "must be an integer"], "model": "unknown"}
    error = turnout.normalize_error(
        "meshapi", status=422, body=envelope("unprocessable_entity", details=details)
    )
    assert error.details == (
        FieldError("max_tokens", None, "must be >= 1; must be an integer"),
        FieldError("model", None, "unknown"),
    )


@pytest.mark.parametrize("details", ["text", 42, None, [None, 3.5, []], {}])
def test_odd_details_do_not_break_normalization(details: Any) -> None:
    error = turnout.normalize_error("meshapi", status=422, body=envelope("validation_error", details=details))
    assert error.kind == "validation"
    assert all(isinstance(d, FieldError) for d in error.details)


def test_fastapi_detail_bodies() -> None:
    error = turnout.normalize_error("meshapi", status=404, body={"detail": "Model 'x' not found"})
    assert (error.kind, error.message, error.code) == ("not_found", "Model 'x' not found", None)
    raw = {"detail": [{"type": "missing", "loc": ["body", "messages"], "msg": "Field required"}]}
    error = turnout.normalize_error("meshapi", status=422, body=raw)
    assert error.kind == "validation"
    assert error.details == (FieldError("body.messages", "missing", "Field required"),)


def test_provider_error_is_kept_in_extra() -> None:
    upstream = {"provider": "anthropic", "status": 529, "message": "Overloaded"}
    error = turnout.normalize_error(
        "meshapi", status=500, body=envelope("upstream_error", provider_error=upstream)
    )
    assert isinstance(error, turnout.UpstreamError)
    assert error.extra["provider_error"] == upstream
    plain = turnout.normalize_error("meshapi", status=500, body=envelope("internal_error"))
    assert "provider_error" not in plain.extra


def test_a_string_error_is_the_message() -> None:
    error = turnout.normalize_error("meshapi", status=401, body={"error": "Invalid API key"})
    assert (error.kind, error.message) == ("authentication", "Invalid API key")


# -- in-band errors (stream frames, envelopes under a 2xx) --------------------------


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_a_stream_frame_carries_the_status_of_its_code(provider: MeshAPI, code: str) -> None:
    head = HTTPResponse(200, {"content-type": "text/event-stream", "x-request-id": "req_stream"})
    frame = {"error": {"code": code, "message": "mid-stream"}}
    error = provider.stream_error(frame, head)
    assert error is not None
    assert error.kind == DOCUMENTED[code][1]
    assert error.status == DOCUMENTED[code][0]
    assert error.request_id == "req_stream"


def test_stream_frames_without_a_known_code(provider: MeshAPI) -> None:
    head = HTTPResponse(200, {"content-type": "text/event-stream"})
    unknown = provider.stream_error({"error": {"code": "mystery", "message": "?"}}, head)
    assert unknown is not None
    assert (unknown.kind, unknown.status) == ("upstream_error", None)
    text = provider.stream_error({"error": "upstream connection reset"}, head)
    assert text is not None
    assert (text.kind, text.message) == ("upstream_error", "upstream connection reset")
    frame_id = provider.stream_error({"error": {"code": "internal_error", "request_id": "req_f"}}, head)
    assert frame_id is not None
    assert frame_id.request_id == "req_f"


def test_frames_that_are_not_errors(provider: MeshAPI) -> None:
    head = HTTPResponse(200, {})
    assert provider.stream_error({"choices": [{"delta": {"content": "x"}}]}, head) is None
    assert provider.stream_error({"error": None, "choices": []}, head) is None


def test_an_envelope_without_a_status_gets_the_documented_one() -> None:
    error = turnout.normalize_error("meshapi", status=None, body=envelope("rate_limit_exceeded"))
    assert (error.kind, error.status) == ("rate_limited", 429)
    untabled = turnout.normalize_error("meshapi", status=None, body=envelope("stream_interrupted"))
    assert (untabled.kind, untabled.status) == ("stream_interrupted", None)


# Hostile bodies, every status and the forms of Retry-After: the conformance kit
# (test_conformance.py).
