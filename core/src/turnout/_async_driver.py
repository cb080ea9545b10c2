"""The asyncio driver: performs a flow's commands in the running loop, and decides nothing.

Each command that waits runs under the call's deadline (one timer per call,
see `_Watch`), so a dripping head, body or stream cannot outlive the deadline
whatever transport is used; hedged legs are tasks, and losers are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Unpack

import httpx

from ._driving import (
    DRAIN_READS,
    LOST_RACE,
    TRANSPORT_ERRORS,
    DriverBase,
    Reply,
    abandon_reason,
    httpx_reply,
    is_cleanup,
    is_cleanup_send,
)
from ._errors import ProviderError
from ._flow import (
    CallAbandoned,
    Claim,
    Emit,
    Flow,
    HTTPResponse,
    LoadState,
    Notify,
    OpenStream,
    Race,
    ReadBody,
    ReadEvent,
    Send,
    Settle,
    Sleep,
)
from ._limits import CallLimits, FlowOptions, limits_of
from ._models import ChatChunk
from ._observe import Observers
from ._pump import DONE, Pump, acapture
from ._race import next_start
from ._reading import PENDING, Event, EventReader, Pending
from ._state import OutOfTime, StateStore
from ._transport import Mounts

__all__ = ["AsyncDriver", "arun_flow", "astream_flow"]

# What a drain after the end of a stream may meet, and ignores.
_DRAIN_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, ProviderError, TimeoutError)

# Commands that wait on the network or the clock: each is bounded by the time left.
_BOUNDED = frozenset({Send, OpenStream, ReadBody, ReadEvent, Sleep, Race})


class _Watch:
    """The call's deadline as one timer, armed once per call rather than one
    `asyncio.timeout` per command (each costs a timer handle and a heap entry: a
    stream performs a command per event). When the time runs out, the task then
    performing a command is cancelled, and `expired` tells that cancellation from
    anyone else's, as `asyncio.timeout` does (`Task.uncancel`). A command that
    starts after the deadline is cut at its first wait."""

    __slots__ = ("_cancelling", "_cut", "_handle", "_task", "_when")

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._cut: asyncio.Task[Any] | None = None
        self._cancelling = 0

    def enter(self, left: float) -> asyncio.Task[Any]:
        """A command that may wait begins, `left` seconds before the deadline."""
        loop = asyncio.get_running_loop()
        when = loop.time() + left
        # The same deadline on the loop's clock, give or take the clocks' rounding (a
        # call's clock that is not the loop's, as in tests, moves it: re-armed).
        if self._handle is None or abs(when - self._when) > _DRIFT:
            self.close()
            self._when = when
            self._handle = loop.call_at(when, self._fire)
        task = asyncio.current_task()
        assert task is not None, "an async driver runs in a task"
        self._task, self._cancelling = task, task.cancelling()
        return task

    def _fire(self) -> None:
        self._handle = None
        task = self._task
        if task is not None:
            self._cut = task
            task.cancel()

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation `task` got is this deadline's, and no one else's."""
        if self._cut is not task:
            return False
        self._cut = None
        return task.uncancel() <= self._cancelling

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._task = None
        if self._cut is task:  # cut as it ended: the cancellation is withdrawn
            self._cut = None
            task.uncancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


# How far the deadline may move on the loop's clock before the timer is set again.
_DRIFT = 0.001


class AsyncDriver(DriverBase):
    """Performs a flow with httpx's async API; `run` yields the chunks it emits."""

    # What performs each command (a method of the driver, or a function of it and the command).
    handlers: ClassVar[dict[type, Callable[[AsyncDriver, Any], Awaitable[Any]]]]

    def __init__(
        self,
        limits: CallLimits,
        store: StateStore | None = None,
        *,
        transports: Mounts[httpx.AsyncBaseTransport] | None = None,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        observers: Observers | None = None,
    ) -> None:
        super().__init__(limits, store, client=client, headers=headers, observers=observers)
        self.async_client = client
        self.transports = transports
        self.response: Reply | None = None
        self.watch = _Watch()

    async def claim(self, command: Claim) -> Any:
        """A place claimed within the time left: a shared store's round trip may not
        outlive the call (its `OutOfTime` is the call's deadline)."""
        try:
            return await self.store.aclaim(command, self.limits.left())
        except OutOfTime:
            raise self.limits.expired_error() from None

    async def notify(self, command: Notify) -> None:
        self.observers.notify(command.event)

    async def run(self, flow: Flow[Any], out: list[Any]) -> AsyncGenerator[ChatChunk, None]:
        """Yields the chunks; the flow's result is appended to `out` (async generators
        cannot return a value)."""
        pump = Pump(flow)
        try:
            command = pump.start()
            while command is not DONE:
                if type(command) is Emit:
                    yield command.chunk
                    command = pump.send(None)
                    continue
                if type(command) is ReadEvent and (event := self.ready_event()) is not None:
                    command = pump.send(event)  # already read: no I/O to bound
                    continue
                try:
                    value = await self.perform(command)
                except ProviderError as exc:
                    command = pump.throw(exc)
                else:
                    command = pump.send(value)
            await self.drain()
            out.append(pump.result)
        except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit, SystemExit) as exc:
            await self.abandon(pump, exc)
            raise
        finally:
            self.watch.close()
            await self.close_stream()

    async def perform(self, command: Any, *, cleanup: bool = False) -> Any:
        kind = type(command)
        if kind not in _BOUNDED:  # state upkeep: the store bounds its own operations
            return await self.handlers[kind](self, command)
        if cleanup or is_cleanup_send(command):
            return await self.cleanup(command)
        watch = self.watch
        task = watch.enter(self.limits.left())
        try:
            return await self.handlers[kind](self, command)
        except asyncio.CancelledError:
            if not watch.expired(task):
                raise
        finally:
            watch.leave(task)
        # The call's time ran out while this command was under way (raised here, not in
        # the handler: no exception chain to hold the request).
        await self.close_stream()
        raise self.limits.expired_error()

    async def cleanup(self, command: Any) -> Any:
        """A cleanup request (or what a flow does once abandoned): its own short bound,
        past the call's deadline if need be."""
        try:
            async with asyncio.timeout(self.limits.cleanup_timeout()):
                if type(command) is Send:
                    return await self.send(command, cleanup=True)
                return await self.handlers[type(command)](self, command)
        except TimeoutError:
            pass
        await self.close_stream()
        raise self.limits.expired_error()

    async def abandon(self, pump: Pump[Any, Any], reason: BaseException) -> None:
        await self.close_stream()
        try:
            command = pump.throw(CallAbandoned(abandon_reason(reason)))
            while is_cleanup(command):
                command = pump.resume(await acapture(self.perform(command, cleanup=True), ProviderError))
        except BaseException:  # noqa: S110 - cleanup is best effort by contract
            pass
        pump.flow.close()

    # -- HTTP --------------------------------------------------------------------

    async def transmit(self, command: Send | OpenStream, cleanup: bool) -> Reply:
        """Send a command's request; its response, its body not read yet."""
        seconds = self.timeout(command, cleanup)
        if self.async_client is not None:
            sent = self.build(command, seconds)
            response = await self.async_client.send(sent, stream=True, follow_redirects=False)
            return httpx_reply(response, self.raw_of(response), response.aclose)
        assert self.transports is not None
        transport = self.transports.for_url(self.target(command.request))
        response = await transport.handle_async_request(self.build(command, seconds))
        return httpx_reply(response, self.raw_of(response), response.aclose)

    @staticmethod
    def raw_of(response: httpx.Response) -> AsyncIterator[bytes]:
        return _once(response.content) if response.is_stream_consumed else response.aiter_raw()

    # unasync: begin (SyncDriver's copy of what follows is generated: python scripts/unasync.py)
    async def read(self, reply: Reply, max_body: int) -> HTTPResponse:
        reader = self.reader(reply, max_body)
        async for piece in reply.raw:
            if reader.feed(piece):
                break
        else:
            reader.end()
        return self.result(reply, reader)

    async def send(self, command: Send, cleanup: bool = False) -> HTTPResponse:
        failed: Exception | None = None
        try:
            reply = await self.transmit(command, cleanup or command.cleanup)
            try:
                return await self.read(reply, command.max_body)
            finally:
                await reply.close()
        except TRANSPORT_ERRORS as exc:
            failed = exc
        raise self.failure(failed, command.request, streaming=False)

    async def open(self, command: OpenStream) -> HTTPResponse:
        await self.close_stream()
        failed: Exception | None = None
        try:
            reply = self.response = await self.transmit(command, False)
        except TRANSPORT_ERRORS as exc:
            failed = exc
        if failed is not None:
            raise self.failure(failed, command.request, streaming=False)
        self.opened = command.request
        return reply.head()

    async def read_open(self, command: ReadBody) -> HTTPResponse:
        reply = self.response
        assert reply is not None, "ReadBody without an open stream"
        failed: Exception | None = None
        try:
            return await self.read(reply, command.max_body)
        except TRANSPORT_ERRORS as exc:
            failed = exc
        finally:
            await self.close_stream()
        raise self.failure(failed, self.opened, streaming=True)

    async def next_event(self, command: ReadEvent) -> Event | None:
        reply = self.response
        assert reply is not None, "ReadEvent without an open stream"
        if self.events is None:
            self.events = EventReader(reply.encoding, self.limits)
        events, raw = self.events, reply.raw
        failed: Exception | None = None
        try:
            while (event := events.next()) is PENDING:
                events.feed(await anext(raw, None))
        except TRANSPORT_ERRORS as exc:
            failed = exc
        except ProviderError:
            await self.close_stream()
            raise
        if failed is not None:
            await self.close_stream()
            raise self.failure(failed, self.opened, streaming=True)
        if event is None:
            await self.close_stream()
        assert not isinstance(event, Pending)
        return event

    # unasync: end

    async def drain(self) -> None:
        """See `SyncDriver.drain`."""
        reply = self.response
        if reply is not None:
            try:
                async with asyncio.timeout(max(self.limits.left(), 0.0)):
                    for _ in range(DRAIN_READS):
                        if await anext(reply.raw, None) is None:
                            break
            except _DRAIN_ERRORS:
                pass
        await self.close_stream()

    async def close_stream(self) -> None:
        self.events = None
        if self.response is not None:
            reply, self.response = self.response, None
            raw = reply.raw
            if hasattr(raw, "aclose"):
                await raw.aclose()
            await reply.close()

    # -- waiting -----------------------------------------------------------------

    async def sleep(self, command: Sleep) -> None:
        await asyncio.sleep(self.limits.sleep_for(command.seconds))

    async def race(self, race: Race) -> list[Any]:
        """Each leg in its own task; the losers are cancelled (their flows clean up)."""
        tasks: dict[asyncio.Task[Any], int] = {}
        finished: list[Any] = []
        began = self.limits.clock()
        pending: set[asyncio.Task[Any]] = set()
        try:
            while True:
                start, wait = next_start(
                    race.delays, len(tasks), began, self.limits.clock(), len(pending), self.limits.deadline_at
                )
                if start:
                    task = asyncio.ensure_future(self.child().leg(race.flows[len(tasks)]))
                    tasks[task] = len(tasks)
                    pending.add(task)
                    continue
                if not pending:
                    return finished
                done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=tasks.__getitem__):
                    finished.append(task.result())
                    if race.won(finished[-1]):
                        return finished
        finally:
            losers = [t for t in tasks if not t.done()]
            for task in losers:
                task.cancel(LOST_RACE)
            if losers:
                await asyncio.gather(*losers, return_exceptions=True)

    def child(self) -> AsyncDriver:
        """A driver for one leg of a race: this call's limits, store and send path."""
        return AsyncDriver(
            self.limits,
            self.store,
            transports=self.transports,
            client=self.async_client,
            headers=self.headers,
            observers=self.observers,
        )

    async def leg(self, flow: Flow[Any]) -> Any:
        out: list[Any] = []
        async for _ in self.run(flow, out):
            pass
        return out[0] if out else None


AsyncDriver.handlers = {
    Send: AsyncDriver.send,
    OpenStream: AsyncDriver.open,
    ReadBody: AsyncDriver.read_open,
    ReadEvent: AsyncDriver.next_event,
    Sleep: AsyncDriver.sleep,
    Race: AsyncDriver.race,
    LoadState: lambda d, c: d.store.aload(c.names),
    Claim: AsyncDriver.claim,
    Settle: lambda d, c: d.store.asettle(c),
    Notify: AsyncDriver.notify,
}


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def arun_flow(flow: Flow[Any], client: httpx.AsyncClient, **options: Unpack[FlowOptions]) -> Any:
    """`run_flow` for asyncio."""
    out: list[Any] = []
    run = astream_flow(flow, client, out, **options)
    async for chunk in run:
        await run.aclose()
        raise TypeError(f"arun_flow cannot drive a flow that emits chunks (got {chunk!r}); use astream_flow")
    return out[0]


def astream_flow(
    flow: Flow[Any], client: httpx.AsyncClient, out: list[Any], **options: Unpack[FlowOptions]
) -> AsyncGenerator[ChatChunk, None]:
    """Drive a streaming flow with asyncio: yields its chunks; its result is appended to `out`."""
    return AsyncDriver(limits_of(options), client=client).run(flow, out)
