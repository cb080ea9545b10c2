"""Stepping a flow, written once.

A flow is a generator of commands (see `turnout._flow`). Everything that
drives one, the sync driver, the async driver and the router's own layers
that watch a provider's flow go by, needs the same few moves: start it, send
it a result, throw it a failure, notice it has finished. `Pump` is those
moves; `relay` is a flow that runs another one and lets a watcher see its
commands and results (what `yield from` cannot do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, Generic, TypeVar

from ._flow import Command, Flow, HTTPResponse

__all__ = ["DONE", "Done", "Outcome", "Pump", "acapture", "capture", "relay"]

T = TypeVar("T")
C = TypeVar("C")
# The kind of command a flow yields (the router's, or the Redis store's operations).
K = TypeVar("K")


class Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


DONE: Final = Done()


Catch = type[BaseException] | tuple[type[BaseException], ...]


class Outcome:
    """What performing a command came to: its value, or the failure the flow is to see."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


def capture(
    perform: Callable[[C], Any], command: C, catch: type[BaseException] | tuple[type[BaseException], ...]
) -> Outcome:
    """`perform(command)`, with a failure of the kinds in `catch` kept for the flow."""
    try:
        return Outcome(perform(command))
    except catch as exc:
        return Outcome(error=exc)


async def acapture(pending: Awaitable[Any], catch: Catch) -> Outcome:
    """`capture` for an awaitable."""
    try:
        return Outcome(await pending)
    except catch as exc:
        return Outcome(error=exc)


class Pump(Generic[K, T]):
    """One flow, stepped: each step returns its next command, or `DONE` (then
    `result` holds what it returned). An exception the flow raises goes on."""

    __slots__ = ("flow", "result")

    def __init__(self, flow: Generator[K, Any, T]) -> None:
        self.flow = flow
        self.result: T | None = None

    def start(self) -> K | Done:
        return self.send(None)

    # `send` and `throw` call the generator directly (no shared helper): a flow is
    # stepped once per command of every call, the streaming hot path included.
    def send(self, value: Any) -> K | Done:
        try:
            return self.flow.send(value)
        except StopIteration as stop:
            self.result = stop.value
            return DONE

    def throw(self, exc: BaseException) -> K | Done:
        try:
            return self.flow.throw(exc)
        except StopIteration as stop:
            self.result = stop.value
            return DONE

    def resume(self, outcome: Outcome) -> K | Done:
        """Hand the flow what performing its last command came to."""
        if outcome.error is not None:
            return self.throw(outcome.error)
        return self.send(outcome.value)


Watcher = Callable[[Command], None]
# Sees each response the driver sends back; may answer with more commands to run
# (the router reads a stream's head and its rate-limit headers this way).
ResponseHook = Callable[[HTTPResponse], Flow[None] | None]


def relay(inner: Flow[T], *, before: Watcher | None = None, after: ResponseHook | None = None) -> Flow[T]:
    """`yield from inner`, with `before(command)` called on each command it yields
    and `after(response)` on each `HTTPResponse` it is sent. Failures and abandonment
    are handed on to `inner`, so its own `try`/`finally` runs.

    Each streamed chunk passes through here twice (its read and its emit), so the
    inner flow is stepped directly rather than through a `Pump`, and nothing but a
    type check is done per step for a hook that does not want it."""
    send, throw = inner.send, inner.throw
    try:
        command = send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        if before is not None:
            before(command)
        try:
            value = yield command
        except BaseException as exc:  # handed on: the inner flow may clean up
            try:
                command = throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        if after is not None and type(value) is HTTPResponse:
            extra = after(value)
            if extra is not None:
                yield from extra
        try:
            command = send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
