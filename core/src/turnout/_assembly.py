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

__all__ = ["Assembly", "Text", "merge_usage"]


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


# Pieces of text are joined into the whole once they pass this size (and an eighth of
# the whole): often enough that the pieces never weigh much, seldom enough to cost
# nothing on ordinary streams (an answer under 64 KiB is joined once, at the end).
_FOLD = 64 * 1024


class Text:
    """A stream's text, kept so that the whole of it is never held twice.

    The pieces are joined now and then into one string, which is extended in
    place: CPython grows a string that only one name holds (`whole += more`)
    without copying it, so a text of `n` bytes peaks near `n`, not `2n`, even
    when it is asked for (`partial_text` of a broken stream, `stream.text`,
    `stream.response`): the caller gets the string itself. Where a string
    cannot grow in place (another implementation, a caller holding the text),
    joining makes a new one, as a plain join would."""

    __slots__ = ("_pieces", "_size", "_whole")

    def __init__(self) -> None:
        self._whole = ""
        self._pieces: list[str] = []
        self._size = 0

    def add(self, piece: str) -> None:
        self._pieces.append(piece)
        self._size += len(piece)
        if self._size > _FOLD and self._size * 8 > len(self._whole):
            self._fold()

    def _fold(self) -> None:
        whole = self._whole
        self._whole = ""  # the local is now its only holder: it can grow in place
        whole += "".join(self._pieces)
        self._whole = whole
        self._pieces.clear()
        self._size = 0

    def __str__(self) -> str:
        if self._pieces:
            self._fold()
        return self._whole


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
        self.text = Text()
        self._refusal: list[str] = []
        self._calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.request_id: str | None = None
        self.model: str | None = None

    def add(self, chunk: ChatChunk) -> None:
        """Keep one chunk (a hot path: once per chunk of every stream)."""
        if chunk.delta:
            self.text.add(chunk.delta)
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
        content = str(self.text)
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
