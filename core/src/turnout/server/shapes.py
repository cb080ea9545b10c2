"""turnout's answers in OpenAI's wire shapes: `chat.completion` from a `ChatResponse`,
`chat.completion.chunk` from a `ChatChunk`, and the request body read back into
a router call.

Pure functions of their inputs (no I/O, no clock): the app passes the time and
ids in. The request side has no allow-list: every field other than `model`,
`messages` and `stream` is a chat parameter sent as given, so a gateway's new
parameter works through the server on the day it ships. Two things a
`ChatResponse` cannot carry are refused rather than silently dropped: `n`
above 1 (one choice per answer) and `logprobs` on a stream (chunks carry no
log probabilities).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from turnout._models import ChatChunk, ChatResponse, ToolCall, ToolCallDelta, Usage

__all__ = ["DONE", "BadInput", "CallArgs", "ChunkWriter", "completion", "dumps", "usage"]

# The router's own keywords: a body field of the same name is a chat parameter for the
# gateway (OpenAI's `metadata`, say), so it travels in `extra_body`, merged as given.
_ROUTER_KEYWORDS = frozenset({"timeout", "deadline", "extra_headers", "extra_body", "metadata"})
_OWN = frozenset({"model", "messages", "stream"})


class BadInput(ValueError):
    """A request body the server cannot turn into a call; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@frozen
class CallArgs:
    """One `POST /v1/chat/completions` body as a router call."""

    model: str | None
    messages: Any
    stream: bool
    params: dict[str, Any]
    extra_body: dict[str, Any]
    include_usage: bool

    @classmethod
    def parse(cls, payload: Any) -> CallArgs:
        if not isinstance(payload, dict):
            raise BadInput("the request body must be a JSON object")
        model = payload.get("model")
        if model is not None and not isinstance(model, str):
            raise BadInput("model must be a string: a route or deployment name", "model")
        stream = payload.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise BadInput("stream must be true or false", "stream")
        n = payload.get("n")
        if n is not None and n != 1:
            raise BadInput("n must be 1: turnout serve answers with one choice", "n")
        if stream and payload.get("logprobs"):
            raise BadInput(
                "logprobs cannot be streamed through turnout serve (ask without stream)", "logprobs"
            )
        params: dict[str, Any] = {}
        extra_body: dict[str, Any] = {}
        for key, value in payload.items():
            if key in _OWN:
                continue
            (extra_body if key in _ROUTER_KEYWORDS else params)[key] = value
        options = payload.get("stream_options")
        include_usage = stream and isinstance(options, Mapping) and options.get("include_usage") is True
        # `messages` goes to the router as given: its own checks name the mistake.
        return cls(model, payload.get("messages"), stream, params, extra_body, include_usage)


def usage(value: Usage | None) -> dict[str, Any] | None:
    """OpenAI's usage object; a count the gateway did not report stays null."""
    if value is None:
        return None
    out: dict[str, Any] = {
        "prompt_tokens": value.prompt_tokens,
        "completion_tokens": value.completion_tokens,
        "total_tokens": value.total_tokens,
    }
    if value.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": value.cached_tokens}
    if value.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": value.reasoning_tokens}
    return out


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _message(response: ChatResponse) -> dict[str, Any]:
    # What the gateway sent beyond the common fields (annotations, audio, reasoning...)
    # stays; the common ones are turnout's normalized reading of it.
    message = dict(response.message) if isinstance(response.message, Mapping) else {}
    answered = bool(response.tool_calls) or response.refusal is not None
    message["role"] = "assistant"
    message["content"] = response.content if response.content or not answered else None
    message["refusal"] = response.refusal
    if response.tool_calls:
        message["tool_calls"] = [_tool_call(call) for call in response.tool_calls]
    else:
        message.pop("tool_calls", None)
    return message


def completion(
    response: ChatResponse, *, fallback_id: str, model: str | None, created: int
) -> dict[str, Any]:
    """A whole answer as a `chat.completion` object."""
    raw = response.raw if isinstance(response.raw, Mapping) else {}
    choices = raw.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    body: dict[str, Any] = {
        "id": response.request_id or fallback_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model or model,
        "choices": [
            {
                "index": 0,
                "message": _message(response),
                "logprobs": first.get("logprobs"),
                "finish_reason": response.finish_reason,
            }
        ],
    }
    found = usage(response.usage)
    if found is not None:
        body["usage"] = found
    fingerprint = raw.get("system_fingerprint")
    if isinstance(fingerprint, str):
        body["system_fingerprint"] = fingerprint
    return body


def _tool_delta(delta: ToolCallDelta) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": delta.arguments}
    out: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        out["id"] = delta.id
        out["type"] = "function"
    if delta.name is not None:
        function["name"] = delta.name
    out["function"] = function
    return out


class ChunkWriter:
    """A stream's chunks as SSE events of `chat.completion.chunk` objects, all with one
    id, creation time and model (the first chunk's), as OpenAI sends them."""

    def __init__(self, *, fallback_id: str, model: str | None, created: int, include_usage: bool) -> None:
        self.fallback_id = fallback_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._head: bytes | None = None
        self._first = True

    def _prefix(self, chunk: ChatChunk | None) -> bytes:
        if self._head is None:
            chunk_id = (chunk.request_id if chunk is not None else None) or self.fallback_id
            model = (chunk.model if chunk is not None else None) or self.model
            head = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
            }
            # The fixed fields, serialized once: `{"id":...,"model":...` without the closing brace.
            self._head = b"data: " + dumps(head)[:-1]
        return self._head

    def event(self, chunk: ChatChunk) -> bytes | None:
        """The event for one chunk, or None when it carries nothing to show (a chunk of
        usage alone: it goes in the final usage chunk, if asked for)."""
        delta: dict[str, Any] = {}
        if self._first:
            delta["role"] = "assistant"
            delta["content"] = chunk.delta if chunk.delta or not chunk.tool_calls else None
        elif chunk.delta:
            delta["content"] = chunk.delta
        if chunk.refusal is not None:
            delta["refusal"] = chunk.refusal
        if chunk.tool_calls:
            delta["tool_calls"] = [_tool_delta(d) for d in chunk.tool_calls]
        if not delta and chunk.finish_reason is None:
            return None
        self._first = False
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": chunk.finish_reason}
        tail: dict[str, Any] = {"choices": [choice]}
        if self.include_usage:
            tail["usage"] = None
        return self._prefix(chunk) + b"," + dumps(tail)[1:] + b"\n\n"

    def usage_event(self, value: Usage | None) -> bytes:
        """The last chunk `stream_options.include_usage` asks for: no choices, the usage."""
        return self._prefix(None) + b"," + dumps({"choices": [], "usage": usage(value)})[1:] + b"\n\n"


DONE = b"data: [DONE]\n\n"


def dumps(value: Any) -> bytes:
    """JSON as the server sends it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
