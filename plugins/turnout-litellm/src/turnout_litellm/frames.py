"""The frames of SaaS-LiteLLM's streams: the upstream's own JSON, passed on verbatim.

The server forwards each `data:` line of the upstream's stream as it came
(dropping `event:` lines), so a stream of an Anthropic-backed alias is
Anthropic's framing (`message_start`, `content_block_delta`, ...,
`message_delta`, `message_stop`), a Gemini one is `candidates` objects, and an
OpenAI one is `chat.completion.chunk`s ending in `[DONE]` (read by the
OpenAI codec itself). Token usage comes in parts: Anthropic reports the input
tokens in `message_start` and the output tokens in `message_delta`; the
router's assembly merges the parts field by field.

A usage-only chunk (Anthropic's `message_start`) is held back until the next
chunk (`hold_usage`): a chunk that reached the caller commits the stream to
its deployment, and a count of input tokens is no reason to give up falling
back when the upstream fails before its first word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import evolve

from turnout import ChatChunk, Emit, Flow, Usage, finish_reason, text_of, usage_from

__all__ = ["anthropic_chunk", "gemini_chunk", "hold_usage"]


def _input_usage(message: Any) -> Usage | None:
    """`message_start`'s usage: the input tokens (and the cache's); its `output_tokens`
    is a placeholder (1) until `message_delta` reports the real count."""
    usage = usage_from(message.get("usage")) if isinstance(message, Mapping) else None
    if usage is None or usage.prompt_tokens is None:
        return None
    return Usage(usage.prompt_tokens, cached_tokens=usage.cached_tokens)


def anthropic_chunk(payload: Mapping[str, Any]) -> ChatChunk | None:
    """An Anthropic event: text from `content_block_delta`, usage from `message_start`
    and `message_delta`, the finish reason (in OpenAI's words) from `message_delta`."""
    kind = payload.get("type")
    if kind == "content_block_delta":
        delta = payload.get("delta")
        text = delta.get("text") if isinstance(delta, Mapping) else None
        return ChatChunk(text) if isinstance(text, str) and text else None
    if kind == "message_start":
        usage = _input_usage(payload.get("message"))
        return None if usage is None else ChatChunk("", None, usage)
    if kind == "message_delta":
        delta = payload.get("delta")
        finish = finish_reason(delta.get("stop_reason")) if isinstance(delta, Mapping) else None
        usage = usage_from(payload.get("usage"))
        if finish is None and usage is None:
            return None
        return ChatChunk("", finish, usage)
    return None


def gemini_chunk(payload: Mapping[str, Any]) -> ChatChunk | None:
    """A Gemini `candidates` object: its text parts, finish reason and usage."""
    candidates = payload.get("candidates")
    if not isinstance(candidates, list):
        return None
    text = ""
    finish = None
    first = candidates[0] if candidates else None
    if isinstance(first, Mapping):
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        if isinstance(parts, list):
            text = text_of(parts) or ""
        finish = finish_reason(first.get("finishReason"))
    usage = usage_from(payload.get("usageMetadata"))
    if not text and finish is None and usage is None:
        return None
    model = payload.get("modelVersion")
    return ChatChunk(text, finish, usage, model=model if isinstance(model, str) else None)


def _usage_only(chunk: ChatChunk) -> bool:
    return (
        chunk.usage is not None
        and not chunk.delta
        and chunk.finish_reason is None
        and not chunk.tool_calls
        and chunk.refusal is None
    )


def _release(chunk: ChatChunk, held: ChatChunk | None) -> tuple[list[Emit], ChatChunk | None]:
    """What to emit for `chunk` while `held` waits, and what waits after."""
    if _usage_only(chunk):
        return ([Emit(held)] if held is not None else []), chunk
    if held is None:
        return [Emit(chunk)], None
    if chunk.usage is None:
        return [Emit(evolve(chunk, usage=held.usage))], None
    return [Emit(held), Emit(chunk)], None


def hold_usage(inner: Flow[None]) -> Flow[None]:
    """`inner`, with each usage-only chunk held back and given to the next chunk (or
    emitted at the end). Results, failures and abandonment go on to `inner`, so its
    own `try`/`finally` runs."""
    held: ChatChunk | None = None
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            command = inner.send(value) if failure is None else inner.throw(failure)
        except StopIteration:
            break
        value, failure = None, None
        out: list[Any] = [command]
        if isinstance(command, Emit):
            out, held = _release(command.chunk, held)
        for each in out:
            try:
                value = yield each
            except BaseException as exc:  # handed on to the inner flow
                failure = exc
                break
    if held is not None:
        yield Emit(held)
