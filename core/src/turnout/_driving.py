"""What the two drivers share: everything about performing a command that is not I/O.

`SyncDriver` and `AsyncDriver` are to this module what httpx's `Client` and
`AsyncClient` are to its `BaseClient`: they loop over a flow's commands and
send, read, sleep and wait; building requests, reading the limits, turning
failures into normalized errors and which commands may still run once a call
is abandoned are decided here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import httpcore
import httpx
from attrs import define

from ._errors import ProviderError
from ._flow import HTTPRequest, HTTPResponse, Notify, OpenStream, Send
from ._limits import CallLimits
from ._observe import Observers
from ._reading import BodyReader, Event, EventReader
from ._state import MemoryStore, Settle, StateStore
from ._transport import CORE_ERRORS, as_httpx, header_dict, transport_error

__all__ = [
    "TRANSPORT_ERRORS",
    "USER_AGENT",
    "DriverBase",
    "Reply",
    "core_reply",
    "httpx_reply",
    "is_cleanup",
    "is_cleanup_send",
]

USER_AGENT = "turnout/0.1"
# What every request carries besides the provider's own headers. Only encodings the
# drivers can inflate in bounded pieces are asked for (see `turnout._reading`).
_BASE_HEADERS = {"user-agent": USER_AGENT, "accept-encoding": "gzip, deflate"}
# What a failed send or read raises: httpx's exceptions, or httpcore's when the router's
# own transport is driven directly (`DriverBase.failure` maps them to httpx's).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, *CORE_ERRORS)
# Raw reads made after a stream's end so its connection goes back to the pool.
DRAIN_READS = 16


def is_cleanup_send(command: Any) -> bool:
    """A best-effort cleanup request: bounded by the cleanup budget (a short timeout,
    ending by the deadline plus `CLEANUP_GRACE`), not by the time left in the call, so
    a cancel sent just before the deadline still gets a chance to arrive."""
    return type(command) is Send and command.cleanup


_UPKEEP = frozenset({Settle, Notify})
# What `opened` is before a stream is (a frozen request: shared by every driver).
_NOT_OPENED = HTTPRequest("GET", "")
# What the attempt record says when a call is abandoned, by what abandoned it.
LOST_RACE = "lost the race"
_ABANDONED = {
    "GeneratorExit": "the caller closed the stream",
    "KeyboardInterrupt": "interrupted",
    "SystemExit": "the process is exiting",
    "CancelledError": "the caller's task was cancelled",
}


def abandon_reason(exc: BaseException) -> str:
    """Why a call was abandoned, in a few words, from what the driver caught."""
    if exc.args and exc.args[0] == LOST_RACE:
        return LOST_RACE
    return _ABANDONED.get(type(exc).__name__, LOST_RACE if type(exc).__name__ == "_Lost" else "abandoned")


def is_cleanup(command: Any) -> bool:
    """What a flow may still do once its caller has gone: cleanup requests, state upkeep."""
    kind = type(command)
    return is_cleanup_send(command) or kind in _UPKEEP


@functools.lru_cache(maxsize=512)
def _url(text: str) -> httpx.URL:
    """Parsed once: a router sends to the same few URLs again and again."""
    return httpx.URL(text)


def _timeouts(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


@define(slots=True, eq=False)
class Reply:
    """A response as the drivers read it, whichever way it came (an `httpx.Response`, or
    httpcore's from the router's own transport): its status, its headers as
    `httpx.Headers.items()` gives them, its raw body (an iterator, or an async one),
    the content-encoding left to undo, and how to close it."""

    status: int
    headers: dict[str, str]
    raw: Any
    close: Callable[[], Any]
    encoding: str | None

    @property
    def success(self) -> bool:
        return 200 <= self.status < 300

    def head(self) -> HTTPResponse:
        return HTTPResponse(self.status, self.headers)


def core_reply(response: httpcore.Response, raw: Any, close: Callable[[], Any]) -> Reply:
    headers = header_dict(response.headers)
    return Reply(response.status, headers, raw, close, headers.get("content-encoding"))


def httpx_reply(response: httpx.Response, raw: Any, close: Callable[[], Any]) -> Reply:
    """`raw`: its raw body; none left to undo once httpx has read the body itself (a
    response built in memory, as `httpx.MockTransport` handlers make)."""
    encoding = None if response.is_stream_consumed else response.headers.get("content-encoding")
    return Reply(response.status_code, dict(response.headers.items()), raw, close, encoding)


class DriverBase:
    """The limits, the store and the send path of one call, and the decisions on them."""

    def __init__(
        self,
        limits: CallLimits,
        store: StateStore | None = None,
        *,
        client: httpx.Client | httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        observers: Observers | None = None,
    ) -> None:
        self.limits = limits
        self.observers = observers or Observers()
        self.store: StateStore = store if store is not None else MemoryStore()
        # A client the user handed in (its headers, auth and hooks apply), else None:
        # requests go to the router's own transports.
        self.client = client
        # The caller's `extra_headers` for this call, added to every request.
        self.headers = headers
        # The request of the open stream (what a failure while reading it is about).
        self.opened = _NOT_OPENED
        # The events of the open stream.
        self.events: EventReader | None = None

    def ready_event(self) -> Event | None:
        """The open stream's next event if it has already been read (several often come
        in one network read), else None: the driver must read (or end) the stream."""
        events = self.events
        if events is None:
            return None
        event = events.next()
        return event if type(event) is Event else None

    def timeout(self, command: Send | OpenStream, cleanup: bool) -> float:
        return self.limits.request_timeout(command.request.timeout, cleanup=cleanup)

    def merged(self, request: HTTPRequest, *, own: bool) -> dict[str, str]:
        """The request's headers and the call's; with the router's own (user agent,
        encodings) first when no client of the user's adds its own."""
        headers = dict(_BASE_HEADERS) if own else {}
        headers.update(request.headers)
        if self.headers:
            headers.update(self.headers)
        return headers

    def wire_headers(self, request: HTTPRequest) -> list[tuple[bytes, bytes]]:
        """The headers as httpcore sends them (ASCII, as `httpx.Request` encodes them)."""
        return [(k.encode("ascii"), v.encode("ascii")) for k, v in self.merged(request, own=True).items()]

    def build(self, command: Send | OpenStream, seconds: float) -> httpx.Request:
        """The `httpx.Request` of a command, for a client or a transport of the user's."""
        request = command.request
        content = request.content or None
        if self.client is not None:
            return self.client.build_request(
                request.method,
                request.url,
                headers=self.merged(request, own=False),
                content=content,
                timeout=httpx.Timeout(seconds),
            )
        return httpx.Request(
            request.method,
            _url(request.url),
            headers=self.merged(request, own=True),
            content=content,
            extensions={"timeout": _timeouts(seconds)},
        )

    @staticmethod
    def target(request: HTTPRequest) -> httpx.URL:
        return _url(request.url)

    def failure(self, exc: Exception, request: HTTPRequest, *, streaming: bool) -> ProviderError:
        """A timeout that fired because the deadline shortened the request is the deadline.
        A request that may have been processed and is not safe to repeat is marked so:
        the retry layer then never sends it to the same deployment again."""
        exc = as_httpx(exc)
        if isinstance(exc, httpx.TimeoutException) and self.limits.left() <= 0.01:
            return self.limits.expired_error()
        error = transport_error(exc, streaming=streaming)
        if error.maybe_processed and not request.safe_to_repeat():
            error.retryable = False
            error.message = f"{error.message} (the request may have been processed; not repeated)"
            error.args = (error.message,)
        return error

    def reader(self, reply: Reply, max_body: int) -> BodyReader:
        limit = self.limits.body_limit(max_body, success=reply.success)
        return BodyReader(reply.encoding, limit, self.limits)

    @staticmethod
    def result(reply: Reply, reader: BodyReader) -> HTTPResponse:
        return HTTPResponse(reply.status, reply.headers, reader.body(), reader.truncated)
