"""What an emulated OpenAI-compatible model answers: deterministic, so tests can assert it.

`OpenAIEmulator` (turnout.emulation) renders these answers in each gateway's
wire format; this module only decides them, from the request body, by these
rules (the first that applies wins):

1. **Checks**, as OpenAI makes them (a 400 naming the parameter): every
   message is an object with a known `role`; content is a string, null or a
   list of parts, each part an object with a string `type` (a `text` part
   has a string `text`, an `image_url` part an `image_url.url`); a `tool`
   message's `tool_call_id` names a call of an earlier assistant message;
   `tools` are `{"type": "function", "function": {"name", ...}}`; a
   `tool_choice` naming a function names a declared one; `response_format`
   is `text`, `json_object` or `json_schema` (with `json_schema.name` and
   `json_schema.schema`).
2. **After tool results** (the conversation ends with `tool` messages): the
   text `tool results: NAME: CONTENT; NAME: CONTENT`, one entry per trailing
   tool message, NAME being the function its `tool_call_id` answers.
3. **A refusal**, when the last user text starts with `refuse:`: content
   null, `refusal` = `REFUSAL`, finish_reason `stop`.
4. **Tool calls**, when `tools` are declared and `tool_choice` is not
   `"none"`: one call per declared tool, in order, at most two (one when
   `parallel_tool_calls` is false; the named one when `tool_choice` names
   one); content null, finish_reason `tool_calls`. Call `i` has the id
   `call_<request id>_<i>` and, as arguments, compact JSON made from the
   function's `parameters` schema (see `example_value`), strings being the
   last user text.
5. **Structured output**: `json_object` gives `{"echo": TEXT}`,
   `json_schema` an instance of the schema (`example_value`), as compact JSON.
6. **Otherwise the echo**: `echo: TEXT`, TEXT being the last message's text
   (a content list's parts joined by spaces, a part other than text written
   `[TYPE]`, e.g. `echo: what is this? [image_url]`). `max_completion_tokens`
   (or `max_tokens`) cuts it to that many words (finish_reason `length`);
   a `stop` string cuts it before the first occurrence.

Usage, as OpenAI reports it (details included): prompt tokens are 3 per
message plus the words of every message's text; completion tokens are the
pieces the answer streams in (words of text, pieces of tool-call arguments)
plus reasoning tokens; `reasoning_tokens` is `REASONING_TOKENS` when the
request sets `reasoning_effort`, else 0; `cached_tokens` is the whole prompt
when the request's `prompt_cache_key` was seen before by this emulator, else 0.

Streams send text a word per chunk, a refusal likewise, and each tool call
as a first piece with its id and name (and empty arguments) followed by its
arguments in pieces of `ARGUMENT_PIECE` characters, calls one after the
other, as OpenAI's gateways do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

__all__ = [
    "ARGUMENT_PIECE",
    "MAX_TOOL_CALLS",
    "REASONING_TOKENS",
    "REFUSAL",
    "Answer",
    "EmulatedCall",
    "Invalid",
    "answer",
    "example_value",
    "last_text",
    "text_of_content",
    "words",
]

REFUSAL = "I'm sorry, but I can't help with that request."
REASONING_TOKENS = 16
MAX_TOOL_CALLS = 2
ARGUMENT_PIECE = 8
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_FORMATS = ("text", "json_object", "json_schema")


class Invalid(ValueError):
    """The request is not one OpenAI accepts: a 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@frozen
class EmulatedCall:
    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def pieces(self) -> list[str]:
        """The arguments as a stream sends them."""
        text = self.arguments
        return [text[i : i + ARGUMENT_PIECE] for i in range(0, len(text), ARGUMENT_PIECE)]


@frozen
class Answer:
    """One decided answer, before any wire format."""

    content: str | None
    finish_reason: str
    usage: Mapping[str, Any]
    refusal: str | None = None
    tool_calls: tuple[EmulatedCall, ...] = ()
    # The content as a stream sends it (words), when there is content.
    pieces: tuple[str, ...] = field(factory=tuple)

    def message(self) -> dict[str, Any]:
        """The assistant message of a whole completion."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": self.refusal}
        if self.tool_calls:
            message["tool_calls"] = [call.wire() for call in self.tool_calls]
        return message


# -- reading the request ---------------------------------------------------------


def text_of_content(content: Any) -> str:
    """A message's text: a string as is; a content list's parts joined by spaces, a part
    other than text written `[TYPE]`."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    shown = []
    for part in content:
        if isinstance(part, Mapping):
            kind = part.get("type")
            shown.append(
                part["text"] if kind == "text" and isinstance(part.get("text"), str) else f"[{kind}]"
            )
    return " ".join(shown)


def last_text(messages: Any) -> str:
    """The text of the last message that has some (string content or content parts)."""
    found = ""
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping) and isinstance(message.get("content"), str | list):
                found = text_of_content(message["content"])
    return found


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return text_of_content(message.get("content"))
    return ""


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise Invalid(f"Invalid type for '{where}': expected an object with a 'type'.", where)
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise Invalid(f"Missing required parameter: '{where}.text'.", f"{where}.text")
    if part["type"] == "image_url":
        image = part.get("image_url")
        if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
            raise Invalid(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url.url")


def _call_fields(call: Any) -> tuple[str | None, str | None]:
    """The id and function name of an assistant's tool call, None where it has none."""
    if not isinstance(call, Mapping):
        return None, None
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("arguments"), str):
        return None, None
    call_id, name = call.get("id"), function.get("name")
    return (call_id if isinstance(call_id, str) else None), (name if isinstance(name, str) else None)


def _check_messages(messages: list[Any]) -> dict[str, str]:
    """Check the messages; the function name of every tool call made so far, by id."""
    calls: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise Invalid(f"Invalid type for '{where}': expected an object.", where)
        role = message.get("role")
        if role not in ROLES:
            raise Invalid(f"Invalid value for '{where}.role': {role!r} is not a known role.", f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            for number, part in enumerate(content):
                _check_part(part, f"{where}.content[{number}]")
        elif content is not None and not isinstance(content, str):
            raise Invalid(f"Invalid type for '{where}.content': expected a string or an array.", where)
        made = message.get("tool_calls")
        if made is not None and not isinstance(made, list):
            raise Invalid(f"Invalid type for '{where}.tool_calls': expected an array.", f"{where}.tool_calls")
        for number, call in enumerate(made or ()):
            call_id, name = _call_fields(call)
            if call_id is None or name is None:
                raise Invalid(
                    f"Invalid value for '{where}.tool_calls[{number}]': expected "
                    "{'id', 'type': 'function', 'function': {'name', 'arguments'}}.",
                    f"{where}.tool_calls",
                )
            calls[call_id] = name
        if role == "tool" and message.get("tool_call_id") not in calls:
            raise Invalid(
                "Invalid parameter: messages with role 'tool' must be a response to a preceding "
                "message with 'tool_calls'.",
                f"{where}.tool_call_id",
            )
    return calls


def _declared_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Invalid("Invalid type for 'tools': expected an array.", "tools")
    functions = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise Invalid(f"Invalid value for 'tools[{index}]': expected a function tool.", f"tools[{index}]")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise Invalid(f"Missing required parameter: 'tools[{index}].function.name'.", f"tools[{index}]")
        functions.append(function)
    return functions


def _chosen(body: Mapping[str, Any], functions: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The functions the model calls (none: it answers in text)."""
    choice = body.get("tool_choice", "auto")
    if choice == "none" or not functions:
        return []
    if isinstance(choice, Mapping):
        named = choice.get("function")
        name = named.get("name") if isinstance(named, Mapping) else None
        found = [f for f in functions if f["name"] == name]
        if not found:
            raise Invalid(f"Invalid value for 'tool_choice': no function named {name!r}.", "tool_choice")
        return found[:1]
    if choice not in ("auto", "required"):
        raise Invalid(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
    return functions[: 1 if body.get("parallel_tool_calls") is False else MAX_TOOL_CALLS]


def _response_format(body: Mapping[str, Any]) -> tuple[str, Any]:
    value = body.get("response_format")
    if value is None:
        return "text", None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind not in _FORMATS:
        raise Invalid(f"Invalid value for 'response_format.type': {kind!r}.", "response_format.type")
    if kind != "json_schema":
        return str(kind), None
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise Invalid("Missing required parameter: 'response_format.json_schema.name'.", "response_format")
    if not isinstance(spec.get("schema"), Mapping):
        raise Invalid("Missing required parameter: 'response_format.json_schema.schema'.", "response_format")
    return kind, spec["schema"]


# -- making the answer -----------------------------------------------------------


def example_value(schema: Any, text: str) -> Any:
    """An instance of a JSON schema: `const`, else the first `enum` value, else by type
    (the first of a list of types that is not null): string `text`, integer 1, number
    1.5, boolean true, array one item, object every property in order, else null."""
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and isinstance(schema.get("properties"), Mapping):
        kind = "object"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {str(name): example_value(sub, text) for name, sub in properties.items()}
    if kind == "array":
        return [example_value(schema.get("items"), text)] if isinstance(schema.get("items"), Mapping) else []
    return {"string": text, "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def words(text: str) -> list[str]:
    """Text as a stream sends it: a word per piece, each with its following space."""
    parts = text.split(" ")
    return [piece for piece in [p + " " for p in parts[:-1]] + [parts[-1]] if piece]


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(3 + len(text_of_content(m.get("content")).split()) for m in messages if isinstance(m, Mapping))


def _limit(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _cut(text: str, body: Mapping[str, Any]) -> tuple[list[str], str]:
    """The echo's words and finish reason, after `stop` and the token limit."""
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []:
        if isinstance(stop, str) and stop and stop in text:
            text = text[: text.index(stop)]
    pieces = words(text) if text else []
    limit = _limit(body)
    if limit is not None and len(pieces) > limit:
        return pieces[:limit], "length"
    return pieces, "stop"


def _usage(body: Mapping[str, Any], messages: list[Any], pieces: int, cached: bool) -> dict[str, Any]:
    prompt = _prompt_tokens(messages)
    reasoning = REASONING_TOKENS if body.get("reasoning_effort") is not None else 0
    completion = pieces + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt if cached else 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def answer(body: Mapping[str, Any], request_id: str, *, cached: bool = False) -> Answer:
    """The answer to a chat request body (whose `messages` is a list), or `Invalid`.
    `cached`: the request's `prompt_cache_key` was seen before."""
    messages: list[Any] = body["messages"]
    calls = _check_messages(messages)
    functions = _declared_tools(body)
    chosen = _chosen(body, functions)
    form, schema = _response_format(body)
    user = _last_user_text(messages)

    def made(content: str | None, pieces: Sequence[str], finish: str, **kw: Any) -> Answer:
        count = len(pieces) + sum(len(c.pieces()) for c in kw.get("tool_calls", ()))
        count += len(words(kw["refusal"])) if kw.get("refusal") else 0
        return Answer(content, finish, _usage(body, messages, count, cached), pieces=tuple(pieces), **kw)

    trailing = []
    for message in reversed(messages):
        if not (isinstance(message, Mapping) and message.get("role") == "tool"):
            break
        trailing.append(message)
    if trailing:
        results = "; ".join(
            f"{calls[m['tool_call_id']]}: {text_of_content(m.get('content'))}" for m in reversed(trailing)
        )
        text = f"tool results: {results}"
        return made(text, words(text), "stop")
    if user.startswith("refuse:"):
        return made(None, (), "stop", refusal=REFUSAL)
    if chosen:
        made_calls = tuple(
            EmulatedCall(
                f"call_{request_id}_{index}",
                function["name"],
                _compact(example_value(function.get("parameters") or {"type": "object"}, user)),
            )
            for index, function in enumerate(chosen)
        )
        return made(None, (), "tool_calls", tool_calls=made_calls)
    if form == "json_object":
        text = _compact({"echo": user})
        return made(text, words(text), "stop")
    if form == "json_schema":
        text = _compact(example_value(schema, user))
        return made(text, words(text), "stop")
    pieces, finish = _cut(f"echo: {last_text(messages)}", body)
    return made("".join(pieces), pieces, finish)
