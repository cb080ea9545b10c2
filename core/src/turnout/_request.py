"""A call's arguments, checked: the caller's mistakes are raised before anything is sent.

`router.chat(messages, model=..., timeout=..., deadline=..., extra_headers=...,
extra_body=..., metadata=..., **params)`: everything but the router's own
keywords goes into the body as given (no allow-list: a gateway's new
parameter works on the day it ships). A mistake here is the caller's, a
`TypeError` or `ValueError`, and never counts against a deployment's health.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen

from ._models import ChatRequest, Message

__all__ = ["CallOptions", "call_request"]

MessagesIn = Iterable[Message | Mapping[str, Any]]


@frozen
class CallOptions:
    """The router's own keywords of one call."""

    timeout: float | None = None
    deadline: float | None = None
    extra_headers: Mapping[str, str] | None = None


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number of seconds (got {value!r})")
    return float(value)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, not {type(value).__name__}")
    return value


def _headers(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    headers: dict[str, str] = {}
    for name, text in _mapping(value, "extra_headers").items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError("extra_headers must map header names to strings")
        if not name or any(not ("!" <= c <= "~") or c == ":" for c in name):
            raise ValueError(f"extra_headers: {name!r} is not a valid header name")
        if any(c in "\r\n\0" or not (" " <= c <= "~" or c == "\t") for c in text):
            raise ValueError(f"extra_headers[{name!r}] holds characters a header cannot carry")
        headers[name.lower()] = text
    return headers


def call_request(
    messages: MessagesIn,
    params: dict[str, Any],
    *,
    stream: bool,
    timeout: Any = None,
    deadline: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    metadata: Any = None,
) -> tuple[ChatRequest, CallOptions]:
    """The request and the router's options of one call, or the caller's mistake."""
    if "stream" in params:
        wanted = params.pop("stream")
        if wanted and not stream:
            raise ValueError("chat() does not stream: use router.stream(...) for a stream of chunks")
        if not wanted and stream:
            raise ValueError("stream() always streams: use router.chat(...) for one whole answer")
    request = ChatRequest(
        messages,
        params,
        extra_body=_mapping(extra_body, "extra_body"),
        metadata=_mapping(metadata, "metadata"),
    )
    options = CallOptions(
        _seconds(timeout, "timeout"), _seconds(deadline, "deadline"), _headers(extra_headers)
    )
    return request, options
