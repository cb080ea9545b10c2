"""The MythicDot emulator: its wire format, and every error it renders normalizing back."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout import ErrorKind
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault
from turnout_mythicdot.emulator import ERROR_CATALOGUE, KIND_CODES, PAGE_KINDS, MythicDotEmulator
from turnout_mythicdot.provider import MYTHICDOT_CODES, MythicDot

from .helpers import KEY

P = MythicDot()
EMULATOR = MythicDotEmulator()


def chat_request(
    payload: Any = None, *, key: str | None = KEY, path: str = "/v1/chat/completions"
) -> EmulatedRequest:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    if payload is None:
        payload = {"model": "mythic-4", "messages": [{"role": "user", "content": "hello there world"}]}
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return EmulatedRequest("POST", path, headers, raw)


def normalized(reply: EmulatedResponse) -> turnout.ProviderError:
    return P.normalize(status=reply.status, headers=dict(reply.headers), body=reply.body)


def test_error_names_are_the_providers_codes() -> None:
    assert list(EMULATOR.error_names()) == list(MYTHICDOT_CODES)
    assert set(ERROR_CATALOGUE) == set(MYTHICDOT_CODES)


@pytest.mark.parametrize("code", list(MYTHICDOT_CODES))
def test_every_code_renders_as_mythicdot_sends_it(code: str) -> None:
    reply = MythicDotEmulator().render_error(code)
    rule = MYTHICDOT_CODES[code]
    assert reply.status == rule.status
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-request-id") == "req_mythicdot_000001"
    payload = json.loads(reply.body)
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["code"] == code
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["message"]
    has_retry_after = reply.header("retry-after") is not None
    assert has_retry_after is (rule.status in (429, 503))


@pytest.mark.parametrize("code", list(MYTHICDOT_CODES))
def test_every_code_round_trips_to_its_kind(code: str) -> None:
    reply = MythicDotEmulator().render_error(code, retry_after=3, request_id="req_fixed")
    error = normalized(reply)
    assert error.kind is MYTHICDOT_CODES[code].kind
    assert error.code == code
    assert error.status == reply.status
    assert error.request_id == "req_fixed"
    wire_param = json.loads(reply.body)["error"]["param"]
    assert [d.field for d in error.details] == ([wire_param] if wire_param else [])
    if reply.status in (429, 503):
        assert error.retry_after == 3.0
    else:
        assert error.retry_after is None


@pytest.mark.parametrize("kind", [*KIND_CODES, *PAGE_KINDS])
def test_every_kind_renders_and_round_trips(kind: str) -> None:
    reply = MythicDotEmulator().render_error(kind, retry_after=0.5)
    error = normalized(reply)
    assert error.kind is ErrorKind(kind)
    assert error.code == KIND_CODES.get(kind)  # a kind renders as MythicDot's code for it
    assert error.request_id == "req_mythicdot_000001"


def test_a_model_not_in_the_plan_names_the_model_field() -> None:
    error = normalized(MythicDotEmulator().render_error("model_not_in_plan"))
    assert (type(error), error.status) == (turnout.PermissionDeniedError, 403)
    assert [d.field for d in error.details] == ["model"]


@pytest.mark.parametrize("code", list(MYTHICDOT_CODES))
def test_every_code_round_trips_as_a_stream_frame(code: str) -> None:
    frame = EMULATOR.error_frame(code, "req_s")
    assert frame.startswith(b"data: {")
    assert frame.endswith(b"\n\n")
    payload = json.loads(frame[len(b"data: ") :])
    error = P.stream_error(payload, turnout.HTTPResponse(200))
    assert error is not None
    assert error.kind is MYTHICDOT_CODES[code].kind


def test_page_kinds_cannot_be_stream_frames() -> None:
    with pytest.raises(ValueError, match="inside a stream"):
        EMULATOR.error_frame("timeout", "req_s")


def test_unknown_error_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="invalid_api_key") as info:
        EMULATOR.render_error("insufficient_credits")
    assert "insufficient_credits" in str(info.value)


def test_retry_after_defaults_and_formats() -> None:
    assert MythicDotEmulator().render_error("rate_limited").header("retry-after") == "1"
    assert MythicDotEmulator(default_retry_after=30).render_error("maintenance").header("retry-after") == "30"
    assert MythicDotEmulator().render_error("overloaded", retry_after=0.01).header("retry-after") == "0.01"
    # A 500 never carries Retry-After, even when asked.
    assert MythicDotEmulator().render_error("server_error", retry_after=5).header("retry-after") is None


@pytest.mark.parametrize("limit", ["requests", "tokens"])
def test_rpm_and_tpm_rate_limits(limit: Any) -> None:
    reply = MythicDotEmulator().render("rate_limit_exceeded", limit=limit, retry_after=2)
    payload = json.loads(reply.body)["error"]
    assert payload["type"] == limit
    assert ("TPM" if limit == "tokens" else "RPM") in payload["message"]
    assert reply.header(f"x-ratelimit-remaining-{limit}") in ("0", "500")
    error = normalized(reply)
    assert isinstance(error, turnout.RateLimitError)
    assert error.extra["type"] == limit
    assert error.retry_after == 2.0


def test_request_ids_are_unique_per_response() -> None:
    emulator = MythicDotEmulator()
    ids = {emulator.render_error("server_error").header("x-request-id") for _ in range(5)}
    assert len(ids) == 5


def test_html_pages_for_the_load_balancer_kinds() -> None:
    reply = MythicDotEmulator().render_error("upstream_error")
    assert reply.status == 502
    assert reply.header("content-type") == "text/html"
    assert b"<html>" in reply.body


# -- the working gateway -------------------------------------------------------


def test_completion() -> None:
    reply = MythicDotEmulator().handle(chat_request())
    assert reply.status == 200
    payload = json.loads(reply.body)
    assert payload["object"] == "chat.completion"
    assert payload["model"] == "mythic-4"
    assert payload["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: hello there world",
        "refusal": None,
    }
    assert payload["choices"][0]["finish_reason"] == "stop"
    assert reply.header("x-request-id") == "req_mythicdot_000001"


def test_stream() -> None:
    payload = {"model": "mythic-4", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    reply = MythicDotEmulator().handle(chat_request(payload))
    assert reply.status == 200
    assert reply.header("content-type") == "text/event-stream"
    assert reply.chunks is not None
    assert reply.chunks[-1] == b"data: [DONE]\n\n"
    deltas = [
        json.loads(c[len(b"data: ") :])["choices"][0]["delta"].get("content", "") for c in reply.chunks[:-1]
    ]
    assert "".join(deltas) == "echo: a b"


def test_stream_error_frame_fault() -> None:
    payload = {"model": "mythic-4", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    reply = MythicDotEmulator().handle(
        chat_request(payload), Fault(stream_error="overloaded", stream_error_after=1)
    )
    assert reply.chunks is not None
    assert len(reply.chunks) == 2
    assert json.loads(reply.chunks[-1][len(b"data: ") :])["error"]["code"] == "overloaded"


@pytest.mark.parametrize(
    ("request_", "code", "param"),
    [
        (chat_request(key=None), "missing_api_key", None),
        (chat_request(b"{not json"), "invalid_json", None),
        (chat_request([1, 2]), "invalid_json", None),
        (chat_request({"model": "mythic-4"}), "missing_parameter", "messages"),
        (chat_request({"messages": []}), "missing_parameter", "model"),
        (chat_request({"model": "mythic-4", "messages": "hi"}), "invalid_parameter", "messages"),
        (chat_request(path="/v1/embeddings"), "not_found", None),
    ],
    ids=["no-key", "bad-json", "json-list", "no-messages", "no-model", "messages-type", "wrong-path"],
)
def test_bad_requests_are_answered_as_mythicdot_does(
    request_: EmulatedRequest, code: str, param: str | None
) -> None:
    reply = MythicDotEmulator().handle(request_)
    payload = json.loads(reply.body)["error"]
    assert (reply.status, payload["code"], payload["param"]) == (MYTHICDOT_CODES[code].status, code, param)
    error = normalized(reply)
    assert error.kind is MYTHICDOT_CODES[code].kind
    assert [d.field for d in error.details] == ([param] if param else [])


def test_faults_apply_before_the_gateway() -> None:
    emulator = MythicDotEmulator()
    assert emulator.handle(chat_request(), Fault(error="revoked_api_key")).status == 401
    assert emulator.handle(chat_request(), Fault(html=503)).header("content-type") == "text/html"
    malformed = emulator.handle(chat_request(), Fault(malformed=True))
    assert malformed.status == 200
    assert "choices" not in json.loads(malformed.body)


def test_the_plugin_registers_the_emulator() -> None:
    emulators = turnout.Plugins().emulators()
    assert isinstance(emulators["mythicdot"], MythicDotEmulator)
    assert emulators["mythicdot"].provider == "mythicdot"
