"""The normalization toolkit: any status, any header, any body gives a ProviderError."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turnout
from turnout import CodeRule, ErrorFields, ErrorKind, ErrorTable, FieldError, MessageRule
from turnout._normalize import STATUS_KINDS, kind_for_status, normalize, parse_retry_after

from .acme import ACME_CODES, Acme

EMPTY = ErrorTable()


def norm(status, body=None, headers=None, table=EMPTY, **kw):
    return normalize("test", table, status=status, headers=headers, body=body, **kw)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "authentication"),
        (402, "insufficient_credits"),
        (403, "permission_denied"),
        (404, "not_found"),
        (408, "timeout"),
        (409, "bad_request"),
        (413, "bad_request"),
        (418, "bad_request"),
        (422, "validation"),
        (429, "rate_limited"),
        (500, "server_error"),
        (501, "server_error"),
        (502, "upstream_error"),
        (503, "unavailable"),
        (504, "timeout"),
        (529, "unavailable"),
        (599, "server_error"),
        (301, "upstream_error"),
        (307, "upstream_error"),
    ],
)
def test_status_alone_classifies_when_the_body_says_nothing(status, kind):
    for body in (b"", b"<html><title>Oops</title></html>", b"\x00\xff\x80", b'{"unexpected": 1}', b"[]"):
        error = norm(status, body)
        assert error.kind == kind
        assert type(error) is turnout._errors.KIND_CLASSES[ErrorKind(kind)]
        assert error.status == status


def test_every_status_kind_is_in_the_documented_table():
    assert set(STATUS_KINDS) == {400, 401, 402, 403, 404, 408, 422, 429, 500, 502, 503, 504, 529}
    assert kind_for_status(None) is ErrorKind.UPSTREAM_ERROR


def test_a_redirect_names_its_location():
    error = norm(302, b"", {"Location": "https://elsewhere.test/x"})
    assert isinstance(error, turnout.UpstreamError)
    assert "https://elsewhere.test/x" in error.message


def test_html_pages_give_their_title_as_the_message():
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    error = norm(502, page)
    assert error.message == "502 Bad Gateway"


def test_an_empty_body_gets_the_status_phrase():
    assert norm(503, b"").message == "HTTP 503 Service Unavailable"
    assert norm(599, b"").message == "HTTP 599"


def test_a_five_megabyte_body_is_classified_quickly_and_truncated():
    body = b'{"error": {"message": "' + b"x" * (5 * 1024 * 1024) + b'"}}'
    started = time.perf_counter()
    error = norm(500, body)
    # Not a timing assertion on the library: a guard that the body is not parsed whole.
    assert time.perf_counter() - started < 1.0
    assert error.kind is ErrorKind.SERVER_ERROR
    assert len(error.message) <= 500


def test_non_utf8_is_replaced_not_raised():
    error = norm(500, b'{"error": {"message": "caf\xe9"}}')
    assert error.kind is ErrorKind.SERVER_ERROR
    assert "caf" in error.message


def test_body_may_be_str_bytes_or_parsed():
    payload = {"error": {"message": "m", "code": "oops"}}
    table = ErrorTable(codes={"oops": CodeRule(ErrorKind.UNAVAILABLE)})
    for body in (payload, json.dumps(payload), json.dumps(payload).encode()):
        error = norm(500, body, table=table)
        assert (error.kind, error.code, error.message) == (ErrorKind.UNAVAILABLE, "oops", "m")


def test_the_code_table_wins_over_the_status():
    table = ErrorTable(codes={"busy": CodeRule(ErrorKind.UNAVAILABLE, 503)})
    assert norm(500, {"error": {"code": "busy"}}, table=table).kind is ErrorKind.UNAVAILABLE
    assert norm(500, {"error": {"code": "BUSY"}}, table=table).kind is ErrorKind.UNAVAILABLE


def test_case_sensitive_tables_do_not_fold():
    table = ErrorTable(codes={"BUSY": CodeRule(ErrorKind.UNAVAILABLE)}, case_sensitive=True)
    assert norm(500, {"error": {"code": "busy"}}, table=table).kind is ErrorKind.SERVER_ERROR


def test_message_rules_apply_only_to_their_statuses():
    table = ErrorTable(message_rules=[MessageRule(r"\bcredits?\b", ErrorKind.INSUFFICIENT_CREDITS, {403})])
    assert (
        norm(403, {"error": {"message": "Out of credits"}}, table=table).kind
        is ErrorKind.INSUFFICIENT_CREDITS
    )
    assert norm(401, {"error": {"message": "Out of credits"}}, table=table).kind is ErrorKind.AUTHENTICATION
    assert norm(403, {"error": {"message": "Suspended"}}, table=table).kind is ErrorKind.PERMISSION_DENIED


def test_an_upstream_status_in_the_body_classifies_but_the_status_stays():
    def extract(payload):
        return ErrorFields(message="wrapped", upstream_status=429)

    error = norm(500, {"detail": "x"}, extract=extract)
    assert (error.kind, error.status) == (ErrorKind.RATE_LIMITED, 500)


def test_the_bodys_retryable_flag_wins_over_the_code_and_the_kind():
    table = ErrorTable(codes={"INTERNAL": CodeRule(ErrorKind.SERVER_ERROR, 500, retryable=False)})
    assert norm(500, {"error": {"code": "INTERNAL"}}, table=table).retryable is False

    def flagged(payload):
        return ErrorFields(code="INTERNAL", retryable=True)

    assert norm(500, {}, table=table, extract=flagged).retryable is True
    assert norm(500, b"").retryable is True
    assert norm(400, b"").retryable is False


def test_an_extractor_that_crashes_falls_back_to_the_status():
    def broken(payload):
        raise KeyError("boom")

    error = norm(429, {"error": 1}, extract=broken)
    assert error.kind is ErrorKind.RATE_LIMITED


def test_openai_envelope_keeps_type_param_and_a_field_detail():
    body = {
        "error": {
            "message": "bad temp",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    }
    error = norm(400, body)
    assert error.code == "invalid_request_error"
    assert error.details == (FieldError("temperature", "invalid_request_error", "bad temp"),)
    assert error.extra == {"type": "invalid_request_error", "param": "temperature"}


@pytest.mark.parametrize(
    "body",
    [
        {"error": "plain string"},
        {"message": "top level"},
        {"error": ["list"]},
        [{"error": {}}],
        "just text",
        42,
    ],
)
def test_degraded_envelopes(body):
    error = norm(500, body)
    assert error.kind is ErrorKind.SERVER_ERROR
    assert error.message


# -- retry-after ----------------------------------------------------------------


def test_retry_after_in_seconds():
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5


def test_retry_after_as_an_http_date():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(90, abs=1)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


def test_retry_after_ms_and_ratelimit_reset():
    now = 1_710_924_000.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"x-ratelimit-reset": "1710924600"}, now=now) == 600.0
    assert parse_retry_after({"x-ratelimit-reset": "30"}, now=now) == 30.0


def test_the_longest_hint_wins():
    headers = {"retry-after": "5", "retry-after-ms": "9000", "x-ratelimit-reset": "2"}
    assert parse_retry_after(headers) == 9.0


@pytest.mark.parametrize("value", ["soon", "", "-3", "nan", "inf", "Mon, 99 Foo 2024", "1e400"])
def test_unusable_retry_after_is_ignored(value):
    assert parse_retry_after({"retry-after": value}) is None


def test_headers_give_retry_after_and_request_id_case_insensitively():
    error = norm(429, b"", {"Retry-After": "3", "X-Request-Id": "req-1"})
    assert (error.retry_after, error.request_id) == (3.0, "req-1")


def test_the_body_request_id_wins_over_the_header():
    error = norm(500, {"error": {"message": "m", "request_id": "body-id"}}, {"x-request-id": "header-id"})
    assert error.request_id == "body-id"


# -- properties -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    json_values.map(lambda v: {"error": v}),
    st.dictionaries(st.sampled_from(["error", "detail", "message", "code"]), json_values, max_size=3),
)
header_maps = st.dictionaries(
    st.sampled_from(["retry-after", "retry-after-ms", "x-ratelimit-reset", "x-request-id", "location", "x"]),
    st.text(max_size=40),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(status=st.one_of(st.none(), st.integers(100, 999)), headers=header_maps, body=bodies)
def test_normalize_never_raises_and_always_returns_its_kinds_class(status, headers, body):
    provider = Acme()
    error = provider.normalize(status=status, headers=headers, body=body)
    assert isinstance(error, turnout._errors.KIND_CLASSES[error.kind])
    assert error.provider == "acme"
    assert isinstance(error.message, str)
    assert len(error.message) <= 500
    assert error.retry_after is None or error.retry_after >= 0


def test_normalize_error_uses_the_installed_provider(default_acme):
    error = turnout.normalize_error(
        "acme",
        status=429,
        headers={"Retry-After": "2"},
        body=b'{"error": {"code": "slow_down", "message": "m"}}',
    )
    assert isinstance(error, turnout.RateLimitError)
    assert (error.retry_after, error.deployment, error.code) == (2.0, None, "slow_down")


def test_normalize_error_for_an_unknown_provider_lists_the_installed(default_acme):
    with pytest.raises(turnout.ConfigError, match="installed: acme"):
        turnout.normalize_error("nope", status=500)


def test_acme_table_round_trips_through_its_emulator(emulator):
    provider = Acme()
    for code in emulator.error_names():
        reply = emulator.render_error(code, retry_after=1)
        error = provider.normalize(status=reply.status, headers=dict(reply.headers), body=reply.body)
        assert error.kind is ACME_CODES[code].kind, code
        assert error.retry_after == 1.0


# -- a coarse category never replaces a precise status ---------------------------------


@pytest.mark.parametrize(
    ("status", "category", "kind"),
    [
        (503, "server_error", ErrorKind.UNAVAILABLE),  # MythicDot's documented 503 with code null
        (502, "server_error", ErrorKind.UPSTREAM_ERROR),
        (429, "server_error", ErrorKind.RATE_LIMITED),
        (401, "invalid_request_error", ErrorKind.AUTHENTICATION),
        (429, "insufficient_quota", ErrorKind.INSUFFICIENT_CREDITS),  # says more than 429
        (400, "context_length_exceeded", ErrorKind.CONTEXT_LENGTH_EXCEEDED),
        (None, "server_error", ErrorKind.SERVER_ERROR),  # in-band: the category is all there is
    ],
)
def test_the_openai_type_refines_a_status_only_where_it_says_more(status, category, kind) -> None:
    table = ErrorTable(
        codes={
            "server_error": CodeRule(ErrorKind.SERVER_ERROR, 500),
            "invalid_request_error": CodeRule(ErrorKind.BAD_REQUEST, 400),
            "insufficient_quota": CodeRule(ErrorKind.INSUFFICIENT_CREDITS, 429),
            "context_length_exceeded": CodeRule(ErrorKind.CONTEXT_LENGTH_EXCEEDED, 400),
        }
    )
    body = {"error": {"message": "m", "type": category, "code": None, "param": None}}
    error = normalize("acme", table, status=status, body=body)
    assert error.kind is kind
    assert error.code == category  # still shown: it is the body's own name for the failure


def test_a_huge_request_id_and_endless_details_are_bounded() -> None:
    """An error carries what a person or a log needs, never a body's worth."""
    body = {
        "error": {"message": "bad", "code": "invalid", "request_id": "r" * 100_000},
        "details": [{"field": "f" * 10_000, "code": "c", "message": "m" * 10_000}] * 5_000,
    }

    def extract(payload: Any) -> turnout.ErrorFields:
        found = turnout.extract_openai(payload)
        many = tuple(turnout.FieldError(d["field"], d["code"], d["message"]) for d in payload["details"])
        return attrs.evolve(found, details=many)

    error = normalize("acme", ErrorTable(), status=400, body=body, extract=extract)
    assert error.request_id is not None
    assert len(error.request_id) == 200
    assert len(error.details) == 20
    assert all(len(d.field) <= 200 and len(d.message) <= 500 for d in error.details)
