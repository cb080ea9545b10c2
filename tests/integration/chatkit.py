"""Helpers of the whole-chat tests: what the fake gateways received (as sent, over real
loopback HTTP), and one call made the four ways a user makes it (Router or AsyncRouter,
chat or stream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

import turnout
from tests.chat_tools import CLOCK, IMAGE, WEATHER
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault
from turnout.fake import FakeGateways

# The providers this file covers (turnout-litellm has its own tests of the chat surface).
OPENAI_LIKE = ("meshapi", "mume", "mythicdot")
PROVIDERS = (*OPENAI_LIKE, "modelroute")
# Router or AsyncRouter, chat or stream.
HOWS = ("chat", "stream", "achat", "astream")
__all__ = ["CLOCK", "HOWS", "IMAGE", "OPENAI_LIKE", "PROVIDERS", "WEATHER", "Outcome", "Wire", "call"]


class Wire:
    """Every request each fake gateway answered during a test, as it arrived, with its reply."""

    def __init__(self, fake: FakeGateways) -> None:
        self.fake = fake
        self.exchanges: dict[str, list[tuple[EmulatedRequest, EmulatedResponse]]] = {p: [] for p in PROVIDERS}

    def install(self) -> None:
        for name in PROVIDERS:
            emulator = self.fake.emulator(name)
            original = emulator.handle
            log = self.exchanges[name]

            def handle(
                request: EmulatedRequest,
                fault: Fault | None = None,
                *,
                _original: Any = original,
                _log: list[Any] = log,
            ) -> EmulatedResponse:
                reply: EmulatedResponse = _original(request, fault)
                _log.append((request, reply))
                return reply

            emulator.handle = handle  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for name in PROVIDERS:
            vars(self.fake.emulator(name)).pop("handle", None)

    def requests(self, provider: str) -> list[EmulatedRequest]:
        return [request for request, _ in self.exchanges[provider]]

    def total(self) -> int:
        return sum(len(found) for found in self.exchanges.values())

    def chat(self, provider: str) -> tuple[EmulatedRequest, EmulatedResponse]:
        """The one chat request (a ModelRoute submit) and the reply that answered it."""
        found = [
            (q, r) for q, r in self.exchanges[provider] if q.method == "POST" and "/cancel" not in q.path
        ]
        assert len(found) == 1, [q.path for q, _ in found]
        return found[0]

    def body(self, provider: str) -> dict[str, Any]:
        payload = json.loads(self.chat(provider)[0].body)
        assert isinstance(payload, dict)
        return payload

    def answer(self, provider: str) -> EmulatedResponse:
        """The reply carrying the answer (ModelRoute's: the result)."""
        if provider != "modelroute":
            return self.chat(provider)[1]
        (reply,) = [r for q, r in self.exchanges[provider] if q.path.endswith("/result")]
        return reply


def sent_messages(provider: str, body: Mapping[str, Any]) -> Any:
    return body["input"]["messages"] if provider == "modelroute" else body["messages"]


def sent_params(provider: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat parameters of a body as sent (ModelRoute's in `input`), messages aside."""
    if provider == "modelroute":
        return {k: v for k, v in body["input"].items() if k != "messages"}
    return {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}


def sse_payloads(reply: EmulatedResponse) -> list[dict[str, Any]]:
    """The JSON events of a streamed reply, `[DONE]` left out."""
    assert reply.chunks is not None
    found = []
    for chunk in reply.chunks:
        data = chunk.decode().removeprefix("data: ").strip()
        if data != "[DONE]":
            found.append(json.loads(data))
    return found


@attrs.frozen
class Outcome:
    response: turnout.ChatResponse
    chunks: Sequence[turnout.ChatChunk] = ()
    health: Mapping[str, turnout.Health] = attrs.field(factory=dict)


def call(
    how: str,
    deployments: Sequence[turnout.Deployment],
    messages: Any,
    *,
    routes: Any = None,
    model: str | None = None,
    **kw: Any,
) -> Outcome:
    """One call, made as `how` says, on a router of its own (closed afterwards)."""
    if how.startswith("a"):
        return asyncio.run(_acall(how, deployments, messages, routes=routes, model=model, **kw))
    with turnout.Router(deployments, routes) as router:
        if how == "chat":
            return Outcome(router.chat(messages, model=model, **kw), (), router.health())
        with router.stream(messages, model=model, **kw) as stream:
            chunks = list(stream)
        assert stream.response is not None
        return Outcome(stream.response, chunks, router.health())


async def _acall(
    how: str, deployments: Sequence[turnout.Deployment], messages: Any, *, routes: Any, **kw: Any
) -> Outcome:
    async with turnout.AsyncRouter(deployments, routes) as router:
        if how == "achat":
            return Outcome(await router.chat(messages, **kw), (), await router.health())
        async with router.stream(messages, **kw) as stream:
            chunks = [chunk async for chunk in stream]
        assert stream.response is not None
        return Outcome(stream.response, chunks, await router.health())


def wire_fixture(fake: FakeGateways) -> Iterator[Wire]:
    wire = Wire(fake)
    wire.install()
    try:
        yield wire
    finally:
        wire.uninstall()
