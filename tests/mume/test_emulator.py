"""The emulator renders Mume's wire format; every error it renders normalizes back."""

from __future__ import annotations

import json

import pytest

import turnout
from turnout import ErrorKind, HTTPResponse
from turnout.emulation import EmulatedRequest, Fault
from turnout_mume.emulator import DOCUMENTED_STATUSES, MumeEmulator
from turnout_mume.provider import MUME_CODES

from .helpers import KEY, MODEL, MUME, documented_kind

EMULATOR = MumeEmulator()


def chat_request(stream: bool = False, **extra: object) -> EmulatedRequest:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], **extra}
    if stream:
        body["stream"] = True
    headers = {"authorization": f"Bearer {KEY}"}
    return EmulatedRequest("POST", "/api/v1/chat/completions", headers, json.dumps(body).encode())


def test_error_names_are_every_code_and_every_documented_status() -> None:
    names = list(EMULATOR.error_names())
    assert set(names) == {*MUME_CODES, "400", "401", "402", "403", "404", "429", "500", "503"}
    assert len(names) == len(set(names))
    assert tuple(DOCUMENTED_STATUSES) == ("400", "401", "402", "403", "404", "429", "500", "503")


@pytest.mark.parametrize("name", list(EMULATOR.error_names()))
def test_every_error_name_round_trips(name: str) -> None:
    rendered = MumeEmulator().render_error(name, retry_after=3, request_id="req-42")
    err = MUME.normalize(status=rendered.status, headers=dict(rendered.headers), body=rendered.body)
    assert err.kind is documented_kind(name)
    assert err.status == rendered.status
    assert err.retry_after == 3.0
    assert err.request_id == "req-42"
    body = json.loads(rendered.body)
    assert set(body["error"]) == {"message", "type", "code", "param"}  # the OpenAI envelope
    assert rendered.header("content-type") == "application/json"


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k.value in MumeEmulator.kind_names()])
def test_every_kind_round_trips(kind: ErrorKind) -> None:
    rendered = EMULATOR.render_error(kind.value)
    err = MUME.normalize(status=rendered.status, headers=dict(rendered.headers), body=rendered.body)
    assert err.kind is kind


def test_kinds_without_a_wire_response_are_the_only_ones_missing() -> None:
    missing = {k for k in ErrorKind if k.value not in MumeEmulator.kind_names()}
    # Transport failures and broken bodies are faults (drop_after, malformed, html), not responses.
    assert missing == {ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED, ErrorKind.PARSE_ERROR}


@pytest.mark.parametrize(
    ("name", "status"), [("400", 400), ("429", 429), ("invalid_api_key", 401), ("409", 409)]
)
def test_status_names_and_codes_render_their_status(name: str, status: int) -> None:
    assert EMULATOR.render_error(name).status == status


def test_unknown_names_are_refused() -> None:
    for name in ("no_such_code", "200", "99", "", "6000"):
        with pytest.raises(ValueError, match="cannot render"):
            EMULATOR.render_error(name)


def test_a_400_names_its_param() -> None:
    body = json.loads(EMULATOR.render_error("400").body)
    assert body["error"]["param"] == "messages"
    err = MUME.normalize(status=400, body=body)
    assert err.details[0].field == "messages"


def test_retry_after_header_only_when_asked() -> None:
    assert EMULATOR.render_error("429").header("retry-after") is None
    assert EMULATOR.render_error("429", retry_after=1.5).header("retry-after") == "1.5"


@pytest.mark.parametrize("name", [*EMULATOR.error_names(), "502", "504", "422"])
def test_every_error_frame_round_trips(name: str) -> None:
    frame = EMULATOR.error_frame(name, "req-frame-7")
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    payload = json.loads(frame[len(b"data: ") :])
    assert payload["reqId"] == "req-frame-7"
    assert set(payload["error"]) == {"message", "code"}
    err = MUME.stream_error(payload, HTTPResponse(200, {"x-request-id": "other"}))
    assert err is not None
    assert err.kind is documented_kind(name)
    assert err.request_id == "req-frame-7"


def test_completion() -> None:
    reply = EMULATOR.handle(chat_request())
    assert reply.status == 200
    body = json.loads(reply.body)
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["choices"][0]["message"]["content"] == "echo: hello there"
    assert reply.header("x-request-id")


def test_stream_then_mid_stream_error_frame() -> None:
    reply = MumeEmulator().handle(
        chat_request(stream=True), Fault(stream_error="rate_limit_exceeded", stream_error_after=2)
    )
    assert reply.header("content-type") == "text/event-stream"
    assert reply.chunks is not None
    assert len(reply.chunks) == 3
    last = json.loads(reply.chunks[-1][len(b"data: ") :])
    assert last == {
        "error": {"message": "Rate limit reached for requests per minute", "code": "rate_limit_exceeded"},
        "reqId": reply.header("x-request-id"),
    }
    assert b"[DONE]" not in b"".join(reply.chunks)


def test_a_clean_stream_ends_with_a_finish_reason_and_done() -> None:
    reply = EMULATOR.handle(chat_request(stream=True))
    assert reply.chunks is not None
    assert reply.chunks[-1] == b"data: [DONE]\n\n"
    assert b'"finish_reason": "stop"' in reply.chunks[-2]


def test_wrong_path_bad_body_and_no_key() -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    assert EMULATOR.handle(EmulatedRequest("POST", "/api/v1/embeddings", auth, b"{}")).status == 404
    assert EMULATOR.handle(EmulatedRequest("POST", "/api/v1/chat/completions", auth, b"nope")).status == 400
    valid = chat_request().body
    no_key = EMULATOR.handle(EmulatedRequest("POST", "/api/v1/chat/completions", {}, valid))
    assert no_key.status == 401
    assert isinstance(MUME.normalize(status=401, body=no_key.body), turnout.AuthenticationError)


def test_html_and_malformed_faults() -> None:
    html = EMULATOR.handle(chat_request(), Fault(html=502))
    assert html.status == 502
    assert isinstance(MUME.normalize(status=502, body=html.body), turnout.UpstreamError)
    assert EMULATOR.handle(chat_request(), Fault(malformed=True)).status == 200
