"""A router stream as a server-sent event stream, OpenAI's way.

The response starts only with the first chunk: until then the router may still
retry and fall back, and a call that fails before any chunk gets a real HTTP
error (raised out of `run` for the endpoint to answer). After it, a failure
is one `data: {"error": ...}` frame and the stream ends without `[DONE]`, as
OpenAI ends a stream that broke. `stream_options.include_usage` adds the
final chunk with no choices and the usage of the whole answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from turnout._errors import NoHealthyDeploymentError, ProviderError
from turnout._models import ChatChunk

from .shapes import DONE, ChunkWriter

if TYPE_CHECKING:
    from starlette.types import Send

    from turnout._stream import AsyncStream

    from .errors import Reply

__all__ = ["SSE_HEADERS", "StreamPump"]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies (nginx) must pass each event on as it comes.
    (b"x-accel-buffering", b"no"),
]


class StreamPump:
    """Sends one stream's events; `started` tells whether the 200 went out."""

    def __init__(
        self,
        stream: AsyncStream,
        writer: ChunkWriter,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        *,
        on_error: Callable[[Exception], Reply],
    ) -> None:
        self.stream = stream
        self.writer = writer
        self.send = send
        self.headers = headers
        self.on_error = on_error
        self.started = False
        self.first_chunk: float | None = None
        # The error that ended a stream already begun (its frame is sent).
        self.failed: Exception | None = None

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
            try:
                await self._event(first)
                async for chunk in stream:
                    await self._event(chunk)
            except (ProviderError, NoHealthyDeploymentError) as error:
                self.failed = error
                await self.frame(self.on_error(error))
                return
            if writer.include_usage:
                response = stream.response
                await self._body(writer.usage_event(response.usage if response is not None else None))
            await send({"type": "http.response.body", "body": DONE})
        finally:
            await stream.aclose()

    async def _event(self, chunk: ChatChunk) -> None:
        event = self.writer.event(chunk)
        if event is not None:
            await self._body(event)

    async def _body(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def frame(self, reply: Reply) -> None:
        """One error frame, and the end of the response (no `[DONE]`)."""
        await self.send({"type": "http.response.body", "body": reply.frame()})
