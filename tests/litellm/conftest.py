from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import EmulatedRequest, Fault, mock_transport
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


class Script:
    """Faults by endpoint, in order, and every request seen (for asserting the wire)."""

    def __init__(self, faults: dict[str, Sequence[Fault | None]] | None = None) -> None:
        self.queues = {name: list(items) for name, items in (faults or {}).items()}
        self.requests: list[EmulatedRequest] = []

    @staticmethod
    def endpoint(request: EmulatedRequest) -> str:
        path = request.path.rstrip("/")
        return path.rsplit("/", 1)[-1] if "/jobs/" in path else path

    def __call__(self, request: EmulatedRequest) -> Fault | None:
        self.requests.append(request)
        queue = self.queues.get(self.endpoint(request), [])
        return queue.pop(0) if queue else None

    def paths(self) -> list[str]:
        return [self.endpoint(r) for r in self.requests]

    def bodies(self, endpoint: str) -> list[Any]:
        return [r.json() for r in self.requests if self.endpoint(r) == endpoint]


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
def script() -> Script:
    return Script()


@pytest.fixture
def transport(emulator: LiteLLMEmulator, script: Script) -> httpx.MockTransport:
    return mock_transport({HOST: emulator}, script)


def make_transport(emulator: LiteLLMEmulator, script: Script) -> httpx.MockTransport:
    return mock_transport({HOST: emulator}, script)
