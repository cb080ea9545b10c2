"""The few ASGI steps the chat endpoint takes by hand: headers, a capped body, a
whole answer, and noticing that the client went away.

The chat endpoint is a plain ASGI callable rather than a Starlette endpoint so
that it controls exactly when the response starts (a stream's first chunk
decides between an HTTP error and a 200) and can watch for the client's
disconnect while the router works.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.types import Receive, Send

__all__ = ["TooLarge", "disconnected", "header", "read_body", "request_id", "send_whole"]

_PREFIX = "req_" + secrets.token_hex(6)
_COUNTER = itertools.count(1)
JSON = (b"content-type", b"application/json")


def request_id() -> str:
    """An id for one request (the `x-request-id` header): random per process, then a
    counter (unique without a syscall per request)."""
    return f"{_PREFIX}{next(_COUNTER):06x}"


def header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    """A request header's value (`name` lower-case, as ASGI gives names)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class TooLarge(Exception):
    """The request body is larger than `[server] max_body`."""


async def read_body(scope: MutableMapping[str, Any], receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when the client left first. Raises TooLarge past
    `limit` bytes, from the declared length before reading anything when it says so."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        piece = message.get("body", b"")
        if piece:
            size += len(piece)
            if size > limit:
                raise TooLarge
            parts.append(piece)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def disconnected(receive: Receive) -> None:
    """Returns once the client has gone away (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_whole(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, close: bool = False
) -> None:
    """A complete response in two messages; `close` ends the connection after it."""
    head = [JSON, (b"content-length", str(len(body)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
