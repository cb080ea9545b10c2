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
    from ._retry import RetryOverrides, RetryPolicy

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Deployment",
    "Message",
    "Secret",
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


def _to_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    # A read-only copy: a frozen deployment must not change under the router.
    return MappingProxyType(dict(value or {}))


@frozen
class Message:
    role: str
    content: str
    name: str | None = None

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any]) -> Message:
        if isinstance(value, Message):
            return value
        content = value.get("content")
        return cls(
            role=str(value.get("role", "user")),
            content="" if content is None else str(content),
            name=value.get("name"),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            wire["name"] = self.name
        return wire


# Call ids: a random prefix per process and a counter, unique without a syscall per call.
_CALL_PREFIX = secrets.token_hex(8) + "-"
_CALLS = itertools.count(1)


def _to_messages(value: Iterable[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    return tuple(Message.coerce(m) for m in value)


@frozen
class ChatRequest:
    """What the caller asked for, independent of any gateway."""

    messages: tuple[Message, ...] = field(converter=_to_messages)
    # Sampling parameters passed through to the gateway (temperature, max_tokens, ...).
    params: Mapping[str, Any] = field(factory=dict, converter=_to_mapping)
    # One id per logical call, the same on every retry and fallback of it: what
    # idempotency keys are made from.
    call_id: str = field(factory=lambda: f"{_CALL_PREFIX}{next(_CALLS):x}")


@frozen
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@frozen
class ChatResponse:
    content: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    request_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: tuple[Attempt, ...] = ()


@frozen
class ChatChunk:
    """One piece of a streamed answer."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None
    request_id: str | None = None


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
    # Replaces (a RetryPolicy) or adjusts (RetryOverrides) the provider's documented
    # policy, and the router's, for this deployment.
    retry_policy: RetryPolicy | RetryOverrides | None = None
    # Prices per million input and output tokens, for the `lowest_cost` strategy.
    input_cost: float = 0.0
    output_cost: float = 0.0

    def key(self) -> str | None:
        return self.api_key.reveal() if self.api_key else None
