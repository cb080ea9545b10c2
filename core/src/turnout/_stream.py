"""A call's stream of chunks, sync and async: iterate it, close it, read what it did."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Self

from ._errors import Attempt
from ._models import ChatChunk, ChatResponse
from ._record import CallRecord

__all__ = ["AsyncStream", "Stream"]


class _StreamBase:
    """What both streams share. Each chunk is kept in the call's record as it is handed
    to the caller (`record.observe`): the flow is resumed only for the next chunk, so it
    always sees whether the call is committed; `stream.response` is assembled there."""

    def __init__(self, record: CallRecord) -> None:
        self._record = record
        self.response: ChatResponse | None = None

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """The attempts so far (complete once the stream has ended)."""
        return tuple(self._record.attempts)

    @property
    def deployment(self) -> str | None:
        return self._record.deployment

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._record.text


class Stream(_StreamBase):
    """Iterate for `ChatChunk`s; use as a context manager so the connection is closed."""

    def __init__(self, run: Generator[ChatChunk, None, ChatResponse], record: CallRecord) -> None:
        super().__init__(record)
        self._run = run

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> ChatChunk:
        try:
            chunk = next(self._run)
        except StopIteration as done:
            self.response = done.value
            raise StopIteration from None
        try:
            self._record.observe(chunk)
        except BaseException:
            self._run.close()  # the call ends here: its place is given back
            raise
        return chunk

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """`async for` over `ChatChunk`s; use `async with` so the connection is closed."""

    def __init__(
        self, run: AsyncGenerator[ChatChunk, None], record: CallRecord, out: list[ChatResponse]
    ) -> None:
        super().__init__(record)
        self._run = run
        self._out = out

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            chunk = await anext(self._run)
        except StopAsyncIteration:
            if self._out:
                self.response = self._out[0]
            raise
        try:
            self._record.observe(chunk)
        except BaseException:
            await self._run.aclose()  # the call ends here: its place is given back
            raise
        return chunk

    async def aclose(self) -> None:
        await self._run.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
