"""Stepping a flow, written once.

A flow is a generator of commands (see `turnout._flow`). Everything that
drives one, the sync driver, the async driver and the router's own layers
that watch a provider's flow go by, needs the same few moves: start it, send
it a result, throw it a failure, notice it has finished. `Pump` is those
moves; `relay` is a flow that runs another one and lets a watcher see its
commands and results (what `yield from` cannot do).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Final, Generic, TypeVar

from ._flow import Command, Flow

__all__ = ["DONE", "Pump", "relay"]

T = TypeVar("T")


class _Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


DONE: Final = _Done()


class Pump(Generic[T]):
    """One flow, stepped: each step returns its next command, or `DONE` (then
    `result` holds what it returned). An exception the flow raises goes on."""

    __slots__ = ("flow", "result")

    def __init__(self, flow: Generator[Command, Any, T]) -> None:
        self.flow = flow
        self.result: T | None = None

    def start(self) -> Command | _Done:
        return self.send(None)

    def send(self, value: Any) -> Command | _Done:
        return self._step(self.flow.send, value)

    def throw(self, exc: BaseException) -> Command | _Done:
        return self._step(self.flow.throw, exc)

    def _step(self, move: Callable[[Any], Command], arg: Any) -> Command | _Done:
        try:
            return move(arg)
        except StopIteration as stop:
            self.result = stop.value
            return DONE


Watcher = Callable[[Command], None]
# Sees each result the driver sends back; may answer with more commands to run
# (the router records rate-limit headers this way).
ResultHook = Callable[[Any], Flow[None] | None]


def relay(inner: Flow[T], *, before: Watcher | None = None, after: ResultHook | None = None) -> Flow[T]:
    """`yield from inner`, with `before(command)` called on each command it yields
    and `after(result)` on each result it receives. Failures and abandonment are
    handed on to `inner`, so its own `try`/`finally` runs."""
    pump = Pump(inner)
    command = pump.start()
    while command is not DONE:
        assert not isinstance(command, _Done)
        if before is not None:
            before(command)
        try:
            value = yield command
        except BaseException as exc:  # handed on: the inner flow may clean up
            command = pump.throw(exc)
            continue
        if after is not None:
            extra = after(value)
            if extra is not None:
                yield from extra
        command = pump.send(value)
    return pump.result  # type: ignore[return-value]
