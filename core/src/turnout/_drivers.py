"""The two drivers: they perform a flow's commands with httpx, and decide nothing.

Each keeps at most one streamed response open, bounds every request and sleep
by the call's deadline, reads bodies only up to a cap, never follows
redirects, and turns httpx's exceptions into normalized errors thrown back
into the flow. When the caller abandons a call (KeyboardInterrupt, task
cancellation, closing a stream early) the flow gets `CallAbandoned` and may
yield best-effort cleanup requests before the original exception goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from ._errors import ErrorKind, ProviderError, error_for
from ._flow import (
    DEFAULT_MAX_BODY,
    ERROR_BODY_LIMIT,
    CallAbandoned,
    Emit,
    Flow,
    HTTPResponse,
    OpenStream,
    Race,
    ReadBody,
    ReadEvent,
    Send,
    Sleep,
)
from ._models import ChatChunk
from ._normalize import truncate
from ._routing import deadline_error
from ._state import LoadState, MemoryStore, StateStore, UpdateBudget, UpdateState

__all__ = [
    "AsyncDriver",
    "SyncDriver",
    "arun_flow",
    "astream_flow",
    "run_flow",
    "stream_flow",
    "transport_error",
]

# Timeout for best-effort cleanup requests sent after the deadline or a cancellation.
CLEANUP_TIMEOUT = 5.0

# httpx's exceptions, most specific first: (class, kind before a body, kind while reading one).
_TRANSPORT_KINDS: tuple[tuple[type[Exception], ErrorKind, ErrorKind], ...] = (
    (httpx.TimeoutException, ErrorKind.TIMEOUT, ErrorKind.TIMEOUT),
    (httpx.ConnectError, ErrorKind.CONNECTION, ErrorKind.CONNECTION),
    (httpx.DecodingError, ErrorKind.PARSE_ERROR, ErrorKind.PARSE_ERROR),
    (httpx.RemoteProtocolError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED),
    (httpx.ReadError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED),
    (httpx.HTTPError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED),
)
# Their messages may quote what was sent (a header value is the key): say only the type.
_OPAQUE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL)


def transport_error(exc: Exception, *, streaming: bool) -> ProviderError:
    """The normalized error for an exception raised while sending or reading."""
    for cls, before, during in _TRANSPORT_KINDS:
        if isinstance(exc, cls):
            kind = during if streaming else before
            break
    else:
        kind = ErrorKind.CONNECTION
    name = type(exc).__name__
    detail = "" if isinstance(exc, _OPAQUE) else str(exc)
    message = f"{name}: {truncate(detail, 300)}" if detail else name
    return error_for(kind, message, code=name)


class _Lost(Exception):
    """This driver's flow lost a race: it stops at its next command."""


def _exhaust(run: Generator[ChatChunk, None, Any]) -> Any:
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _shared_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for hedged sync calls, made on first use only."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="turnout-hedge")
        return _POOL


def _cleanup(command: Any) -> bool:
    """What a flow may still do once its caller has gone: cleanup requests, state upkeep."""
    kind = type(command)
    return (kind is Send and command.cleanup) or kind is UpdateState or kind is UpdateBudget


# Events read after a stream's end to let its connection be reused (see `drain`).
_DRAIN_EVENTS = 16

# What every request carries besides the provider's own headers.
_BASE_HEADERS = {"user-agent": "turnout/0.1", "accept-encoding": "gzip, deflate"}


@functools.lru_cache(maxsize=512)
def _url(text: str) -> httpx.URL:
    """Parsed once: a router sends to the same few URLs again and again."""
    return httpx.URL(text)


class _Base:
    def __init__(
        self,
        deadline_at: float,
        deadline: float,
        timeout: float,
        clock: Callable[[], float],
        max_body: int = DEFAULT_MAX_BODY,
        store: StateStore | None = None,
        direct: bool = False,
    ) -> None:
        self.store: StateStore = store if store is not None else MemoryStore()
        # The router's own client: requests go straight to its transport (see `build`).
        self.direct = direct
        self.max_body = max_body
        self.deadline_at = deadline_at
        self.deadline = deadline
        self.timeout = timeout
        self.clock = clock
        self.response: httpx.Response | None = None

    def request_timeout(self, endpoint: float | None, cleanup: bool) -> float:
        if cleanup:
            return min(endpoint or CLEANUP_TIMEOUT, CLEANUP_TIMEOUT)
        left = self.deadline_at - self.clock()
        if left <= 0:
            raise deadline_error(self.deadline)
        return min(endpoint or self.timeout, left)

    def build(
        self, client: httpx.Client | httpx.AsyncClient, command: Send | OpenStream, cleanup: bool
    ) -> httpx.Request:
        request = command.request
        seconds = max(self.request_timeout(request.timeout, cleanup), 0.001)
        if not self.direct:
            # A client the user handed in: its own headers, auth and hooks apply.
            return client.build_request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content or None,
                timeout=httpx.Timeout(seconds),
            )
        # The router's own client has no cookies, auth, hooks or default params to
        # merge, and redirects are never followed: the request is built once, here,
        # and sent through the client's transport (mounts and proxies included).
        headers = dict(_BASE_HEADERS)
        headers.update(request.headers)
        timeout = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        return httpx.Request(
            request.method,
            _url(request.url),
            headers=headers,
            content=request.content or None,
            extensions={"timeout": timeout},
        )

    def sleep_for(self, seconds: float) -> tuple[float, bool]:
        """How long to sleep, and whether the deadline ends the call instead: a sleep
        that would pass the deadline is not slept at all."""
        if seconds >= self.deadline_at - self.clock():
            return 0.0, True
        return max(seconds, 0.0), False

    def failure(self, exc: Exception, *, streaming: bool) -> ProviderError:
        """A timeout that fired because the deadline shortened the request is the deadline."""
        if isinstance(exc, httpx.TimeoutException) and self.clock() >= self.deadline_at - 0.01:
            return deadline_error(self.deadline)
        return transport_error(exc, streaming=streaming)

    def head(self, response: httpx.Response) -> HTTPResponse:
        return HTTPResponse(response.status_code, response.headers.items())

    def limit(self, response: httpx.Response, max_body: int) -> int:
        limit = min(max_body, self.max_body)
        return limit if response.is_success else min(limit, ERROR_BODY_LIMIT)


class SyncDriver(_Base):
    """Performs a flow with an `httpx.Client`; `run` yields the chunks it emits."""

    def __init__(
        self,
        client: httpx.Client,
        deadline_at: float,
        deadline: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        max_body: int = DEFAULT_MAX_BODY,
        store: StateStore | None = None,
        executor: concurrent.futures.Executor | None = None,
        direct: bool = False,
    ) -> None:
        super().__init__(deadline_at, deadline, timeout, clock, max_body, store, direct)
        self.client = client
        self.events: Iterator[ServerSentEvent] | None = None
        self.executor = executor
        # Set from another thread when this driver's flow lost a race.
        self.lost = False

    def run(self, flow: Flow[Any]) -> Generator[ChatChunk, None, Any]:
        value: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    command = flow.send(value) if thrown is None else flow.throw(thrown)
                except StopIteration as stop:
                    self.drain()
                    return stop.value
                value = thrown = None
                if type(command) is Emit:
                    yield command.chunk
                    continue
                if self.lost:
                    raise _Lost
                try:
                    value = self.perform(command, cleanup=False)
                except ProviderError as exc:
                    thrown = exc
        except (KeyboardInterrupt, GeneratorExit, SystemExit) as exc:
            self.abandon(flow, exc)
            raise
        except _Lost:
            self.abandon(flow, _Lost())
            return None
        finally:
            self.close_stream()

    def abandon(self, flow: Flow[Any], reason: BaseException) -> None:
        """Let the flow send its cleanup requests, bounded, then drop it."""
        self.close_stream()
        try:
            command = flow.throw(CallAbandoned(repr(reason)))
            while _cleanup(command):
                try:
                    value: Any = self.perform(command, cleanup=True)
                except ProviderError as exc:
                    command = flow.throw(exc)
                else:
                    command = flow.send(value)
        except BaseException:  # noqa: S110 - cleanup is best effort by contract
            pass
        flow.close()

    def perform(self, command: Any, *, cleanup: bool) -> Any:
        kind = type(command)
        if kind is Send:
            return self.send(command, cleanup or command.cleanup)
        if kind is UpdateState:
            return self.store.update(command.name, command.fn)
        if kind is LoadState:
            return self.store.load(command.names)
        if kind is UpdateBudget:
            return self.store.update_budget(command.fn)
        if kind is Race:
            return self.race(command)
        if kind is ReadEvent:
            return self.next_event()
        if kind is OpenStream:
            return self.open(command)
        if kind is ReadBody:
            return self.read_open(command.max_body)
        if kind is Sleep:
            seconds, expires = self.sleep_for(command.seconds)
            if expires:
                raise deadline_error(self.deadline)
            time.sleep(seconds)
            return None
        raise TypeError(f"unknown command {command!r}")

    def race(self, race: Race) -> list[Any]:
        """Each flow on a worker thread. Threads cannot be interrupted: a loser is told
        to stop and its open stream is closed; a request it is waiting on ends within
        that request's own timeout, and its connection then returns to the pool."""
        executor = self.executor or _shared_pool()
        drivers: dict[concurrent.futures.Future[Any], SyncDriver] = {}
        index: dict[concurrent.futures.Future[Any], int] = {}
        finished: list[Any] = []
        started = self.clock()

        def start() -> concurrent.futures.Future[Any]:
            driver = SyncDriver(
                self.client,
                self.deadline_at,
                self.deadline,
                self.timeout,
                self.clock,
                self.max_body,
                self.store,
                executor,
            )
            future = executor.submit(_exhaust, driver.run(race.flows[len(drivers)]))
            index[future] = len(drivers)
            drivers[future] = driver
            return future

        pending = {start()}  # started and not yet collected
        while pending:
            wait: float | None = None
            if len(drivers) < len(race.flows):
                wait = max(0.0, started + race.delays[len(drivers)] - self.clock())
            done, pending = concurrent.futures.wait(
                pending, timeout=wait, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in sorted(done, key=index.__getitem__):
                result = future.result()
                finished.append(result)
                if race.won(result):
                    for loser in pending:
                        drivers[loser].cancel()
                    return finished
            # The next flow starts at its time, or at once when every started one failed.
            if len(drivers) < len(race.flows) and (not pending or not done):
                pending.add(start())
        return finished

    def cancel(self) -> None:
        self.lost = True
        response = self.response
        if response is not None:
            response.close()

    def send(self, command: Send, cleanup: bool) -> HTTPResponse:
        request = self.build(self.client, command, cleanup)
        try:
            response = self.transmit(request)
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        try:
            body, truncated = self.read(response, self.limit(response, command.max_body))
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        finally:
            response.close()
        return HTTPResponse(response.status_code, response.headers.items(), body, truncated)

    def transmit(self, request: httpx.Request) -> httpx.Response:
        if not self.direct:
            return self.client.send(request, stream=True, follow_redirects=False)
        response = self.client._transport_for_url(request.url).handle_request(request)
        response.request = request
        return response

    def read(self, response: httpx.Response, limit: int) -> tuple[bytes, bool]:
        pieces: list[bytes] = []
        size = 0
        for piece in response.iter_bytes():
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(pieces)[:limit], True
            if self.clock() > self.deadline_at:
                raise deadline_error(self.deadline)
        return b"".join(pieces), False

    def open(self, command: OpenStream) -> HTTPResponse:
        self.close_stream()
        request = self.build(self.client, command, False)
        try:
            self.response = self.transmit(request)
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        return self.head(self.response)

    def read_open(self, max_body: int) -> HTTPResponse:
        response = self.response
        assert response is not None, "ReadBody without an open stream"
        try:
            body, truncated = self.read(response, self.limit(response, max_body))
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=True) from None
        finally:
            self.close_stream()
        return HTTPResponse(response.status_code, response.headers.items(), body, truncated)

    def next_event(self) -> ServerSentEvent | None:
        if self.events is None:
            assert self.response is not None, "ReadEvent without an open stream"
            self.events = EventSource(self.response).iter_sse()
        try:
            event = next(self.events, None)
        except httpx.HTTPError as exc:
            self.close_stream()
            raise self.failure(exc, streaming=True) from None
        if event is None:
            self.close_stream()
        elif self.clock() > self.deadline_at:
            self.close_stream()
            raise deadline_error(self.deadline)
        return event

    def drain(self) -> None:
        """A stream the flow finished reading ([DONE]): read what little is left so the
        connection goes back to the pool instead of being closed (as the OpenAI SDK
        does). Bounded by a few events and the request's own read timeout."""
        events = self.events
        if events is not None:
            try:
                for _ in itertools.islice(events, _DRAIN_EVENTS):
                    pass
            except httpx.HTTPError:
                pass
        self.close_stream()

    def close_stream(self) -> None:
        self.events = None
        if self.response is not None:
            response, self.response = self.response, None
            response.close()


class AsyncDriver(_Base):
    """Performs a flow with an `httpx.AsyncClient`; `run` yields the chunks it emits."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        deadline_at: float,
        deadline: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        max_body: int = DEFAULT_MAX_BODY,
        store: StateStore | None = None,
        direct: bool = False,
    ) -> None:
        super().__init__(deadline_at, deadline, timeout, clock, max_body, store, direct)
        self.client = client
        self.events: AsyncIterator[ServerSentEvent] | None = None

    async def run(self, flow: Flow[Any], out: list[Any]) -> AsyncGenerator[ChatChunk, None]:
        """Yields the chunks; the flow's result is appended to `out` (async generators
        cannot return a value)."""
        value: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    command = flow.send(value) if thrown is None else flow.throw(thrown)
                except StopIteration as stop:
                    await self.drain()
                    out.append(stop.value)
                    return
                value = thrown = None
                if type(command) is Emit:
                    yield command.chunk
                    continue
                try:
                    value = await self.perform(command, cleanup=False)
                except ProviderError as exc:
                    thrown = exc
        except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit, SystemExit) as exc:
            await self.abandon(flow, exc)
            raise
        finally:
            await self.close_stream()

    async def abandon(self, flow: Flow[Any], reason: BaseException) -> None:
        await self.close_stream()
        try:
            command = flow.throw(CallAbandoned(repr(reason)))
            while _cleanup(command):
                try:
                    value: Any = await asyncio.wait_for(self.perform(command, cleanup=True), CLEANUP_TIMEOUT)
                except ProviderError as exc:
                    command = flow.throw(exc)
                else:
                    command = flow.send(value)
        except BaseException:  # noqa: S110 - cleanup is best effort by contract
            pass
        flow.close()

    async def perform(self, command: Any, *, cleanup: bool) -> Any:
        kind = type(command)
        if kind is Send:
            return await self.send(command, cleanup or command.cleanup)
        if kind is UpdateState:
            return await self.store.aupdate(command.name, command.fn)
        if kind is LoadState:
            return await self.store.aload(command.names)
        if kind is UpdateBudget:
            return await self.store.aupdate_budget(command.fn)
        if kind is Race:
            return await self.race(command)
        if kind is ReadEvent:
            return await self.next_event()
        if kind is OpenStream:
            return await self.open(command)
        if kind is ReadBody:
            return await self.read_open(command.max_body)
        if kind is Sleep:
            seconds, expires = self.sleep_for(command.seconds)
            if expires:
                raise deadline_error(self.deadline)
            await asyncio.sleep(seconds)
            return None
        raise TypeError(f"unknown command {command!r}")

    async def race(self, race: Race) -> list[Any]:
        """Each flow in its own task; the losers are cancelled (their flows clean up)."""
        tasks: dict[asyncio.Task[Any], int] = {}
        finished: list[Any] = []
        started = self.clock()

        async def leg(flow: Flow[Any]) -> Any:
            driver = AsyncDriver(
                self.client,
                self.deadline_at,
                self.deadline,
                self.timeout,
                self.clock,
                self.max_body,
                self.store,
            )
            out: list[Any] = []
            async for _ in driver.run(flow, out):
                pass
            return out[0]

        def start() -> asyncio.Task[Any]:
            task = asyncio.ensure_future(leg(race.flows[len(tasks)]))
            tasks[task] = len(tasks)
            return task

        pending = {start()}  # started and not yet collected
        try:
            while pending:
                wait: float | None = None
                if len(tasks) < len(race.flows):
                    wait = max(0.0, started + race.delays[len(tasks)] - self.clock())
                done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=tasks.__getitem__):
                    result = task.result()
                    finished.append(result)
                    if race.won(result):
                        return finished
                if len(tasks) < len(race.flows) and (not pending or not done):
                    pending.add(start())
            return finished
        finally:
            losers = [t for t in tasks if not t.done()]
            for task in losers:
                task.cancel()
            if losers:
                await asyncio.gather(*losers, return_exceptions=True)

    async def send(self, command: Send, cleanup: bool) -> HTTPResponse:
        request = self.build(self.client, command, cleanup)
        try:
            response = await self.transmit(request)
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        try:
            body, truncated = await self.read(response, self.limit(response, command.max_body))
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        finally:
            await response.aclose()
        return HTTPResponse(response.status_code, response.headers.items(), body, truncated)

    async def transmit(self, request: httpx.Request) -> httpx.Response:
        if not self.direct:
            return await self.client.send(request, stream=True, follow_redirects=False)
        response = await self.client._transport_for_url(request.url).handle_async_request(request)
        response.request = request
        return response

    async def read(self, response: httpx.Response, limit: int) -> tuple[bytes, bool]:
        pieces: list[bytes] = []
        size = 0
        async for piece in response.aiter_bytes():
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(pieces)[:limit], True
            if self.clock() > self.deadline_at:
                raise deadline_error(self.deadline)
        return b"".join(pieces), False

    async def open(self, command: OpenStream) -> HTTPResponse:
        await self.close_stream()
        request = self.build(self.client, command, False)
        try:
            self.response = await self.transmit(request)
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=False) from None
        return self.head(self.response)

    async def read_open(self, max_body: int) -> HTTPResponse:
        response = self.response
        assert response is not None, "ReadBody without an open stream"
        try:
            body, truncated = await self.read(response, self.limit(response, max_body))
        except httpx.HTTPError as exc:
            raise self.failure(exc, streaming=True) from None
        finally:
            await self.close_stream()
        return HTTPResponse(response.status_code, response.headers.items(), body, truncated)

    async def next_event(self) -> ServerSentEvent | None:
        if self.events is None:
            assert self.response is not None, "ReadEvent without an open stream"
            self.events = EventSource(self.response).aiter_sse()
        try:
            event = await anext(self.events, None)
        except httpx.HTTPError as exc:
            await self.close_stream()
            raise self.failure(exc, streaming=True) from None
        if event is None:
            await self.close_stream()
        elif self.clock() > self.deadline_at:
            await self.close_stream()
            raise deadline_error(self.deadline)
        return event

    async def drain(self) -> None:
        """See `SyncDriver.drain`."""
        events = self.events
        if events is not None:
            try:
                for _ in range(_DRAIN_EVENTS):
                    if await anext(events, None) is None:
                        break
            except httpx.HTTPError:
                pass
        await self.close_stream()

    async def close_stream(self) -> None:
        events, self.events = self.events, None
        if events is not None and hasattr(events, "aclose"):
            await events.aclose()
        if self.response is not None:
            response, self.response = self.response, None
            await response.aclose()


def run_flow(
    flow: Flow[Any],
    client: httpx.Client,
    *,
    deadline: float = 600.0,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Drive one flow to its result with `client`, outside any router (a job session, say).

    Errors the flow raises propagate; no retry or fallback is added.
    """
    driver = SyncDriver(client, clock() + deadline, deadline, timeout, clock)
    run = driver.run(flow)
    try:
        chunk = next(run)
    except StopIteration as done:
        return done.value
    run.close()
    raise TypeError(f"run_flow cannot drive a flow that emits chunks (got {chunk!r}); use stream_flow")


def stream_flow(
    flow: Flow[Any],
    client: httpx.Client,
    *,
    deadline: float = 600.0,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[ChatChunk, None, Any]:
    """Drive a streaming flow: yields its chunks, returns its result. Close it to abandon."""
    return SyncDriver(client, clock() + deadline, deadline, timeout, clock).run(flow)


async def arun_flow(
    flow: Flow[Any],
    client: httpx.AsyncClient,
    *,
    deadline: float = 600.0,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """`run_flow` for asyncio."""
    out: list[Any] = []
    run = AsyncDriver(client, clock() + deadline, deadline, timeout, clock).run(flow, out)
    async for chunk in run:
        await run.aclose()
        raise TypeError(f"arun_flow cannot drive a flow that emits chunks (got {chunk!r}); use astream_flow")
    return out[0]


def astream_flow(
    flow: Flow[Any],
    client: httpx.AsyncClient,
    out: list[Any],
    *,
    deadline: float = 600.0,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[ChatChunk, None]:
    """Drive a streaming flow with asyncio: yields its chunks; its result is appended to `out`."""
    return AsyncDriver(client, clock() + deadline, deadline, timeout, clock).run(flow, out)
