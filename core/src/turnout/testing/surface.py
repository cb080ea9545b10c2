"""The chat surface round-tripped through the emulator: what the kit sends and what
must come back. The answers follow `turnout.emulation`'s rules (the echo, one tool
call per declared tool with arguments made from its schema, structured output made
from the schema); an emulator built on `OpenAIEmulator` answers by them.

Each function returns the problems it found (empty: none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import turnout

from .kit import Kit, Outcome

__all__ = ["HELLO", "chat_and_stream", "content_parts", "echoing", "response_format", "tools"]

HELLO: Sequence[Mapping[str, Any]] = ({"role": "user", "content": "hello conformance kit"},)
ECHO = "echo: hello conformance kit"
# Never to be sent to a gateway: `metadata` is for observers and logs.
SENTINEL = "kit-metadata-5f1c09"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK: Sequence[Mapping[str, Any]] = ({"role": "user", "content": "Paris"},)

PARTS: Sequence[Mapping[str, Any]] = (
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ],
    },
)

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "forecast",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def echoing(key: str) -> dict[str, bytes]:
    """Error bodies that repeat the key they refused, in the shapes gateways use."""
    return {
        "openai envelope": json.dumps(
            {"error": {"message": f"Incorrect API key provided: {key}", "code": key, "param": key}}
        ).encode(),
        "detail": json.dumps({"detail": f"invalid key {key}", "message": key}).encode(),
        "plain text": f"401 Unauthorized: {key}".encode(),
    }


def _answered(outcome: Outcome, what: str) -> list[str]:
    if outcome.response is None:
        return [f"{what} failed: {outcome.kind()}"]
    return []


def _refused(kit: Kit, feature: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> list[str]:
    """A request needing what the provider does not carry is refused before sending."""
    outcome = kit.call(messages, **params)
    error = outcome.error
    if not isinstance(error, turnout.BadRequestError) or error.code != "unsupported_feature":
        return [f"without {feature!r} in its capabilities, the request ended in {outcome.kind()}"]
    problems = []
    if feature not in error.message:
        problems.append(f"the unsupported_feature error does not name {feature!r}: {error.message}")
    if kit.requests():
        problems.append(f"a request needing {feature!r} was sent anyway")
    return problems


def chat_and_stream(kit: Kit) -> list[str]:
    chat = kit.call(HELLO, metadata={"probe": SENTINEL}, extra_headers={"x-kit-probe": "on"})
    sent = kit.requests()
    problems = _answered(chat, "a chat")
    if chat.response is not None:
        response = chat.response
        if response.content != ECHO:
            problems.append(f"a chat answered {response.content!r}, not {ECHO!r}")
        if response.finish_reason != "stop":
            problems.append(f"a chat's finish_reason is {response.finish_reason!r}, not 'stop'")
        if (response.deployment, response.provider) != ("kit", kit.provider.name):
            problems.append(f"a chat is attributed to {(response.deployment, response.provider)}")
        if not isinstance(response.usage, turnout.Usage):
            problems.append(f"a chat's usage is {response.usage!r}")
        if [a.decision for a in response.attempts] != ["done"]:
            problems.append(f"a chat's attempts are {response.attempts!r}")
    if any(SENTINEL in r.body.decode("latin-1") + repr(r.headers) + repr(r.query) for r in sent):
        problems.append("the call's metadata was sent to the gateway")
    if not sent or sent[0].headers.get("x-kit-probe") != "on":
        problems.append("extra_headers did not reach the gateway")
    stream = kit.call(HELLO, stream=True)
    problems += _answered(stream, "a stream")
    if stream.response is not None:
        if stream.text != ECHO:
            problems.append(f"a stream's chunks are {stream.deltas!r}, not {ECHO!r}")
        if stream.response.content != stream.text:
            said = stream.response.content
            problems.append(f"a stream's response says {said!r}, its chunks {stream.text!r}")
        if stream.response.finish_reason != "stop":
            problems.append(f"a stream's finish_reason is {stream.response.finish_reason!r}, not 'stop'")
    asynchronous = kit.async_chat(HELLO)
    problems += _answered(asynchronous, "an async chat")
    if asynchronous.response is not None and asynchronous.response.content != ECHO:
        problems.append(f"an async chat answered {asynchronous.response.content!r}")
    return problems


def _calls(response: turnout.ChatResponse) -> list[tuple[str, Any]]:
    return [(call.name, json.loads(call.arguments or "null")) for call in response.tool_calls]


def tools(kit: Kit) -> list[str]:
    capabilities = kit.provider.capabilities
    if "tools" not in capabilities:
        return _refused(kit, "tools", ASK, tools=TOOLS)
    expected = [("get_weather", {"city": "Paris"})]
    chat = kit.call(ASK, tools=TOOLS)
    problems = _answered(chat, "a chat with tools")
    if chat.response is None:
        return problems
    try:
        if _calls(chat.response) != expected:
            problems.append(f"the tool calls are {_calls(chat.response)}, not {expected}")
    except ValueError:
        problems.append(f"tool call arguments are not JSON: {chat.response.tool_calls!r}")
    if chat.response.finish_reason != "tool_calls":
        problems.append(f"with tool calls the finish_reason is {chat.response.finish_reason!r}")
    if chat.response.tool_calls:
        loop = [
            *ASK,
            chat.response.message,
            {"role": "tool", "tool_call_id": chat.response.tool_calls[0].id, "content": "sunny"},
        ]
        follow = kit.call(loop, tools=TOOLS)
        problems += _answered(follow, "the tool loop's next call")
        if follow.response is not None and follow.response.content != "tool results: get_weather: sunny":
            problems.append(f"after a tool result the model answered {follow.response.content!r}")
    if "tool_streaming" not in capabilities:
        return problems + _refused(kit, "tool_streaming", ASK, stream=True, tools=TOOLS)
    stream = kit.call(ASK, stream=True, tools=TOOLS)
    problems += _answered(stream, "a stream with tools")
    if stream.response is not None and _calls(stream.response) != expected:
        problems.append(f"the streamed tool calls assemble to {_calls(stream.response)}, not {expected}")
    return problems


def content_parts(kit: Kit) -> list[str]:
    if "content_parts" not in kit.provider.capabilities:
        return _refused(kit, "content_parts", PARTS)
    chat = kit.call(PARTS)
    problems = _answered(chat, "a chat with an image part")
    expected = "echo: what is this? [image_url]"
    if chat.response is not None and chat.response.content != expected:
        problems.append(f"with content parts the model answered {chat.response.content!r}, not {expected!r}")
    return problems


def response_format(kit: Kit) -> list[str]:
    if "response_format" not in kit.provider.capabilities:
        return _refused(kit, "response_format", ASK, response_format=SCHEMA)
    chat = kit.call(ASK, response_format=SCHEMA)
    problems = _answered(chat, "a chat with a response_format")
    if chat.response is not None:
        try:
            value = json.loads(chat.response.content)
        except ValueError:
            value = None
        shaped = isinstance(value, dict) and isinstance(value.get("city"), str)
        if not (shaped and type(value.get("days")) is int):
            problems.append(f"a json_schema response_format gave {chat.response.content!r}")
    return problems
