"""Whole calls through `turnout.Router` or `turnout.AsyncRouter`, for the router's behaviour tests.

Only the public API: a router built with the acme plugins over a transport, one
call (or one stream) made, the answer or the error it raised returned. The
`calls` fixture (conftest.py) runs each test with both routers, which must
make the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import httpx

import turnout
from turnout.emulation import Fault, FaultScript, mock_transport

from .acme import AcmeEmulator

HI = [{"role": "user", "content": "hello there world"}]
ANSWER = "echo: hello there world"
# acme's own decisions (two retries; streams too) with millisecond waits and no jitter.
FAST = turnout.RetryPolicy(max_retries=2, base=0.001, cap=0.001, jitter="none")
NO_RETRY = turnout.RetryPolicy(max_retries=0)


def history(attempts: Sequence[turnout.Attempt]) -> list[tuple[str, str | None]]:
    """(deployment, kind or None) for each attempt, in order."""
    return [(a.deployment, a.error.kind.value if a.error else None) for a in attempts]


def emulated(script: FaultScript | None = None, hosts: str = "abc") -> httpx.MockTransport:
    """acme's emulator on `a.test`, `b.test`... (one each), faulted by `script`."""
    return mock_transport({f"{name}.test": AcmeEmulator() for name in hosts}, script)


def hosts(script: FaultScript) -> list[str]:
    return [request.host for request in script.requests]


def per_host(faults: Mapping[str, Sequence[Fault | None]]) -> FaultScript:
    """One script per deployment name: `{"a": [...]}` faults the requests to `a.test`."""
    return FaultScript.by(lambda request: request.host, {f"{k}.test": v for k, v in faults.items()})


def fixed(status: int, content: bytes, content_type: str = "application/json") -> httpx.MockTransport:
    """A gateway that answers every request with this status and body."""
    headers = {"content-type": content_type}
    return httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, content=content))


@attrs.define
class Streamed:
    """What one streamed call gave: the chunks that reached the caller, the error raised
    while iterating (or None), and the stream's `response`, `attempts` and `deployment`."""

    chunks: list[turnout.ChatChunk]
    error: turnout.ProviderError | None
    response: turnout.ChatResponse | None
    attempts: tuple[turnout.Attempt, ...]
    deployment: str | None

    @property
    def deltas(self) -> list[str]:
        return [chunk.delta for chunk in self.chunks]

    @property
    def text(self) -> str:
        return "".join(self.deltas)


Deployments = Sequence[turnout.Deployment] | Mapping[str, Any]


class Calls:
    """One call through the router of `mode` ("sync" or "async"), built from deployments
    or from a configuration mapping (`Router.from_config`). The last router built stays
    in `router` (closed) for what a test asserts about it afterwards."""

    def __init__(self, mode: str, plugins: turnout.Plugins) -> None:
        self.mode = mode
        self.plugins = plugins
        self.router: turnout.Router | turnout.AsyncRouter | None = None

    def __repr__(self) -> str:
        return f"<Calls {self.mode}>"

    def _build(self, deployments: Deployments, transport: httpx.MockTransport, router: Any) -> Any:
        cls = turnout.Router if self.mode == "sync" else turnout.AsyncRouter
        kw = {"plugins": self.plugins, "transport": transport, **router}
        if isinstance(deployments, Mapping):
            self.router = cls.from_config(deployments, **kw)
        else:
            self.router = cls(list(deployments), **kw)
        return self.router

    async def chat(
        self,
        deployments: Deployments,
        transport: httpx.MockTransport,
        *,
        params: Mapping[str, Any] | None = None,
        **router: Any,
    ) -> Any:
        """The response, or the `TurnoutError` the router raised. `params` go to the call
        (`model=`, `temperature=`...), the other keywords to the router."""
        call = dict(params or {})
        built = self._build(deployments, transport, router)
        try:
            if self.mode == "sync":
                with built:
                    return built.chat(HI, **call)
            async with built:
                return await built.chat(HI, **call)
        except turnout.TurnoutError as error:
            return error

    async def stream(
        self,
        deployments: Deployments,
        transport: httpx.MockTransport,
        *,
        params: Mapping[str, Any] | None = None,
        **router: Any,
    ) -> Streamed:
        """One streamed call read to its end (or to the error it raised)."""
        call = dict(params or {})
        built = self._build(deployments, transport, router)
        chunks: list[turnout.ChatChunk] = []
        error: turnout.ProviderError | None = None
        if self.mode == "sync":
            with built, built.stream(HI, **call) as stream:
                try:
                    chunks.extend(stream)
                except turnout.ProviderError as raised:
                    error = raised
            return Streamed(chunks, error, stream.response, stream.attempts, stream.deployment)
        async with built, built.stream(HI, **call) as astream:
            try:
                async for chunk in astream:
                    chunks.append(chunk)
            except turnout.ProviderError as raised:
                error = raised
        return Streamed(chunks, error, astream.response, astream.attempts, astream.deployment)
