"""Message content on spans: off unless the user opts in.

The GenAI conventions say instrumentations SHOULD NOT capture content by
default and SHOULD let users opt in; the opt-in records the request's messages
and the answer on the attempt span, as the JSON of `gen_ai.input.messages` and
`gen_ai.output.messages` (the conventions' schemas: messages of `parts`). Only
text, tool calls and tool results are copied; any other content part (an
image, a file) is recorded by its type alone, never its data.

The switch is `OpenTelemetryObserver(capture_content=True)`, or the variable
the OpenTelemetry GenAI instrumentations read,
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (`true` / `span_only`
on; `false` / `no_content` / unset off). turnout-otel records content on spans
only: asking for events (`event_only`, `span_and_event`) is an error rather
than a silent half.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import turnout

__all__ = ["CAPTURE_ENV", "capture_from_env", "input_messages", "output_messages"]

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ON = frozenset({"true", "1", "yes", "span_only"})
_OFF = frozenset({"", "false", "0", "no", "no_content"})


def capture_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment opts in to content capture; a value turnout-otel does
    not know (or cannot honour) is a ValueError naming the variable."""
    value = environ.get(CAPTURE_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"{CAPTURE_ENV}={environ[CAPTURE_ENV]!r}: turnout-otel records content on spans only; "
        "use true / span_only (on) or false / no_content (off)"
    )


def input_messages(messages: Iterable[turnout.Message]) -> str:
    """`gen_ai.input.messages`: the request's messages, in order, as JSON."""
    return _json([_message(m.role, m.content, m.name, m.extra) for m in messages])


def output_messages(response: turnout.ChatResponse) -> str:
    """`gen_ai.output.messages`: the answer (one choice), as JSON."""
    parts: list[dict[str, Any]] = []
    if response.content:
        parts.append({"type": "text", "content": response.content})
    parts += [
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": _arguments(call.arguments)}
        for call in response.tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if response.finish_reason is not None:
        message["finish_reason"] = response.finish_reason
    return _json([message])


def _message(role: str, content: Any, name: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]]
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": extra.get("tool_call_id"), "response": _text(content)}]
    else:
        parts = _parts(content)
        for call in extra.get("tool_calls") or ():
            if isinstance(call, Mapping):
                function = call.get("function")
                function = function if isinstance(function, Mapping) else {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": _arguments(function.get("arguments")),
                    }
                )
    message: dict[str, Any] = {"role": role, "parts": parts}
    if name is not None:
        message["name"] = name
    return message


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "content": part["text"]})
        else:  # an image, audio, a file: its kind only, never its data
            parts.append({"type": str(kind)})
    return parts


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["content"] for p in _parts(content) if p["type"] == "text")


def _arguments(arguments: Any) -> Any:
    """The conventions want arguments as an object: the JSON text parsed when it parses."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
