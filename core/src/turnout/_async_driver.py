"""The asyncio driver: performs a flow's commands in the running loop, and decides nothing.

Each command runs inside `asyncio.timeout` of the time left in the call, so a
dripping head, body or stream cannot outlive the deadline whatever transport
is used; hedged legs are tasks, and losers are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Unpack

import httpx

from ._driving import DRAIN_READS, LOST_RACE, DriverBase, abandon_reason, is_cleanup, is_cleanup_send
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

# Commands that wait on the network or the clock: each is bounded by the time left.
_BOUNDED = frozenset({Send, OpenStream, ReadBody, ReadEvent, Sleep, Race})


class AsyncDriver(DriverBase):
    """Performs a flow with httpx's async API; `run` yields the chunks it emits."""

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
        self.response: httpx.Response | None = None
        self.raw: AsyncIterator[bytes] | None = None
        self.events: EventReader | None = None
        self.handlers: dict[type, Callable[[Any], Awaitable[Any]]] = {
            Send: self.send,
            OpenStream: self.open,
            ReadBody: self.read_open,
            ReadEvent: self.next_event,
            Sleep: self.sleep,
            Race: self.race,
            LoadState: lambda c: self.store.aload(c.names),
            Claim: self.claim,
            Settle: lambda c: self.store.asettle(c),
            Notify: self.notify,
        }

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
                else:
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
            await self.close_stream()

    async def perform(self, command: Any, *, cleanup: bool = False) -> Any:
        kind = type(command)
        if kind not in _BOUNDED:  # state upkeep: the store bounds its own operations
            return await self.handlers[kind](command)
        cleanup = cleanup or is_cleanup_send(command)
        seconds = self.limits.cleanup_timeout() if cleanup else self.limits.left()
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                if cleanup and kind is Send:
                    return await self.send(command, cleanup=True)
                return await self.handlers[kind](command)
        except TimeoutError:
            pass
        # The call's time ran out while this command was under way (raised here, not in
        # the handler: no exception chain to hold the request).
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

    async def transmit(self, request: httpx.Request) -> httpx.Response:
        if self.async_client is not None:
            return await self.async_client.send(request, stream=True, follow_redirects=False)
        assert self.transports is not None
        response = await self.transports.for_url(request.url).handle_async_request(request)
        response.request = request
        return response

    @staticmethod
    def raw_of(response: httpx.Response) -> AsyncIterator[bytes]:
        return _once(response.content) if response.is_stream_consumed else response.aiter_raw()

    async def read(self, response: httpx.Response, raw: AsyncIterator[bytes], max_body: int) -> HTTPResponse:
        reader = self.reader(response, max_body)
        async for piece in raw:
            if reader.feed(piece):
                break
        else:
            reader.end()
        return self.result(response, reader)

    async def send(self, command: Send, cleanup: bool = False) -> HTTPResponse:
        request = self.build(command, cleanup or command.cleanup)
        failed: Exception | None = None
        try:
            response = await self.transmit(request)
            try:
                return await self.read(response, self.raw_of(response), command.max_body)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            failed = exc
        raise self.failure(failed, command.request, streaming=False)

    async def open(self, command: OpenStream) -> HTTPResponse:
        await self.close_stream()
        request = self.build(command, False)
        failed: Exception | None = None
        try:
            response = self.response = await self.transmit(request)
        except httpx.HTTPError as exc:
            failed = exc
        if failed is not None:
            raise self.failure(failed, command.request, streaming=False)
        self.opened = command.request
        self.raw = self.raw_of(response)
        return self.head(response)

    async def read_open(self, command: ReadBody) -> HTTPResponse:
        response, raw = self.response, self.raw
        assert response is not None, "ReadBody without an open stream"
        assert raw is not None
        failed: Exception | None = None
        try:
            return await self.read(response, raw, command.max_body)
        except httpx.HTTPError as exc:
            failed = exc
        finally:
            await self.close_stream()
        raise self.failure(failed, self.opened, streaming=True)

    async def next_event(self, command: ReadEvent) -> Event | None:
        assert self.response is not None, "ReadEvent without an open stream"
        assert self.raw is not None
        if self.events is None:
            self.events = EventReader(self.encoding(self.response), self.limits)
        events = self.events
        failed: Exception | None = None
        try:
            while (event := events.next()) is PENDING:
                events.feed(await anext(self.raw, None))
        except httpx.HTTPError as exc:
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

    async def drain(self) -> None:
        """See `SyncDriver.drain`."""
        raw = self.raw
        if raw is not None:
            try:
                async with asyncio.timeout(max(self.limits.left(), 0.0)):
                    for _ in range(DRAIN_READS):
                        if await anext(raw, None) is None:
                            break
            except (httpx.HTTPError, ProviderError, TimeoutError):
                pass
        await self.close_stream()

    async def close_stream(self) -> None:
        self.events = None
        raw, self.raw = self.raw, None
        if raw is not None and hasattr(raw, "aclose"):
            await raw.aclose()
        if self.response is not None:
            response, self.response = self.response, None
            await response.aclose()

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
