"""The asyncio router's own HTTP transport: a connection pool whose cost does not grow
with the number of calls in flight.

httpcore's `AsyncConnectionPool` (what `httpx.AsyncHTTPTransport` is) walks
every queued request and every connection, and polls the socket of each idle
one, on every request and every response closed: at 50 concurrent calls that
was about 5 ms of CPU per request, nearly all of a call's cost (see
docs/benchmarks.md, "Many concurrent calls"). This pool keeps the same
connections, the same HTTP/1.1 code and the same exceptions (httpcore's public
`AsyncHTTPConnection` over its `AnyIOBackend`, as httpx uses them) and only
changes the bookkeeping around them: per origin, a stack of idle connections
(the most recently used is reused first, its socket checked once), a count of
open ones, and a queue of callers waiting for room. A request costs the same
whether 1 or 200 others are in flight.

So every failure arrives as the same httpx exception as before (a refused
connection is `httpx.ConnectError`, a wait for room past the pool timeout
`httpx.PoolTimeout`), and `transport_error` normalizes it unchanged.

Through a proxy (`HTTPS_PROXY` and the like, or the user's `mounts`) requests
go through httpx's own transport, as they always did: httpcore's proxy
connections are not public API.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import httpcore
import httpx

from ._transport import core_request, httpx_errors

__all__ = ["AsyncTransport", "async_transport"]

# (scheme, host, port) of a request's URL: the connections that may serve it.
_Origin = tuple[bytes, bytes, int | None]
_DEFAULT_PORTS = {b"http": 80, b"https": 443}


def async_transport(
    proxy: str | None = None, *, max_connections: int, max_keepalive: int
) -> httpx.AsyncBaseTransport:
    """The asyncio router's transport: this pool, or httpx's own through `proxy`."""
    if proxy is not None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
        return httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
    return AsyncTransport(max_connections=max_connections, max_keepalive=max_keepalive)


class _Idle:
    """An idle connection and when it went idle (the oldest are closed first)."""

    __slots__ = ("connection", "since")

    def __init__(self, connection: httpcore.AsyncHTTPConnection, since: float) -> None:
        self.connection = connection
        self.since = since


class AsyncTransport(httpx.AsyncBaseTransport):
    """An httpx transport over httpcore's HTTP/1.1 connections, pooled at O(1) per request.

    `max_connections`: open connections, all origins together (a request waits
    for room up to its pool timeout); `max_keepalive`: idle connections kept;
    `keepalive_expiry`: seconds an idle connection is kept.
    """

    def __init__(
        self, *, max_connections: int = 200, max_keepalive: int = 50, keepalive_expiry: float = 5.0
    ) -> None:
        self._ssl_context = httpx.create_ssl_context()
        self._backend = httpcore.AnyIOBackend()
        self._limit = max_connections
        self._max_idle = max_keepalive
        self._expiry = keepalive_expiry
        # Every connection this pool holds: idle, in use or connecting.
        self._open: set[httpcore.AsyncHTTPConnection] = set()
        self._idle: dict[_Origin, collections.deque[_Idle]] = {}
        self._idle_count = 0
        self._next_sweep = 0.0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections (idle, in use or connecting)."""
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        origin: _Origin = (url.raw_scheme, url.raw_host, url.port)
        with httpx_errors(request):
            connection = await self._acquire(origin, request.extensions.get("timeout", {}).get("pool"))
            try:
                response = await connection.handle_async_request(core_request(request))
            except BaseException:
                # httpcore has closed the connection (it does on any failure): free its room.
                await _close(self._checkin(origin, connection))
                raise
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, origin, connection, response.stream, request),
            extensions=response.extensions,
        )

    # -- the pool ----------------------------------------------------------------

    async def _acquire(self, origin: _Origin, timeout: float | None) -> httpcore.AsyncHTTPConnection:
        """An idle connection to `origin`, else a new one, else wait for room."""
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        front = False
        while True:
            connection, stale = self._checkout(origin)
            await _close(stale)
            if connection is not None:
                return connection
            await self._wait(loop, until, front)
            front = True  # woken but beaten to it: first in line next time

    def _checkout(
        self, origin: _Origin
    ) -> tuple[httpcore.AsyncHTTPConnection | None, list[httpcore.AsyncHTTPConnection]]:
        """Bookkeeping only (no await, so no other task sees it half done): the
        connection to use, if any, and the connections to close."""
        if self._closed:
            raise httpcore.ConnectError("the router's transport is closed")
        stale: list[httpcore.AsyncHTTPConnection] = []
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop().connection
            self._idle_count -= 1
            # Expired, or its socket readable while idle (the server closed it).
            if not connection.has_expired():
                return connection, stale
            self._open.discard(connection)
            stale.append(connection)
        if len(self._open) >= self._limit and self._idle_count:
            oldest = min((q for q in self._idle.values() if q), key=lambda q: q[0].since)
            victim = oldest.popleft().connection
            self._idle_count -= 1
            self._open.discard(victim)
            stale.append(victim)
        if len(self._open) >= self._limit:
            return None, stale
        scheme, host, port = origin
        connection = httpcore.AsyncHTTPConnection(
            httpcore.Origin(scheme, host, port or _DEFAULT_PORTS.get(scheme, 80)),
            ssl_context=self._ssl_context,
            keepalive_expiry=self._expiry,
            network_backend=self._backend,
        )
        self._open.add(connection)
        return connection, stale

    def _checkin(
        self, origin: _Origin, connection: httpcore.AsyncHTTPConnection
    ) -> list[httpcore.AsyncHTTPConnection]:
        """A request is done with `connection`: keep it idle if it can serve another,
        else let it go; wake one waiter either way. Returns the connections to close."""
        now = time.monotonic()
        stale = self._sweep(now) if now >= self._next_sweep else []
        if connection.is_available() and not self._closed and self._idle_count < self._max_idle:
            self._idle.setdefault(origin, collections.deque()).append(_Idle(connection, now))
            self._idle_count += 1
        else:
            self._open.discard(connection)
            stale.append(connection)
        self._wake()
        return stale

    def _sweep(self, now: float) -> list[httpcore.AsyncHTTPConnection]:
        """Idle connections past their expiry, from every origin (oldest first, so
        this stops at the first fresh one); done every half expiry at most."""
        self._next_sweep = now + self._expiry / 2
        stale: list[httpcore.AsyncHTTPConnection] = []
        for idle in self._idle.values():
            while idle and now - idle[0].since > self._expiry:
                connection = idle.popleft().connection
                self._idle_count -= 1
                self._open.discard(connection)
                stale.append(connection)
        return stale

    async def _wait(self, loop: asyncio.AbstractEventLoop, until: float | None, front: bool) -> None:
        waiter = loop.create_future()
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(until):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the room goes to the next in line
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout("no connection became free within the pool timeout") from None
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Close every connection, in use or idle; callers waiting for room get
        `httpx.ConnectError` (nothing was sent)."""
        self._closed = True
        connections = list(self._open)
        self._open.clear()
        self._idle.clear()
        self._idle_count = 0
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        await _close(connections)


class _Body(httpx.AsyncByteStream):
    """A response body; closing it gives its connection back to the pool."""

    def __init__(
        self,
        pool: AsyncTransport,
        origin: _Origin,
        connection: httpcore.AsyncHTTPConnection,
        inner: AsyncIterable[bytes],
        request: httpx.Request,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: httpcore.AsyncHTTPConnection | None = connection
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors(self._request):
            async for piece in self._inner:
                yield piece

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            close = getattr(self._inner, "aclose", None)
            if close is not None:
                with httpx_errors(self._request):
                    await close()
        finally:
            # Back to the pool: idle if the response was read to its end, else closed.
            await _close(self._pool._checkin(self._origin, connection))


async def _close(connections: Iterable[httpcore.AsyncHTTPConnection]) -> None:
    for connection in connections:
        with contextlib.suppress(Exception):
            await connection.aclose()
