"""Reading answers: the pieces every codec needs, written once and never trusting a body.

Token counts under their several spellings, finish reasons in OpenAI's words,
message text, tool calls whole and in pieces. Each function takes parsed JSON
(anything at all) and returns a typed value, None for what is absent, or
raises `Malformed` for what is present but not what the gateway documents
(a codec turns that into `parse_error`: an answer is never quietly cut).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._models import ToolCall, ToolCallDelta, Usage

__all__ = [
    "FINISH_REASONS",
    "MAP",
    "Malformed",
    "count",
    "finish_reason",
    "text_of",
    "tool_call_deltas",
    "tool_calls",
    "usage_from",
]


class Malformed(ValueError):
    """A field is present but not of the documented shape."""


# Parsed JSON objects are dicts: checking `dict` first spares the slow ABC check of
# `Mapping` on the streaming hot path, and any other Mapping is still accepted.
MAP = (dict, Mapping)


# Every gateway's finish reasons in OpenAI's words (Anthropic, Gemini, legacy OpenAI).
FINISH_REASONS: Mapping[str, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
}


def finish_reason(value: Any) -> str | None:
    """`end_turn` is `stop`, `max_tokens` is `length`, ...; an unknown reason is kept as sent."""
    if type(value) is str and value in FINISH_REASONS:  # the common case, at once
        return FINISH_REASONS[value]
    if not isinstance(value, str) or not value:
        return None
    return FINISH_REASONS.get(value.lower()) or value


def count(value: Any) -> int | None:
    """A token count: a non-negative integer, else None (not reported)."""
    if (type(value) is int or (isinstance(value, int) and not isinstance(value, bool))) and value >= 0:
        return value
    return None


def _first(mapping: Mapping[str, Any], paths: tuple[tuple[str, tuple[str, ...]], ...]) -> int | None:
    for head, rest in paths:
        node: Any = mapping.get(head)
        if node is None:  # the common case for all but one spelling: at once
            continue
        for part in rest:
            node = node.get(part) if isinstance(node, MAP) else None
        if type(node) is int and node >= 0:
            return node
        found = count(node) if node is not None else None
        if found is not None:
            return found
    return None


def _paths(*dotted: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each dotted name as its first key and the keys below it."""
    return tuple((head, tuple(rest)) for head, *rest in (path.split(".") for path in dotted))


_PROMPT = _paths("prompt_tokens", "input_tokens", "promptTokenCount")
_COMPLETION = _paths("completion_tokens", "output_tokens", "candidatesTokenCount")
_TOTAL = _paths("total_tokens", "totalTokenCount")
_CACHED = _paths(
    "prompt_tokens_details.cached_tokens",
    "input_tokens_details.cached_tokens",
    "cache_read_input_tokens",
    "cachedContentTokenCount",
)
_REASONING = _paths(
    "completion_tokens_details.reasoning_tokens",
    "output_tokens_details.reasoning_tokens",
    "thoughtsTokenCount",
)


def usage_from(value: Any) -> Usage | None:
    """Token usage under OpenAI's, Anthropic's or Gemini's names; a count not reported
    is None (never 0); a total not reported is the sum when both parts are."""
    if value is None or not isinstance(value, MAP):
        return None
    prompt = _first(value, _PROMPT)
    completion = _first(value, _COMPLETION)
    total = _first(value, _TOTAL)
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if prompt is None and completion is None and total is None:
        return None
    return Usage(prompt, completion, total, _first(value, _CACHED), _first(value, _REASONING))


def text_of(content: Any) -> str | None:
    """Message content as text: a string, "" for null, or the text parts of a content
    list; None when it is none of those."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return None


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a string")
    return value


def tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls` (and the legacy `function_call`)."""
    found: list[ToolCall] = []
    calls = message.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise Malformed("tool_calls is not a list")
        for index, call in enumerate(calls):
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                raise Malformed(f"tool_calls[{index}] has no function")
            arguments = function.get("arguments", "")
            found.append(
                ToolCall(
                    _str(call.get("id", ""), f"tool_calls[{index}].id"),
                    _str(function.get("name"), f"tool_calls[{index}].function.name"),
                    _str(arguments, f"tool_calls[{index}].function.arguments"),
                )
            )
    legacy = message.get("function_call")
    if legacy is not None:
        if not isinstance(legacy, Mapping):
            raise Malformed("function_call is not an object")
        name = _str(legacy.get("name"), "function_call.name")
        found.append(ToolCall("", name, _str(legacy.get("arguments", ""), "function_call.arguments")))
    return tuple(found)


# No answer holds 2**63 tool calls: an index past that is a broken gateway's (and
# orjson, which reads stream events, would read one past 2**64 as a float).
_MAX_INDEX = 2**63


def tool_call_deltas(delta: Mapping[str, Any]) -> tuple[ToolCallDelta, ...]:
    """The tool-call pieces of one streamed delta (a hot path: one call per chunk)."""
    calls = delta.get("tool_calls")
    if calls is None:
        return ()
    if type(calls) is not list:
        raise Malformed("delta.tool_calls is not a list")
    found: list[ToolCallDelta] = []
    for position, call in enumerate(calls):
        if not isinstance(call, MAP):
            raise Malformed(f"delta.tool_calls[{position}] is not an object")
        index = call.get("index", position)
        if (type(index) is not int or index < 0) and count(index) is None:
            raise Malformed(f"delta.tool_calls[{position}].index is not a number")
        if index >= _MAX_INDEX:
            raise Malformed(f"delta.tool_calls[{position}].index is out of range")
        function = call.get("function") or {}
        if not isinstance(function, MAP):
            raise Malformed(f"delta.tool_calls[{position}].function is not an object")
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments") or ""
        if not (call_id is None or isinstance(call_id, str)) or not (name is None or isinstance(name, str)):
            raise Malformed(f"delta.tool_calls[{position}] has a non-string id or name")
        if not isinstance(arguments, str):
            raise Malformed("delta.tool_calls.function.arguments is not a string")
        found.append(ToolCallDelta(index, call_id, name, arguments))
    return tuple(found)
