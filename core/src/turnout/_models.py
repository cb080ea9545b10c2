"""The data model: frozen, slotted attrs classes that cross every boundary."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

if TYPE_CHECKING:
    from ._errors import Attempt
    from ._retry import NamedPolicy, RetryOverrides, RetryPolicy

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Deployment",
    "Message",
    "Secret",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]


@frozen(repr=False)
class Secret:
    """An API key. Its repr and str never show it; call `reveal()` to send it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def _to_secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def _to_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    # A read-only copy: a frozen deployment must not change under the router.
    return MappingProxyType(dict(value)) if value else _NOTHING


_MESSAGE_FIELDS = ("role", "content", "name")


@frozen
class Message:
    """One message of the conversation, carried verbatim.

    `content` is a string, a list of content parts (`text`, `image_url`,
    `input_audio`, `file`, ...) or None; `extra` holds every other field as
    given (an assistant's `tool_calls`, a tool message's `tool_call_id`,
    `refusal`, anything a gateway adds), and `to_wire()` gives it all back.
    """

    role: str
    content: Any = None
    name: str | None = None
    extra: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)
    # A message given without a `content` key is sent without one.
    has_content: bool = field(default=True, repr=False, eq=False)

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any], index: int = 0) -> Message:
        """A message from what a caller passed; a mistake is a TypeError or ValueError
        naming the message, raised before anything is sent."""
        if isinstance(value, Message):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"messages[{index}] must be a mapping such as {{'role': 'user', 'content': '...'}}, "
                f"not {type(value).__name__}"
            )
        role = value.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{index}] needs a string 'role' (got {role!r})")
        name = value.get("name")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"messages[{index}].name must be a string (got {type(name).__name__})")
        extra = {k: v for k, v in value.items() if k not in _MESSAGE_FIELDS}
        return cls(role, value.get("content"), name, extra, "content" in value)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"role": self.role}
        if self.has_content:
            wire["content"] = self.content
        if self.name is not None:
            wire["name"] = self.name
        wire.update(self.extra)
        return wire


# Call ids: a random prefix per process and a counter, unique without a syscall per call.
_CALL_PREFIX = secrets.token_hex(8) + "-"
_CALLS = itertools.count(1)


def _to_messages(value: Iterable[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            "messages must be a list of messages such as [{'role': 'user', 'content': 'Hi'}], "
            f"not {type(value).__name__}"
        )
    messages = tuple(Message.coerce(m, i) for i, m in enumerate(value))
    if not messages:
        raise ValueError("messages is empty: a call needs at least one message")
    return messages


@frozen
class ChatRequest:
    """What the caller asked for, independent of any gateway."""

    messages: tuple[Message, ...] = field(converter=_to_messages)
    # Chat parameters passed through to the gateway as given (temperature, tools, ...).
    params: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)
    # One id per logical call, the same on every retry and fallback of it: what
    # idempotency keys are made from.
    call_id: str = field(factory=lambda: f"{_CALL_PREFIX}{next(_CALLS):x}")
    # Merged into the JSON body as given (the caller's `extra_body`).
    extra_body: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)
    # Never sent to any gateway: handed to observers and log records.
    metadata: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)


@frozen
class Usage:
    """Token counts; a count the gateway did not report is None, never 0."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@frozen
class ToolCall:
    """One function call the model asked for; `arguments` is the JSON text as sent."""

    id: str
    name: str
    arguments: str


@frozen
class ToolCallDelta:
    """A piece of a streamed tool call: the call at `index` gets its id and name in
    its first piece, and its arguments piece by piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@frozen
class ChatResponse:
    """The whole answer: its text, tool calls and refusal, how it ended and what it cost,
    who answered, and every attempt the router made."""

    content: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    request_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: tuple[Attempt, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    # The assistant message as the gateway sent it, ready to append to the history.
    message: Mapping[str, Any] = field(factory=dict)
    # The parsed response body, as the gateway sent it (None for streams).
    raw: Any = None
    # The final response's headers, names lower-case.
    headers: Mapping[str, str] = field(factory=dict)

    def answered_by(self, deployment: str, provider: str, attempts: tuple[Attempt, ...]) -> ChatResponse:
        """This answer, naming who gave it and every attempt it took (on the hot path:
        built directly, not through `attrs.evolve`)."""
        return ChatResponse(
            self.content,
            self.finish_reason,
            self.usage,
            self.model,
            self.request_id,
            deployment,
            provider,
            attempts,
            self.tool_calls,
            self.refusal,
            self.message,
            self.raw,
            self.headers,
        )


@frozen
class ChatChunk:
    """One piece of a streamed answer."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None
    request_id: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    refusal: str | None = None
    model: str | None = None


@frozen(hash=False)
class Deployment:
    """One model on one gateway, with its own key and base URL."""

    name: str
    provider: str
    model: str
    api_key: Secret | None = field(default=None, converter=_to_secret)
    base_url: str | None = None
    weight: float = 1.0
    options: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)
    # Replaces (a RetryPolicy, or a named one: "patient" or NamedPolicy) or adjusts
    # (RetryOverrides) the provider's documented policy, and the router's, for this deployment.
    retry_policy: RetryPolicy | RetryOverrides | NamedPolicy | str | None = None
    # Prices per million input and output tokens, for the `lowest_cost` strategy.
    input_cost: float = 0.0
    output_cost: float = 0.0

    def key(self) -> str | None:
        return self.api_key.reveal() if self.api_key else None
