"""Run router flows against scripted responses on a fake clock: the decisions with no I/O.

This is the h11 style of testing: the protocol logic is fed events and
returns events; nothing listens on a socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from turnout import ChatChunk, ChatRequest, ErrorKind, ProviderError, TurnoutError
from turnout._call import RouterCore
from turnout._errors import error_for
from turnout._flow import Emit, HTTPResponse, Notify, OpenStream, ReadBody, ReadEvent, Send, Sleep
from turnout._limits import CallLimits
from turnout._record import CallRecord
from turnout._state import Claim, LoadState, MemoryStore, Settle, StateStore


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ok(text: str = "hello", request_id: str = "r-ok") -> HTTPResponse:
    body = {
        "id": request_id,
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    return HTTPResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def fail(status: int, code: str | None = None, *, retry_after: float | None = None) -> HTTPResponse:
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {"error": {"message": f"failed with {code or status}", "code": code}}
    return HTTPResponse(status, headers, json.dumps(body).encode())


def drop(kind: ErrorKind = ErrorKind.CONNECTION) -> ProviderError:
    """A transport failure, as the drivers throw it into the flow."""
    return error_for(kind, f"simulated {kind.value}", code="Simulated")


Reply = HTTPResponse | ProviderError


class Script:
    """Answers each host's requests from its own queue; every request costs `latency` seconds."""

    def __init__(self, clock: FakeClock, replies: dict[str, Sequence[Reply]], latency: float = 0.01) -> None:
        self.clock = clock
        self.replies = {host: list(items) for host, items in replies.items()}
        self.latency = latency
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.sleeps: list[float] = []
        self.chunks: list[ChatChunk] = []
        # What the flow told observers (attempts decided, calls ended, breakers changed).
        self.events: list[Any] = []
        # Called after each sleep: what other calls did meanwhile.
        self.on_sleep: Callable[[], None] | None = None

    def answer(self, host: str) -> Reply:
        queue = self.replies.get(host)
        if not queue:
            raise AssertionError(f"unexpected request to {host}")
        return queue.pop(0)

    def run(self, flow: Any, limits: CallLimits, store: StateStore | None = None) -> Any:
        store = store if store is not None else MemoryStore()
        value: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                command = flow.send(value) if thrown is None else flow.throw(thrown)
            except StopIteration as stop:
                return stop.value
            value = thrown = None
            if isinstance(command, Sleep):
                self.sleeps.append(command.seconds)
                try:  # as the drivers do: no sleep that passes the deadline
                    self.clock.advance(limits.sleep_for(command.seconds))
                except ProviderError as expired:
                    thrown = expired
                if self.on_sleep is not None:
                    self.on_sleep()
            elif isinstance(command, Send):
                host = urlsplit(command.request.url).hostname or ""
                self.sent.append((host, dict(command.request.headers)))
                self.clock.advance(self.latency)
                reply = self.answer(host)
                if isinstance(reply, ProviderError):
                    thrown = reply
                else:
                    value = reply
            elif isinstance(command, Claim):
                value = store.claim(command)
            elif isinstance(command, Settle):
                value = store.settle(command)
            elif isinstance(command, LoadState):
                value = store.load(command.names)
            elif isinstance(command, Emit):
                self.chunks.append(command.chunk)
            elif isinstance(command, Notify):
                self.events.append(command.event)
            elif isinstance(command, OpenStream | ReadBody | ReadEvent):
                raise AssertionError("scripted runs cover chat calls; streams are tested over a transport")
            else:
                raise AssertionError(f"unknown command {command!r}")

    @property
    def hosts(self) -> list[str]:
        return [host for host, _ in self.sent]


def call(
    core: RouterCore, script: Script, *, model: str | None = None, deadline: float | None = None
) -> tuple[Any, CallRecord]:
    """One chat call through `core`, played by `script`; returns (response or error, record)."""
    limits = core.limits(deadline)
    record = CallRecord()
    request = ChatRequest([{"role": "user", "content": "hi"}])
    flow = core.call_flow(request, core.table.route(model), limits, record, stream=False)
    try:
        return script.run(flow, limits, core.store), record
    except TurnoutError as error:
        return error, record


def kinds(attempts: Sequence[Any]) -> list[tuple[str, str | None]]:
    return [(a.deployment, a.error.kind.value if a.error else None) for a in attempts]


Check = Callable[[Any], bool]
