"""A router stream as a server-sent event stream, OpenAI's way.

The response starts only with the first chunk: until then the router may still
retry and fall back, and a call that fails before any chunk gets a real HTTP
error (raised out of `run` for the endpoint to answer). After it, a failure
is one `data: {"error": ...}` frame and the stream ends without `[DONE]`, as
OpenAI ends a stream that broke. `stream_options.include_usage` adds the
final chunk with no choices and the usage of the whole answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import define, field

from turnout._errors import NoHealthyDeploymentError, ProviderError
from turnout._models import ChatChunk

from .shapes import DONE, ChunkWriter

if TYPE_CHECKING:
    from starlette.types import Send

    from turnout._stream import AsyncStream

    from .errors import Reply

__all__ = ["SSE_HEADERS", "Coalescer", "StreamPump"]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies (nginx) must pass each event on as it comes.
    (b"x-accel-buffering", b"no"),
]


@define(eq=False)
class StreamPump:
    """Sends one stream's events; `started` tells whether the 200 went out."""

    stream: AsyncStream
    writer: ChunkWriter
    send: Send
    headers: list[tuple[bytes, bytes]]
    on_error: Callable[[Exception], Reply] = field(kw_only=True)
    started: bool = field(default=False, init=False)
    first_chunk: float | None = field(default=None, init=False)
    # The error that ended a stream already begun (its frame is sent).
    failed: Exception | None = field(default=None, init=False)

    async def run(self) -> None:
        """The whole stream. An error before the first chunk is raised; the stream is
        closed however this ends (cancelled included: the call is abandoned)."""
        stream, send, writer = self.stream, self.send, self.writer
        began = time.monotonic()
        try:
            try:
                first: ChatChunk | None = await anext(stream)
            except StopAsyncIteration:
                first = None
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            self.started = True
            self.first_chunk = time.monotonic() - began
            if first is None:
                # A stream that ended with no chunk at all: the role, and how it ended.
                response = stream.response
                first = ChatChunk("", response.finish_reason if response is not None else None)
            out = Coalescer(send)
            try:
                try:
                    out.add(writer.event(first))
                    async for chunk in stream:
                        out.add(writer.event(chunk))
                except (ProviderError, NoHealthyDeploymentError) as error:
                    self.failed = error
                    await out.end(self.on_error(error).frame())
                    return
                last = DONE
                if writer.include_usage:
                    response = stream.response
                    last = writer.usage_event(response.usage if response is not None else None) + DONE
                await out.end(last)
            finally:
                await out.close()
        finally:
            await stream.aclose()

    async def frame(self, reply: Reply) -> None:
        """One error frame, and the end of the response (no `[DONE]`)."""
        await self.send({"type": "http.response.body", "body": reply.frame()})


@define(eq=False)
class Coalescer:
    """The events bound for the client, written together whenever the stream pauses: the
    chunks of one network read from the gateway leave in one write, not one each (a
    write on loopback costs about as much as turning a chunk around)."""

    send: Send
    pending: list[bytes] = field(init=False, factory=list)
    task: asyncio.Task[None] | None = field(default=None, init=False)

    def add(self, data: bytes | None) -> None:
        """Queue `data` (None: nothing); it is written once the stream awaits the gateway."""
        if data is None:
            return
        self.pending.append(data)
        if self.task is None:
            self.task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        # The one writer: what is added while a write is under way goes in the next.
        while self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.task = None

    async def end(self, last: bytes) -> None:
        """Everything queued, then `last`, which ends the response."""
        if self.task is not None:
            await self.task
        data = b"".join([*self.pending, last])
        self.pending.clear()
        await self.send({"type": "http.response.body", "body": data})

    async def close(self) -> None:
        """Stop writing (the stream was cancelled or failed): a write still queued is dropped."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
