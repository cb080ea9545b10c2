"""The normalizer: FastAPI `detail` envelopes, pydantic 422s, wrapped upstream statuses,
stream error frames and hostile bodies, sans-IO."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turnout
from turnout import ErrorKind, FieldError
from turnout_litellm.emulator import LiteLLMEmulator
from turnout_litellm.provider import LiteLLM, upstream_status

PROVIDER = LiteLLM()


def norm(status: int | None, body: Any, headers: dict[str, str] | None = None) -> turnout.ProviderError:
    return PROVIDER.normalize(status=status, headers=headers or {}, body=body)


def detail(text: Any) -> bytes:
    return json.dumps({"detail": text}).encode()


@pytest.mark.parametrize(
    ("status", "text", "kind", "cls"),
    [
        (400, "Invalid message format", "bad_request", turnout.BadRequestError),
        (401, "Invalid API key", "authentication", turnout.AuthenticationError),
        (
            401,
            "Missing Authorization header. Expected: 'Authorization: Bearer sk-xxx...'",
            "authentication",
            turnout.AuthenticationError,
        ),
        (
            403,
            "Insufficient credits. Team has 0 credits remaining, but 1 required.",
            "insufficient_credits",
            turnout.InsufficientCreditsError,
        ),
        (403, "No credit account found for team 'acme'", "insufficient_credits", None),
        (403, "Team suspended or insufficient credits", "insufficient_credits", None),
        (403, "CREDITS EXHAUSTED", "insufficient_credits", None),
        (403, "Team 'acme' is suspended. Contact your administrator.", "permission_denied", None),
        (403, "Team 'acme' is paused", "permission_denied", None),
        (403, "API key does not belong to team 'acme'", "permission_denied", None),
        (403, "Job does not belong to your team", "permission_denied", None),
        (403, "Team 'acme' does not have access to model group 'ChatAgent'", "permission_denied", None),
        (403, "Model group 'ChatAgent' not found or inactive", "permission_denied", None),
        (403, "Forbidden", "permission_denied", turnout.PermissionDeniedError),
        (404, "Job not found", "not_found", turnout.NotFoundError),
        (404, "Team 'acme' not found", "not_found", None),
        (429, "Rate limit exceeded", "rate_limited", turnout.RateLimitError),
        (500, "Internal server error", "server_error", turnout.InternalServerError),
        (503, "Service temporarily unavailable", "unavailable", turnout.ServiceUnavailableError),
    ],
)
def test_detail_text_by_status_and_wording(status, text, kind, cls):
    error = norm(status, detail(text))
    assert error.kind == kind
    assert error.status == status
    assert error.message == text
    assert error.provider == "litellm"
    if cls is not None:
        assert isinstance(error, cls)


def test_credit_wording_only_matters_on_403():
    # A 400 that mentions credits is still a bad request; a 404 still not found.
    assert norm(400, detail("credits must be positive")).kind == "bad_request"
    assert norm(404, detail("credit transaction not found")).kind == "not_found"


def test_credit_and_word_boundaries():
    # "accredited" is not about credits.
    assert norm(403, detail("Only accredited teams may call this model")).kind == "permission_denied"


def test_pydantic_v2_validation_details():
    body = {
        "detail": [
            {"type": "missing", "loc": ["body", "team_id"], "msg": "Field required", "input": {"a": 1}},
            {
                "type": "string_type",
                "loc": ["body", "messages", 0, "content"],
                "msg": "Input should be a valid string",
                "input": ["distinctive-user-input"],
            },
            {
                "type": "less_than_equal",
                "loc": ["body", "temperature"],
                "msg": "Input should be less than or equal to 2",
                "input": 7,
                "ctx": {"le": 2.0},
            },
        ]
    }
    error = norm(422, json.dumps(body).encode())
    assert isinstance(error, turnout.ValidationError)
    assert error.kind == "validation"
    assert error.retryable is False
    assert error.details == (
        FieldError("body.team_id", "missing", "Field required"),
        FieldError("body.messages.0.content", "string_type", "Input should be a valid string"),
        FieldError("body.temperature", "less_than_equal", "Input should be less than or equal to 2"),
    )
    assert "body.team_id: Field required" in error.message
    # The request's own input is not copied into the error.
    assert "distinctive-user-input" not in str(error)
    assert "distinctive-user-input" not in repr(error)


def test_pydantic_v1_validation_details():
    body = {
        "detail": [
            {"loc": ["body", "messages"], "msg": "field required", "type": "value_error.missing"},
            {"loc": ["body", "stop", 1], "msg": "str type expected", "type": "type_error.str"},
        ]
    }
    error = norm(422, body)
    assert error.kind == "validation"
    assert [(d.field, d.code, d.message) for d in error.details] == [
        ("body.messages", "value_error.missing", "field required"),
        ("body.stop.1", "type_error.str", "str type expected"),
    ]


def test_validation_list_with_odd_items_keeps_the_good_ones():
    body = {"detail": [42, None, {"loc": "body", "msg": "bad"}, {"loc": [["x"], 1, "y"], "type": 5}]}
    error = norm(422, body)
    assert error.kind == "validation"
    assert error.details == (FieldError("body", None, "bad"), FieldError("1.y", None, ""))


def test_a_list_detail_is_validation_whatever_the_status():
    body = {"detail": [{"type": "missing", "loc": ["query", "limit"], "msg": "Field required"}]}
    error = norm(400, body)
    assert error.kind == "validation"
    assert error.details[0].field == "query.limit"


def test_many_validation_errors_are_summarised():
    items = [{"type": "missing", "loc": ["body", f"f{i}"], "msg": "Field required"} for i in range(12)]
    error = norm(422, {"detail": items})
    assert len(error.details) == 12
    assert "(+7 more)" in error.message


def test_an_empty_validation_list_falls_back_to_the_status():
    error = norm(422, {"detail": []})
    assert error.kind == "validation"
    assert error.details == ()
    assert error.message == "HTTP 422 Unprocessable Entity"


@pytest.mark.parametrize(
    ("upstream", "kind"),
    [
        (429, "rate_limited"),
        (500, "server_error"),
        (502, "upstream_error"),
        (503, "unavailable"),
        (504, "timeout"),
        (401, "authentication"),
        (400, "bad_request"),
    ],
)
def test_a_500_is_classified_by_its_upstream_error_code(upstream, kind):
    text = (
        f"LLM call failed: 500: Failed to call provider API: Error code: {upstream} - "
        "{'error': {'message': 'upstream said no'}}"
    )
    error = norm(500, detail(text))
    assert error.kind == kind
    assert error.status == 500  # the wire status stays the server's


def test_upstream_429_inside_a_500_is_a_rate_limit_not_to_repeat():
    # The server tried the upstream nine times before it wrote this.
    error = norm(
        500,
        detail(
            "LLM call failed: 500: Failed to call provider API: Error code: 429 - "
            "{'error': {'message': 'Rate limit reached', 'code': 'rate_limit_exceeded'}}"
        ),
    )
    assert isinstance(error, turnout.RateLimitError)
    assert error.status == 500
    assert error.retryable is False


def test_only_wrapped_call_failures_are_marked_not_retryable():
    assert norm(500, detail("Internal server error")).retryable is True
    assert norm(500, b"Internal Server Error").retryable is True
    assert norm(500, detail("LLM call failed: 500: No provider credentials configured")).retryable is False


def test_httpx_wording_from_the_litellm_proxy_is_an_upstream_status_too():
    text = (
        "LLM call failed: Client error '429 Too Many Requests' for url 'http://proxy:4000/chat/completions'"
    )
    assert norm(500, detail(text)).kind == "rate_limited"
    text = "LLM call failed: Server error '503 Service Unavailable' for url 'http://proxy:4000/x'"
    assert norm(500, detail(text)).kind == "unavailable"


def test_upstream_context_length_inside_a_500_is_context_length_exceeded():
    text = (
        "LLM call failed: 500: Failed to call provider API: Error code: 400 - {'error': {'message': "
        "\"This model's maximum context length is 8192 tokens\", 'code': 'context_length_exceeded'}}"
    )
    error = norm(500, detail(text))
    assert isinstance(error, turnout.ContextLengthError)
    assert error.status == 500


def test_upstream_status_helper():
    assert upstream_status("LLM call failed: 500: x Error code: 429 - {}") == 429
    assert upstream_status("Error code: 500 - wrapped Error code: 503 - inner") == 503
    assert upstream_status("Error code: 200 - odd") is None
    assert upstream_status("LLM call failed: 500: no upstream code here") is None
    assert upstream_status("") is None


def test_plain_text_500_is_classified_by_status():
    error = norm(500, b"Internal Server Error", {"content-type": "text/plain"})
    assert isinstance(error, turnout.InternalServerError)
    assert error.kind == "server_error"
    assert error.message == "Internal Server Error"


# Hostile bodies in general (every status, HTML, empty, binary, truncated, huge) and the
# forms of Retry-After: the conformance kit (test_conformance.py). Here, `detail` gone wrong.
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, b'{"detail": null}', "not_found"),
        (403, b'{"detail": 12}', "permission_denied"),
        (401, b'{"detail": true}', "authentication"),
        (500, b'{"detail": {"nested": {"deep": []}}}', "server_error"),
        (500, b'{"something": "else"}', "server_error"),
    ],
)
def test_odd_details_never_crash(status, body, kind):
    error = norm(status, body)
    assert error.kind == kind
    assert error.status == status
    assert len(error.message) <= 500


def test_deeply_nested_json_body():
    error = norm(500, b'{"detail": ' + b"[" * 100_000)
    assert error.kind == "server_error"
    assert len(error.message) <= 500


def test_detail_object_from_a_custom_exception():
    error = norm(403, {"detail": {"error": "insufficient_credits", "message": "Out of credits"}})
    assert error.kind == "insufficient_credits"
    assert error.message == "Out of credits"


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ({"error": "Failed to call provider API: Error code: 429 - {}"}, "rate_limited"),
        ({"error": "Failed to call provider API: Error code: 503 - {}"}, "unavailable"),
        ({"error": "stream broke"}, "upstream_error"),
        (
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            "rate_limited",
        ),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "unavailable"),
        (
            {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            "rate_limited",
        ),
        ({"error": {"code": 503, "message": "The model is overloaded"}}, "unavailable"),
        (
            {"error": {"message": "This model's maximum context length is 4096 tokens"}},
            "context_length_exceeded",
        ),
        ({"error": {"something": "opaque"}}, "upstream_error"),
    ],
)
def test_stream_error_frames(frame, kind):
    head = turnout.HTTPResponse(200, {"content-type": "text/event-stream"})
    error = PROVIDER.stream_error(frame, head)
    assert error is not None
    assert error.kind == kind
    assert error.status is None


@pytest.mark.parametrize("frame", [{"error": None}, {"error": ""}, {"error": 0}, {"choices": []}, {}])
def test_frames_without_an_error_are_not_errors(frame):
    head = turnout.HTTPResponse(200, {})
    assert PROVIDER.stream_error(frame, head) is None


def test_normalize_error_public_api():
    error = turnout.normalize_error(
        "litellm",
        status=500,
        body=b'{"detail": "LLM call failed: 500: Failed to call provider API: Error code: 429 - {}"}',
    )
    assert isinstance(error, turnout.RateLimitError)
    assert error.status == 500
    assert error.provider == "litellm"


# Independent of the emulator's own tables: what each rendered error must mean.
EXPECTED = {
    "401": "authentication",
    "403": "permission_denied",
    "404": "not_found",
    "422": "validation",
    "500": "server_error",
    "missing_auth": "authentication",
    "bad_auth_header": "authentication",
    "invalid_key": "authentication",
    "team_suspended": "permission_denied",
    "team_paused": "permission_denied",
    "wrong_team": "permission_denied",
    "job_other_team": "permission_denied",
    "model_access": "permission_denied",
    "model_group_access": "permission_denied",
    "model_inactive": "permission_denied",
    "job_not_found": "not_found",
    "team_not_found": "not_found",
    "route_not_found": "not_found",
    "validation_v2": "validation",
    "validation_v1": "validation",
    "no_credentials": "server_error",
    "upstream_400": "bad_request",
    "context_length": "context_length_exceeded",
    "upstream_429": "rate_limited",
    "upstream_500": "server_error",
    "upstream_502": "upstream_error",
    "upstream_503": "unavailable",
    "upstream_504": "timeout",
    "plain_500": "server_error",
}


def test_every_emulated_error_normalizes_to_its_kind():
    emulator = LiteLLMEmulator()
    names = list(emulator.error_names())
    kinds = {k.value for k in ErrorKind}
    assert set(EXPECTED) <= set(names)
    for name in names:
        rendered = emulator.render_error(name)
        error = norm(rendered.status, rendered.body, dict(rendered.headers))
        expected = name if name in kinds else EXPECTED[name]
        assert error.kind == expected, name


@pytest.mark.parametrize(
    ("name", "first"), [("validation_v1", "body.messages"), ("validation_v2", "body.team_id")]
)
def test_emulated_validation_errors_have_field_paths(name, first):
    rendered = LiteLLMEmulator().render_error(name)
    error = norm(rendered.status, rendered.body)
    assert error.status == 422
    assert error.details[0].field == first  # pydantic's `loc` joined by dots
    assert all(d.field.startswith("body.") for d in error.details)
    assert all(d.code for d in error.details)


@settings(max_examples=200, deadline=None)
@given(status=st.one_of(st.none(), st.integers(100, 599)), body=st.binary(max_size=512))
def test_any_bytes_normalize(status, body):
    error = norm(status, body)
    assert isinstance(error, turnout.ProviderError)
    assert error.kind in set(ErrorKind)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(status=st.one_of(st.none(), st.integers(400, 599)), payload=JSON)
def test_any_json_in_a_detail_or_error_envelope_normalizes(status, payload):
    for body in ({"detail": payload}, {"error": payload}, payload):
        error = norm(status, json.dumps(body).encode())
        assert isinstance(error, turnout.ProviderError)
        assert len(error.message) <= 500
