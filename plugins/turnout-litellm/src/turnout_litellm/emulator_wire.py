"""What SaaS-LiteLLM (v1.0.2) puts on the wire, for its emulator: its texts, its
envelopes, and the upstream frames it passes on.

Everything here is written after the server's source and a live run against
it: FastAPI's compact JSON (`{"detail":"Job not found"}`), pydantic v2's
validation items, the plain-text `Internal Server Error` of an unguarded
exception, the `LLM call failed: 500: Failed to call provider API: ...` of a
call whose upstream failed (after three rounds of the provider SDK's three
tries), the `{"error": "..."}` frame of a stream that failed, and the
upstreams' own stream frames (OpenAI chunks with a first role chunk and the
provider's real model name; Anthropic's `message_start` ... `message_stop`;
Gemini's `candidates`), which the server forwards line by line.
"""

from __future__ import annotations

import http
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from turnout.emulation import EmulatedResponse

__all__ = [
    "BROKEN_STREAM_TEXT",
    "OWN_ERRORS",
    "STREAM_HEADERS",
    "UPSTREAM_MODELS",
    "compact",
    "family",
    "iso",
    "iso_z",
    "json_response",
    "now",
    "own_error_frame",
    "plain_500",
    "server_error_frame",
    "stream_error_text",
    "upstream_frames",
    "upstream_own_error",
    "upstream_tries",
    "wrapped_failure",
]

# The upstream model each family answers with (the alias is what the caller named).
UPSTREAM_MODELS: Mapping[str, str] = {
    "openai": "gpt-4o-mini-2024-07-18",
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
}
_UPSTREAM_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1/chat/completions",
    "anthropic": "https://api.anthropic.com/v1/messages",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent",
}
_SDK = {"openai": "OpenAI", "anthropic": "Anthropic", "gemini": "Gemini"}

# StreamingResponse(media_type="text/event-stream", headers={Cache-Control, Connection,
# X-Accel-Buffering}): Starlette lower-cases them and appends the charset.
STREAM_HEADERS: tuple[tuple[str, str], ...] = (
    ("cache-control", "no-cache"),
    ("connection", "keep-alive"),
    ("x-accel-buffering", "no"),
    ("content-type", "text/event-stream; charset=utf-8"),
)

# v1.0.2's llm-call-stream does `async with response:` on an httpx.Response: this
# TypeError, after the upstream call ran, on every call.
BROKEN_STREAM_TEXT = "'Response' object does not support the asynchronous context manager protocol"


def family(model: str) -> str:
    """Which upstream serves a model: `anthropic/...` or a Claude, `gemini/...`, else OpenAI."""
    lower = model.lower()
    if lower.startswith("anthropic/") or "claude" in lower:
        return "anthropic"
    if lower.startswith("gemini/") or "gemini" in lower:
        return "gemini"
    return "openai"


def iso(moment: datetime) -> str:
    """`datetime.utcnow().isoformat()` as the server writes it: naive, with microseconds."""
    return moment.isoformat(timespec="microseconds")


def iso_z(moment: datetime | None) -> str | None:
    """`to_utc_isoformat`, the job dict's form: seconds only, and a `Z`."""
    return None if moment is None else moment.replace(microsecond=0).isoformat() + "Z"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def compact(payload: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def json_response(status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> EmulatedResponse:
    return EmulatedResponse(status, (*headers, ("content-type", "application/json")), compact(payload))


def plain_500() -> EmulatedResponse:
    """Starlette's answer to an exception no handler caught (e.g. `uuid.UUID(job_id)`)."""
    return EmulatedResponse(500, (("content-type", "text/plain; charset=utf-8"),), b"Internal Server Error")


# -- upstream failures ------------------------------------------------------------

_OPENAI_BODIES: Mapping[int, str] = {
    400: "{'error': {'message': \"Invalid value for 'temperature': must be between 0 and 2.\", "
    "'type': 'invalid_request_error', 'param': 'temperature', 'code': None}}",
    429: "{'error': {'message': 'Rate limit reached for gpt-4o-mini in organization org-emulated on "
    "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.', "
    "'type': 'requests', 'param': None, 'code': 'rate_limit_exceeded'}}",
    500: "{'error': {'message': 'The server had an error while processing your request. Sorry about "
    "that!', 'type': 'server_error', 'param': None, 'code': None}}",
    502: "{'error': {'message': 'Bad gateway.', 'type': 'cf_bad_gateway', 'param': None, 'code': 502}}",
    503: "{'error': {'message': 'The engine is currently overloaded, please try again later', "
    "'type': 'server_error', 'param': None, 'code': None}}",
    504: "{'error': {'message': 'Gateway timeout.', 'type': 'cf_gateway_timeout', 'param': None, "
    "'code': 504}}",
}
_CONTEXT_LENGTH = (
    "{'error': {'message': \"This model's maximum context length is 128000 tokens. However, your "
    'messages resulted in 130001 tokens. Please reduce the length of the messages.", '
    "'type': 'invalid_request_error', 'param': 'messages', 'code': 'context_length_exceeded'}}"
)
_ANTHROPIC_TYPES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "temperature: range: 0..1"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("overloaded_error", "Overloaded"),
    504: ("api_error", "Gateway timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def _upstream_body(upstream: str, status: int, context_length: bool) -> str:
    if upstream == "anthropic":
        kind, message = _ANTHROPIC_TYPES.get(status, ("api_error", "Internal server error"))
        return f"{{'type': 'error', 'error': {{'type': '{kind}', 'message': '{message}'}}}}"
    if context_length:
        return _CONTEXT_LENGTH
    return _OPENAI_BODIES.get(status, _OPENAI_BODIES[500])


def wrapped_failure(status: int, upstream: str = "openai", *, context_length: bool = False) -> str:
    """The detail of a non-streamed call whose upstream failed with `status`, every try.

    OpenAI's rate limit has its own wording; everything else is `<SDK> error: <the
    SDK's exception>`, and the whole is wrapped twice (`call_litellm`, then the
    endpoint)."""
    sdk = _SDK[upstream]
    body = _upstream_body(upstream, status, context_length)
    if upstream == "gemini":
        url = _UPSTREAM_URLS["gemini"].replace(":streamGenerateContent", ":generateContent")
        inner = f"Gemini error: {_httpx_status_text(status, url)}"
    elif upstream == "openai" and status == 429:
        inner = f"OpenAI rate limit: Error code: 429 - {body}"
    else:
        inner = f"{sdk} error: Error code: {status} - {body}"
    return f"LLM call failed: 500: Failed to call provider API: {inner}"


def upstream_tries(status: int, upstream: str = "openai") -> int:
    """How many requests the upstream received for one failed call: three rounds of
    the SDK's three tries for what the SDKs retry (408, 409, 429, 5xx), else one per round."""
    if upstream == "gemini":
        return 3
    return 9 if status in (408, 409, 429) or status >= 500 else 3


def _httpx_status_text(status: int, url: str) -> str:
    """`httpx.Response.raise_for_status()`'s message."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    kind = "Client error" if status < 500 else "Server error"
    return (
        f"{kind} '{status} {phrase}' for url '{url}'\n"
        f"For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{status}"
    )


def stream_error_text(status: int | None, upstream: str = "openai") -> str:
    """The `error` of the frame a stream ends with when its upstream refused (`status`)
    or broke off (None): `str()` of the HTTPException `call_litellm` raised."""
    if status is None:
        detail = "peer closed connection without sending complete message body (incomplete chunked read)"
    else:
        url = _UPSTREAM_URLS[upstream]
        if upstream == "gemini":
            url += "?alt=sse"
        detail = _httpx_status_text(status, url)
    return f"500: Failed to call provider API: {detail}"


def upstream_own_error(name: str) -> Mapping[str, Any]:
    """An upstream's own in-band error object, which the server passes on as a frame
    like any other (and then completes and charges the job)."""
    if name == "anthropic_overloaded":
        return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if name == "gemini_429":
        return {
            "error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}
        }
    if name == "openai_error":
        return {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    raise ValueError(name)


OWN_ERRORS = ("anthropic_overloaded", "gemini_429", "openai_error")


# -- upstream frames ----------------------------------------------------------------


def _data(payload: Any) -> bytes:
    """One forwarded line: `data: {chunk_data}\\n\\n`, the upstream's JSON as it came."""
    return b"data: " + compact(payload) + b"\n\n"


def _openai(request_id: str, created: int, delta: Mapping[str, Any], finish: str | None) -> bytes:
    return _data(
        {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": UPSTREAM_MODELS["openai"],
            "system_fingerprint": "fp_emulated01",
            "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}],
        }
    )


def upstream_frames(
    upstream: str, pieces: Sequence[str], prompt_tokens: int, request_id: str, created: int
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(frames before the text, one frame per piece of text, frames after it) as the
    upstream streams them and the server forwards them."""
    words = len(pieces)
    if upstream == "anthropic":
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_{request_id}",
                "type": "message",
                "role": "assistant",
                "model": UPSTREAM_MODELS["anthropic"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": prompt_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
        before = [
            _data(start),
            _data({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            _data({"type": "ping"}),
        ]
        text = [
            _data({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in pieces
        ]
        after = [
            _data({"type": "content_block_stop", "index": 0}),
            _data(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": words},
                }
            ),
            _data({"type": "message_stop"}),
        ]
        return before, text, after
    if upstream == "gemini":
        model = UPSTREAM_MODELS["gemini"]
        text = [
            _data(
                {
                    "candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
                    "modelVersion": model,
                }
            )
            for p in pieces
        ]
        last = {
            "candidates": [
                {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": words,
                "totalTokenCount": prompt_tokens + words,
            },
            "modelVersion": model,
        }
        return [], text, [_data(last)]
    before = [_openai(request_id, created, {"role": "assistant", "content": "", "refusal": None}, None)]
    text = [_openai(request_id, created, {"content": p}, None) for p in pieces]
    after = [_openai(request_id, created, {}, "stop"), b"data: [DONE]\n\n"]
    return before, text, after


def server_error_frame(text: str) -> bytes:
    """The server's own frame: `f"data: {json.dumps({'error': str(e)})}\\n\\n"`."""
    return f"data: {json.dumps({'error': text})}\n\n".encode()


def own_error_frame(name: str) -> bytes:
    return _data(upstream_own_error(name))
