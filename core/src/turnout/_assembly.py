"""A streamed answer put back together: what `stream.response` holds at the end.

Chunks bring text, refusal pieces, tool calls in pieces (by index: the id and
name first, the arguments a few characters at a time), a finish reason, usage
(sometimes in parts: Anthropic reports input tokens first and output tokens
last) and ids. `Assembly` keeps them and makes the one `ChatResponse` a chat
call would have returned, with the assistant message ready to append.
"""

from __future__ import annotations

from typing import Any

from ._models import ChatChunk, ChatResponse, ToolCall, Usage

__all__ = ["Assembly", "merge_usage"]


def merge_usage(old: Usage | None, new: Usage | None) -> Usage | None:
    """Counts reported later win; counts reported only earlier are kept."""
    if old is None or new is None:
        return new or old

    def pick(name: str) -> int | None:
        later: int | None = getattr(new, name)
        earlier: int | None = getattr(old, name)
        return later if later is not None else earlier

    prompt, completion = pick("prompt_tokens"), pick("completion_tokens")
    total = new.total_tokens
    if total is None or (prompt is not None and completion is not None and total < prompt + completion):
        total = prompt + completion if prompt is not None and completion is not None else old.total_tokens
    return Usage(prompt, completion, total, pick("cached_tokens"), pick("reasoning_tokens"))


class _Call:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class Assembly:
    """The chunks of one stream, kept to make its whole answer."""

    __slots__ = ("_calls", "_refusal", "finish_reason", "model", "request_id", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.request_id: str | None = None
        self.model: str | None = None

    def add(self, chunk: ChatChunk) -> None:
        """Keep one chunk (a hot path: once per chunk of every stream)."""
        if chunk.delta:
            self.text.append(chunk.delta)
        if chunk.refusal:
            self._refusal.append(chunk.refusal)
        if chunk.tool_calls:
            calls = self._calls
            for piece in chunk.tool_calls:
                call = calls.get(piece.index)
                if call is None:
                    call = calls[piece.index] = _Call()
                if not call.id:
                    call.id = piece.id
                if not call.name:
                    call.name = piece.name
                if piece.arguments:
                    call.arguments.append(piece.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = merge_usage(self.usage, chunk.usage)
        if not self.request_id:
            self.request_id = chunk.request_id
        if not self.model:
            self.model = chunk.model

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(call.id or "", call.name or "", "".join(call.arguments))
            for _, call in sorted(self._calls.items())
        )

    def response(self, headers: dict[str, str] | None = None) -> ChatResponse:
        content = "".join(self.text)
        refusal = "".join(self._refusal) or None
        calls = self.tool_calls()
        # As a gateway sends it: no text beside tool calls or a refusal is a null content.
        empty = not content and (calls or refusal is not None)
        message: dict[str, Any] = {"role": "assistant", "content": None if empty else content}
        if refusal is not None:
            message["refusal"] = refusal
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        return ChatResponse(
            content=content,
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            request_id=self.request_id,
            tool_calls=calls,
            refusal=refusal,
            message=message,
            headers=headers or {},
        )
