"""The emulator renders MeshAPI's wire format, and everything it renders normalizes back."""

from __future__ import annotations

import json

import pytest

import turnout
from turnout import ErrorKind, FieldError, HTTPResponse
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault
from turnout_meshapi.emulator import KIND_CODES, MeshAPIEmulator
from turnout_meshapi.provider import MeshAPI

from .helpers import DOCUMENTED, KEY


def normalized(response: EmulatedResponse) -> turnout.ProviderError:
    return turnout.normalize_error(
        "meshapi", status=response.status, headers=dict(response.headers), body=response.body
    )


def request(body: object, *, path: str = "/v1/chat/completions", key: str | None = KEY) -> EmulatedRequest:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return EmulatedRequest("POST", path, headers, raw)


def test_error_names_are_the_documented_codes(emulator: MeshAPIEmulator) -> None:
    assert list(emulator.error_names()) == list(DOCUMENTED)


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_round_trip_every_code(emulator: MeshAPIEmulator, code: str) -> None:
    response = emulator.render_error(code, retry_after=2.5, request_id="req_rt")
    status, kind = DOCUMENTED[code]
    if status is not None:
        assert response.status == status
    assert response.header("content-type") == "application/json"
    assert response.header("x-request-id") == "req_rt"
    assert response.header("retry-after") == "2.5"
    error = normalized(response)
    assert error.kind == kind
    assert error.code == code
    assert error.status == response.status
    assert error.request_id == "req_rt"
    assert error.retry_after == 2.5
    assert error.message


@pytest.mark.parametrize("code", list(DOCUMENTED))
def test_round_trip_every_code_as_a_stream_frame(emulator: MeshAPIEmulator, code: str) -> None:
    frame = emulator.error_frame(code, "req_frame")
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    payload = json.loads(frame[len(b"data: ") :])
    error = MeshAPI().stream_error(payload, HTTPResponse(200, {"content-type": "text/event-stream"}))
    assert error is not None
    assert (error.kind, error.code, error.request_id) == (DOCUMENTED[code][1], code, "req_frame")


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k in KIND_CODES])
def test_a_kind_renders_as_its_meshapi_code(emulator: MeshAPIEmulator, kind: ErrorKind) -> None:
    error = normalized(emulator.render_error(kind.value))
    assert error.kind is kind
    assert error.code == KIND_CODES[kind]


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k in KIND_CODES])
def test_a_kind_as_a_stream_frame_carries_its_meshapi_code(
    emulator: MeshAPIEmulator, kind: ErrorKind
) -> None:
    payload = json.loads(emulator.error_frame(kind.value, "req_kind")[len(b"data: ") :])
    error = MeshAPI().stream_error(payload, HTTPResponse(200, {"content-type": "text/event-stream"}))
    assert error is not None
    assert (error.kind, error.code) == (kind, KIND_CODES[kind])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ErrorKind.BAD_REQUEST, ErrorKind.BAD_REQUEST),
        (ErrorKind.UNAVAILABLE, ErrorKind.UNAVAILABLE),
        (ErrorKind.CONTENT_FILTERED, ErrorKind.BAD_REQUEST),
        (ErrorKind.CONTEXT_LENGTH_EXCEEDED, ErrorKind.BAD_REQUEST),
        (ErrorKind.CONNECTION, ErrorKind.UPSTREAM_ERROR),
    ],
)
def test_kinds_without_a_meshapi_code_render_by_status(
    emulator: MeshAPIEmulator, kind: ErrorKind, expected: ErrorKind
) -> None:
    # MeshAPI has no code for these: the client sees a status (and, for `connection`,
    # a proxy's page), which is what they normalize by.
    assert kind not in KIND_CODES
    error = normalized(emulator.render_error(kind.value))
    assert error.kind is expected
    assert error.code is None


def test_every_kind_can_be_rendered(emulator: MeshAPIEmulator) -> None:
    for kind in ErrorKind:
        assert emulator.render_error(kind.value).status >= 400


def test_a_status_renders_as_a_status(emulator: MeshAPIEmulator) -> None:
    response = emulator.render_error("503", retry_after=4)
    assert response.status == 503
    error = normalized(response)
    assert (error.kind, error.retry_after) == ("unavailable", 4.0)


def test_an_unknown_error_is_refused(emulator: MeshAPIEmulator) -> None:
    with pytest.raises(ValueError, match="meshapi has no error 'teapot'"):
        emulator.render_error("teapot")


def test_the_rate_limit_envelope(emulator: MeshAPIEmulator) -> None:
    response = emulator.render_error("rate_limit_exceeded", retry_after=30, request_id="req_rl")
    body = json.loads(response.body)
    assert body == {
        "error": {
            "code": "rate_limit_exceeded",
            "message": body["error"]["message"],
            "request_id": "req_rl",
            "retry_after_seconds": 30,
        }
    }
    assert response.header("retry-after") == "30"
    assert "retry-after" not in dict(emulator.render_error("rate_limit_exceeded").headers)


def test_the_upstream_error_envelope_carries_the_providers_error(emulator: MeshAPIEmulator) -> None:
    response = emulator.render_error("upstream_error")
    assert response.status == 500
    error = normalized(response)
    assert isinstance(error, turnout.UpstreamError)
    assert json.loads(response.body)["error"]["provider_error"] == error.extra["provider_error"]
    assert error.extra["provider_error"]["provider"] == "openai"


@pytest.mark.parametrize("code", ["validation_error", "unprocessable_entity"])
def test_the_validation_envelope_carries_details(emulator: MeshAPIEmulator, code: str) -> None:
    error = normalized(emulator.render_error(code))
    assert error.details == (FieldError("temperature", "less_than_equal", "must be <= 2"),)


def test_request_ids_are_fresh(emulator: MeshAPIEmulator) -> None:
    first = emulator.render_error("internal_error").header("x-request-id")
    second = emulator.render_error("internal_error").header("x-request-id")
    assert first
    assert second
    assert first != second


def test_a_completion(emulator: MeshAPIEmulator) -> None:
    response = emulator.handle(request({"model": "m", "messages": [{"role": "user", "content": "yo"}]}))
    assert response.status == 200
    assert response.header("x-request-id")
    body = json.loads(response.body)
    assert body["choices"][0]["message"]["content"] == "echo: yo"


def test_a_stream_ends_with_done(emulator: MeshAPIEmulator) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "yo"}], "stream": True}
    response = emulator.handle(request(body))
    assert response.header("content-type") == "text/event-stream"
    assert response.chunks is not None
    assert response.chunks[-1] == b"data: [DONE]\n\n"


def test_a_stream_with_an_error_frame(emulator: MeshAPIEmulator) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    response = emulator.handle(request(body), Fault(stream_error="forbidden", stream_error_after=2))
    assert response.chunks is not None
    assert len(response.chunks) == 3
    last = json.loads(response.chunks[-1][len(b"data: ") :])
    assert last["error"]["code"] == "forbidden"
    assert b"[DONE]" not in b"".join(response.chunks)


def test_an_error_frame_for_a_kind_without_a_code(emulator: MeshAPIEmulator) -> None:
    payload = json.loads(emulator.error_frame("unavailable", "req_u")[len(b"data: ") :])
    error = MeshAPI().stream_error(payload, HTTPResponse(200))
    assert error is not None
    assert (error.kind, error.request_id) == ("upstream_error", "req_u")


def test_no_key_is_unauthorized(emulator: MeshAPIEmulator) -> None:
    response = emulator.handle(request({"model": "m", "messages": []}, key=None))
    assert response.status == 401
    assert normalized(response).code == "unauthorized"


@pytest.mark.parametrize("body", [{"model": "m"}, {"model": "m", "messages": []}, b"not json"])
def test_a_bad_body_is_a_validation_error(emulator: MeshAPIEmulator, body: object) -> None:
    response = emulator.handle(request(body))
    assert response.status == 422
    error = normalized(response)
    assert isinstance(error, turnout.ValidationError)
    assert error.code == "validation_error"
    assert error.details


def test_another_path_is_not_found(emulator: MeshAPIEmulator) -> None:
    response = emulator.handle(request({"messages": []}, path="/v1/nowhere"))
    assert response.status == 404
    assert normalized(response).kind == "not_found"
