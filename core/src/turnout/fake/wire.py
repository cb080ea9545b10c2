"""The fake gateways' side of ASGI: reading a request body, writing a reply whole
or chunk by chunk, and cutting the connection mid-body when a fault says so.

uvicorn closes a connection whose application raises mid-body, so a planned
drop is an exception (`Dropped`), kept out of uvicorn's log by `quiet_drops`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from turnout.emulation import EmulatedResponse, Fault

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Send

__all__ = ["Dropped", "quiet_drops", "read_body", "send_json", "send_reply"]


class Dropped(Exception):
    """Raised inside the ASGI send loop: uvicorn closes the connection mid-body."""


class _QuietDrops(logging.Filter):
    """uvicorn logs every exception an app raises; a planned drop is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        return not (info and isinstance(info[1], Dropped))


quiet_drops = _QuietDrops()


async def read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Any) -> None:
    reply = EmulatedResponse.json(status, payload)
    await send_reply(send, reply, None, 0.0)


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_reply(send: Send, reply: EmulatedResponse, fault: Fault | None, chunk_delay: float) -> None:
    """Write a reply: the whole body, or chunk by chunk (chunked transfer-encoding),
    raising mid-body to cut the connection when the reply says so."""
    latency = fault.latency if fault is not None else 0.0
    first_byte = fault.first_byte_delay if fault is not None else 0.0
    if latency:
        await asyncio.sleep(latency)
    headers: Sequence[tuple[str, str]] = reply.headers
    if reply.chunks is None:
        headers = [*headers, ("content-length", str(len(reply.body)))]
    await send({"type": "http.response.start", "status": reply.status, "headers": _encode_headers(headers)})
    if first_byte:
        await asyncio.sleep(first_byte)
    if reply.chunks is None:
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        return
    chunks, drop_after = reply.chunks, reply.drop_after
    for index, chunk in enumerate(chunks):
        if drop_after is not None and index >= drop_after:
            raise Dropped(f"connection dropped after {drop_after} chunks")
        if index and chunk_delay:
            await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if drop_after is not None and drop_after >= len(chunks):
        raise Dropped(f"connection dropped after {drop_after} chunks")
    await send({"type": "http.response.body", "body": b"", "more_body": False})
