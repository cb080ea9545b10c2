"""What the two drivers share: everything about performing a command that is not I/O.

`SyncDriver` and `AsyncDriver` are to this module what httpx's `Client` and
`AsyncClient` are to its `BaseClient`: they loop over a flow's commands and
send, read, sleep and wait; building requests, reading the limits, turning
failures into normalized errors and which commands may still run once a call
is abandoned are decided here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import httpx

from ._errors import ProviderError
from ._flow import HTTPRequest, HTTPResponse, Notify, OpenStream, Send
from ._limits import CallLimits
from ._observe import Observers
from ._reading import BodyReader
from ._state import MemoryStore, Settle, StateStore
from ._transport import transport_error

__all__ = ["USER_AGENT", "DriverBase", "is_cleanup", "is_cleanup_send"]

USER_AGENT = "turnout/0.1"
# What every request carries besides the provider's own headers. Only encodings the
# drivers can inflate in bounded pieces are asked for (see `turnout._reading`).
_BASE_HEADERS = {"user-agent": USER_AGENT, "accept-encoding": "gzip, deflate"}
# Raw reads made after a stream's end so its connection goes back to the pool.
DRAIN_READS = 16


def is_cleanup_send(command: Any) -> bool:
    """A best-effort cleanup request: bounded by the cleanup budget (a short timeout,
    ending by the deadline plus `CLEANUP_GRACE`), not by the time left in the call, so
    a cancel sent just before the deadline still gets a chance to arrive."""
    return type(command) is Send and command.cleanup


_UPKEEP = frozenset({Settle, Notify})
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
        self.opened = HTTPRequest("GET", "")

    def build(self, command: Send | OpenStream, cleanup: bool) -> httpx.Request:
        request = command.request
        seconds = self.limits.request_timeout(request.timeout, cleanup=cleanup)
        headers = dict(request.headers)
        if self.headers:
            headers.update(self.headers)
        content = request.content or None
        if self.client is not None:
            return self.client.build_request(
                request.method, request.url, headers=headers, content=content, timeout=httpx.Timeout(seconds)
            )
        merged = dict(_BASE_HEADERS)
        merged.update(headers)
        return httpx.Request(
            request.method,
            _url(request.url),
            headers=merged,
            content=content,
            extensions={"timeout": _timeouts(seconds)},
        )

    def failure(self, exc: Exception, request: HTTPRequest, *, streaming: bool) -> ProviderError:
        """A timeout that fired because the deadline shortened the request is the deadline.
        A request that may have been processed and is not safe to repeat is marked so:
        the retry layer then never sends it to the same deployment again."""
        if isinstance(exc, httpx.TimeoutException) and self.limits.left() <= 0.01:
            return self.limits.expired_error()
        error = transport_error(exc, streaming=streaming)
        if error.maybe_processed and not request.safe_to_repeat():
            error.retryable = False
            error.message = f"{error.message} (the request may have been processed; not repeated)"
            error.args = (error.message,)
        return error

    def body_limit(self, response: httpx.Response, requested: int) -> int:
        return self.limits.body_limit(requested, success=response.is_success)

    @staticmethod
    def head(response: httpx.Response) -> HTTPResponse:
        return HTTPResponse(response.status_code, response.headers.items())

    @staticmethod
    def encoding(response: httpx.Response) -> str | None:
        """The encoding left to undo: none once httpx has read the body itself (a
        response built in memory, as `httpx.MockTransport` handlers make)."""
        if response.is_stream_consumed:
            return None
        encoding: str | None = response.headers.get("content-encoding")
        return encoding

    def reader(self, response: httpx.Response, max_body: int) -> BodyReader:
        return BodyReader(self.encoding(response), self.body_limit(response, max_body), self.limits)

    @staticmethod
    def result(response: httpx.Response, reader: BodyReader) -> HTTPResponse:
        return HTTPResponse(response.status_code, response.headers.items(), reader.body(), reader.truncated)
