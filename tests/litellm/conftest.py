from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import EmulatedRequest, Fault, FaultScript, mock_transport
from turnout_litellm.emulator import LiteLLMEmulator

HOST = "litellm.test"
BASE = f"https://{HOST}/api"
KEY = "sk-litellm-virtual-key-0123456789"
TEAM = "team_test"
HI = [{"role": "user", "content": "hello there world"}]
# Tiny waits, no jitter: retries are exercised without sleeping for real.
FAST = turnout.RetryPolicy(max_retries=2, base=0.001, cap=0.001, jitter="none")


def deployment(name: str = "lite", model: str = "ChatAgent", **kw: Any) -> turnout.Deployment:
    kw.setdefault("api_key", KEY)
    kw.setdefault("base_url", BASE)
    kw.setdefault("options", {"team_id": TEAM})
    kw.setdefault("retry_policy", FAST)
    return turnout.Deployment(name, "litellm", model, **kw)


def endpoint(request: EmulatedRequest) -> str:
    """The jobs endpoint a request is for: `create`, `llm-call`, `complete`, `create-and-call`..."""
    path = request.path.rstrip("/")
    return path.rsplit("/", 1)[-1] if "/jobs/" in path else path


def jobs(faults: Mapping[str, Sequence[Fault | None]] | None = None) -> FaultScript:
    """Faults by endpoint, in order (`{"llm-call": [Fault(...)]}`), recording every request."""
    return FaultScript.by(endpoint, faults or {})


def paths(script: FaultScript) -> list[str]:
    return [endpoint(r) for r in script.requests]


def bodies(script: FaultScript, name: str) -> list[Any]:
    return [r.json() for r in script.requests if endpoint(r) == name]


class Recording(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Wraps a transport and records each request's path and read timeout."""

    def __init__(self, inner: httpx.MockTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, float | None]] = []

    def _record(self, request: httpx.Request) -> None:
        timeout = request.extensions.get("timeout", {})
        self.seen.append((request.url.path, timeout.get("read")))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._record(request)
        return self.inner.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._record(request)
        return await self.inner.handle_async_request(request)


def raw_transport(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def sse_body(frames: Iterable[bytes]) -> bytes:
    return b"".join(frames)


@pytest.fixture
def emulator() -> LiteLLMEmulator:
    return LiteLLMEmulator()


@pytest.fixture
def script() -> FaultScript:
    return jobs()


@pytest.fixture
def transport(emulator: LiteLLMEmulator, script: FaultScript) -> httpx.MockTransport:
    return mock_transport({HOST: emulator}, script)


def make_transport(emulator: LiteLLMEmulator, script: FaultScript) -> httpx.MockTransport:
    return mock_transport({HOST: emulator}, script)
