"""The sync driver: performs a flow's commands on the calling thread, and decides nothing.

Every socket operation of the router's own transport is bounded by the call's
`Scope` (see `turnout._transport`); hedged legs run on a per-router pool of
threads and a losing leg's socket is shut down, so it frees its thread at once.

The methods that read and send (between the `unasync` markers) are generated
from `AsyncDriver`'s by scripts/unasync.py, as httpcore generates its sync
code; tests/core/test_unasync.py fails on a hand edit of them.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Unpack, cast

import httpx

from ._driving import (
    DRAIN_READS,
    TRANSPORT_ERRORS,
    DriverBase,
    Reply,
    abandon_reason,
    core_reply,
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
from ._pump import DONE, Pump, capture
from ._race import next_start
from ._reading import PENDING, Event, EventReader, Pending
from ._state import OutOfTime, StateStore
from ._transport import SCOPE, Mounts, Scope, SyncTransport

__all__ = ["SyncDriver", "run_flow", "stream_flow"]


_STATE = frozenset({LoadState, Claim, Settle, Notify})
# What a drain after the end of a stream may meet, and ignores.
_DRAIN_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, ProviderError)


class _Lost(Exception):
    """This leg lost its race: it stops at its next command."""


class SyncDriver(DriverBase):
    """Performs a flow with httpx's sync API; `run` yields the chunks it emits."""

    # What performs each command (a method of the driver, or a function of it and the command).
    handlers: ClassVar[dict[type, Callable[[SyncDriver, Any], Any]]]

    def __init__(
        self,
        limits: CallLimits,
        store: StateStore | None = None,
        *,
        transports: Mounts[httpx.BaseTransport] | None = None,
        client: httpx.Client | None = None,
        executor: concurrent.futures.Executor | None = None,
        headers: Mapping[str, str] | None = None,
        observers: Observers | None = None,
    ) -> None:
        super().__init__(limits, store, client=client, headers=headers, observers=observers)
        self.sync_client = client
        self.transports = transports
        self.executor = executor
        self.scope = Scope(limits.deadline_at, limits.clock)
        self.response: Reply | None = None

    def run(self, flow: Flow[Any]) -> Generator[ChatChunk, None, Any]:
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
                    value = self.perform(command)
                except ProviderError as exc:
                    command = pump.throw(exc)
                else:
                    command = pump.send(value)
            self.drain()
            return pump.result
        except (KeyboardInterrupt, GeneratorExit, SystemExit, _Lost) as exc:
            self.abandon(pump, exc)
            if isinstance(exc, _Lost):
                return None
            raise
        finally:
            self.close_stream()

    def perform(self, command: Any, *, cleanup: bool = False) -> Any:
        if self.scope.cancelled and not cleanup:
            raise _Lost
        kind = type(command)
        if kind in _STATE:  # state upkeep: the store bounds its own operations
            return self.handlers[kind](self, command)
        # A cleanup request gets its own short bound, past the call's deadline if need be.
        cleanup = cleanup or is_cleanup_send(command)
        scope = self.cleanup_scope() if cleanup else self.scope
        token = SCOPE.set(scope)
        try:
            if cleanup and kind is Send:
                return self.send(command, cleanup=True)
            return self.handlers[kind](self, command)
        finally:
            SCOPE.reset(token)

    def claim(self, command: Claim) -> Any:
        """A place claimed within the time left: a shared store's round trip may not
        outlive the call (its `OutOfTime` is the call's deadline)."""
        try:
            return self.store.claim(command, self.limits.left())
        except OutOfTime:
            raise self.limits.expired_error() from None

    def cleanup(self, command: Any) -> Any:
        return self.perform(command, cleanup=True)

    def cleanup_scope(self) -> Scope:
        return Scope(self.limits.clock() + self.limits.cleanup_timeout(), self.limits.clock)

    def abandon(self, pump: Pump[Any, Any], reason: BaseException) -> None:
        """Let the flow send its cleanup requests, bounded, then drop it."""
        self.close_stream()
        try:
            command = pump.throw(CallAbandoned(abandon_reason(reason)))
            while is_cleanup(command):
                command = pump.resume(capture(self.cleanup, command, ProviderError))
        except BaseException:  # noqa: S110 - cleanup is best effort by contract
            pass
        pump.flow.close()

    # -- HTTP --------------------------------------------------------------------

    def transmit(self, command: Send | OpenStream, cleanup: bool) -> Reply:
        """Send a command's request; its response, its body not read yet."""
        seconds = self.timeout(command, cleanup)
        request = command.request
        if self.sync_client is not None:
            sent = self.build(command, seconds)
            response = self.sync_client.send(sent, stream=True, follow_redirects=False)
            return httpx_reply(response, self.raw_of(response), response.close)
        assert self.transports is not None
        transport = self.transports.for_url(self.target(request))
        if type(transport) is SyncTransport:  # the router's own: httpcore directly
            answer = transport.exchange(
                request.method.encode(), request.url, self.wire_headers(request), request.content, seconds
            )
            return core_reply(answer, iter(cast(Iterable[bytes], answer.stream)), answer.close)
        response = transport.handle_request(self.build(command, seconds))
        return httpx_reply(response, self.raw_of(response), response.close)

    @staticmethod
    def raw_of(response: httpx.Response) -> Iterator[bytes]:
        return iter((response.content,)) if response.is_stream_consumed else response.iter_raw()

    # unasync: begin (generated from AsyncDriver's by python scripts/unasync.py: do not edit)
    def read(self, reply: Reply, max_body: int) -> HTTPResponse:
        reader = self.reader(reply, max_body)
        for piece in reply.raw:
            if reader.feed(piece):
                break
        else:
            reader.end()
        return self.result(reply, reader)

    def send(self, command: Send, cleanup: bool = False) -> HTTPResponse:
        failed: Exception | None = None
        try:
            reply = self.transmit(command, cleanup or command.cleanup)
            try:
                return self.read(reply, command.max_body)
            finally:
                reply.close()
        except TRANSPORT_ERRORS as exc:
            failed = exc
        raise self.failure(failed, command.request, streaming=False)

    def open(self, command: OpenStream) -> HTTPResponse:
        self.close_stream()
        failed: Exception | None = None
        try:
            reply = self.response = self.transmit(command, False)
        except TRANSPORT_ERRORS as exc:
            failed = exc
        if failed is not None:
            raise self.failure(failed, command.request, streaming=False)
        self.opened = command.request
        return reply.head()

    def read_open(self, command: ReadBody) -> HTTPResponse:
        reply = self.response
        assert reply is not None, "ReadBody without an open stream"
        failed: Exception | None = None
        try:
            return self.read(reply, command.max_body)
        except TRANSPORT_ERRORS as exc:
            failed = exc
        finally:
            self.close_stream()
        raise self.failure(failed, self.opened, streaming=True)

    def next_event(self, command: ReadEvent) -> Event | None:
        reply = self.response
        assert reply is not None, "ReadEvent without an open stream"
        if self.events is None:
            self.events = EventReader(reply.encoding, self.limits)
        events, raw = self.events, reply.raw
        failed: Exception | None = None
        try:
            while (event := events.next()) is PENDING:
                events.feed(next(raw, None))
        except TRANSPORT_ERRORS as exc:
            failed = exc
        except ProviderError:
            self.close_stream()
            raise
        if failed is not None:
            self.close_stream()
            raise self.failure(failed, self.opened, streaming=True)
        if event is None:
            self.close_stream()
        assert not isinstance(event, Pending)
        return event

    # unasync: end

    def drain(self) -> None:
        """A stream the flow finished reading ([DONE]): read what little is left so the
        connection goes back to the pool instead of being closed, as the OpenAI SDK
        does. A few reads at most, each bounded by the call's scope."""
        reply = self.response
        if reply is not None:
            token = SCOPE.set(self.scope)
            try:
                for _ in range(DRAIN_READS):
                    if next(reply.raw, None) is None:
                        break
            except _DRAIN_ERRORS:
                pass
            finally:
                SCOPE.reset(token)
        self.close_stream()

    def close_stream(self) -> None:
        self.events = None
        if self.response is not None:
            reply, self.response = self.response, None
            reply.close()

    # -- waiting -----------------------------------------------------------------

    def sleep(self, command: Sleep) -> None:
        seconds = self.limits.sleep_for(command.seconds)
        if self.scope.sleep(seconds):
            raise _Lost

    def race(self, race: Race) -> list[Any]:
        """Each leg on a worker thread; the losers are cancelled (their sockets shut down,
        their flows clean up). The results come back in the order they finished."""
        executor = self.executor or _fallback_pool()
        legs: dict[concurrent.futures.Future[Any], SyncDriver] = {}
        order: dict[concurrent.futures.Future[Any], int] = {}
        finished: list[Any] = []
        began = self.limits.clock()
        pending: set[concurrent.futures.Future[Any]] = set()
        try:
            while True:
                start, wait = next_start(
                    race.delays, len(legs), began, self.limits.clock(), len(pending), self.limits.deadline_at
                )
                if start:
                    leg = self.child()
                    future = executor.submit(_exhaust, leg.run(race.flows[len(legs)]))
                    order[future] = len(legs)
                    legs[future] = leg
                    pending.add(future)
                    continue
                if not pending:
                    return finished
                done, pending = concurrent.futures.wait(
                    pending, timeout=wait, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in sorted(done, key=order.__getitem__):
                    finished.append(future.result())
                    if race.won(finished[-1]):
                        return finished
        finally:
            # The losers, and every leg when the caller went away (KeyboardInterrupt in
            # the wait): their sockets are shut down, their threads freed at once.
            for future, leg in legs.items():
                if not future.done():
                    leg.scope.cancel()

    def child(self) -> SyncDriver:
        """A driver for one leg of a race: this call's limits, store and send path."""
        return SyncDriver(
            self.limits,
            self.store,
            transports=self.transports,
            client=self.sync_client,
            executor=self.executor,
            headers=self.headers,
            observers=self.observers,
        )


SyncDriver.handlers = {
    Send: SyncDriver.send,
    OpenStream: SyncDriver.open,
    ReadBody: SyncDriver.read_open,
    ReadEvent: SyncDriver.next_event,
    Sleep: SyncDriver.sleep,
    Race: SyncDriver.race,
    LoadState: lambda d, c: d.store.load(c.names),
    Claim: SyncDriver.claim,
    Settle: lambda d, c: d.store.settle(c),
    Notify: lambda d, c: d.observers.notify(c.event),
}


def _exhaust(run: Generator[ChatChunk, None, Any]) -> Any:
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _fallback_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for races driven outside a router (a router has its own pool)."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="turnout-race")
    return _POOL


def run_flow(flow: Flow[Any], client: httpx.Client, **options: Unpack[FlowOptions]) -> Any:
    """Drive one flow to its result with `client`, outside any router (a job session,
    say), within `limits` (or a `deadline` and a request `timeout`, in seconds).

    Errors the flow raises propagate; no retry or fallback is added (see
    `turnout.retrying` for the router's retry layer as a flow).
    """
    run = stream_flow(flow, client, **options)
    try:
        chunk = next(run)
    except StopIteration as done:
        return done.value
    run.close()
    raise TypeError(f"run_flow cannot drive a flow that emits chunks (got {chunk!r}); use stream_flow")


def stream_flow(
    flow: Flow[Any], client: httpx.Client, **options: Unpack[FlowOptions]
) -> Generator[ChatChunk, None, Any]:
    """Drive a streaming flow: yields its chunks, returns its result. Close it to abandon."""
    return SyncDriver(limits_of(options), client=client).run(flow)
