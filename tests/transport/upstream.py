"""A loopback HTTP/1.1 upstream in the test's own event loop, misbehaving on request.

Real sockets on 127.0.0.1 (`asyncio.start_server`), so the transports under
test meet real connects, resets and keep-alive. The first path segment picks
the behaviour (`http://127.0.0.1:PORT/<mode>/chat/completions`), so one
deployment's `base_url` is one behaviour:

    ok     an OpenAI completion; with `"stream": true`, three SSE chunks and [DONE]
    hold   the same, once `release` is set
    close  the same, then the server closes the connection (no `Connection: close`)
    hangup no answer: the server reads the request and closes the connection
    reset  a head promising 1,000 bytes, 10 of them, then a TCP reset
    drip   a head sent one byte at a time, 50 ms apart (never finished within a test)
    stall  a stream's first chunk, then nothing until `release` is set

It counts what a pool test needs: connections accepted, open now, open at
most, and the request targets (absolute-form when it is a proxy's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

CONTENT = "hello from loopback"
CHUNKS = ("one ", "two ", "three")


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-loop",
            "object": "chat.completion",
            "model": "loop-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": CONTENT}, "finish_reason": "stop"}
            ],
        }
    ).encode()


def _event(text: str, finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _head(status: str, content_type: str, length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{framing}\r\n\r\n".encode()


def _chunked(piece: bytes) -> bytes:
    return f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


class Upstream:
    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.targets: list[str] = []
        self.release = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _held(self, reader: asyncio.StreamReader) -> bool:
        """Wait for `release`; False if the client hung up first."""
        released = asyncio.ensure_future(self.release.wait())
        hung_up = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait([released, hung_up], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (released, hung_up):
                waiting.cancel()
        return released.done() and not released.cancelled()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to end."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        length = next(
            (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0
        )
        body = json.loads(await reader.readexactly(length) or b"{}")
        self.targets.append(target)
        mode = urlsplit(target).path.strip("/").split("/")[0]
        stream = bool(body.get("stream"))
        if mode == "hold" and not await self._held(reader):
            return False
        if mode == "hangup":
            return False
        if mode == "reset":
            writer.write(_head("200 OK", "application/json", 1000) + b'{"choices"')
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if mode == "drip":
            for byte in b"HTTP/1.1 200 OK\r\n" + b"x-drip: " + b"z" * 400:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)
            return False
        if mode == "stall":
            writer.write(_head("200 OK", "text/event-stream", None) + _chunked(_event(CHUNKS[0])))
            await writer.drain()
            await self._held(reader)
            return False
        if stream:
            events = [_event(t) for t in CHUNKS[:-1]] + [_event(CHUNKS[-1], "stop"), b"data: [DONE]\n\n"]
            payload = b"".join(events)
            writer.write(_head("200 OK", "text/event-stream", len(payload)) + payload)
        else:
            payload = _completion()
            writer.write(_head("200 OK", "application/json", len(payload)) + payload)
        await writer.drain()
        return mode != "close"


async def until(condition: Callable[[], bool], tries: int = 500) -> bool:
    """Let the loop run (short sleeps, `tries` at most) until `condition` holds; whether it did."""
    for _ in range(tries):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
