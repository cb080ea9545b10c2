"""`Router` and `AsyncRouter`: the same decisions (`RouterCore`), two I/O drivers."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from ._drivers import AsyncDriver, SyncDriver
from ._health import Health
from ._models import ChatChunk, ChatRequest, ChatResponse, Message
from ._routing import CallRecord, RouterCore

__all__ = ["AsyncRouter", "AsyncStream", "Router", "Stream"]

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
_HEADERS = {"user-agent": "turnout/0.1"}

MessagesIn = Iterable[Message | Mapping[str, Any]]


class _Configurable(RouterCore):
    _owns_store = False

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any) -> Self:
        """A router from a TOML file or the same mapping; mistakes raise ConfigError."""
        from ._config import load_config

        config = load_config(source)
        kwargs = config.router_kwargs()
        router = cls(**{**kwargs, **overrides})
        # A store the configuration created (Redis) is the router's to close.
        router._owns_store = "store" not in overrides and kwargs.get("store") is not None
        return router

    def _start(
        self,
        messages: MessagesIn,
        model: str | None,
        deadline: float | None,
        params: dict[str, Any],
        *,
        stream: bool,
    ) -> tuple[Any, CallRecord, float, float]:
        limit = self.deadline if deadline is None else float(deadline)
        request = ChatRequest(messages, params)
        route = self.route(model)
        record = CallRecord()
        deadline_at = self._clock() + limit
        flow = self.call_flow(request, route, deadline_at, record, stream=stream)
        return flow, record, deadline_at, limit


class Router(_Configurable):
    """The synchronous router, over one pooled `httpx.Client`. Thread-safe."""

    def __init__(
        self,
        *args: Any,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(
            transport=transport, follow_redirects=False, limits=_LIMITS, headers=_HEADERS
        )

    def _driver(self, deadline_at: float, limit: float) -> SyncDriver:
        return SyncDriver(
            self._client,
            deadline_at,
            limit,
            self.timeout,
            self._clock,
            self.max_body,
            self.store,
            direct=self._owns_client,
        )

    def chat(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> ChatResponse:
        """Send one chat call through the route `model` (a route or deployment name)."""
        flow, _, deadline_at, limit = self._start(messages, model, deadline, params, stream=False)
        driver = self._driver(deadline_at, limit)
        run = driver.run(flow)
        try:
            next(run)
        except StopIteration as done:
            result: ChatResponse = done.value
            return result
        raise RuntimeError("a chat flow emitted a chunk")  # pragma: no cover

    def stream(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> Stream:
        """A stream of chunks; it falls back until its first chunk reaches you."""
        flow, record, deadline_at, limit = self._start(messages, model, deadline, params, stream=True)
        driver = self._driver(deadline_at, limit)
        return Stream(driver.run(flow), record)

    def health(self) -> dict[str, Health]:
        """Each deployment's breaker state, cooldown, in-flight calls, latency and recent errors."""
        return self.health_report(self.store.load(self._names))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
        close = getattr(self.store, "close", None)
        if self._owns_store and close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRouter(_Configurable):
    """The asyncio router, over one pooled `httpx.AsyncClient`. Safe to share between tasks."""

    def __init__(
        self,
        *args: Any,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            transport=transport, follow_redirects=False, limits=_LIMITS, headers=_HEADERS
        )

    def _driver(self, deadline_at: float, limit: float) -> AsyncDriver:
        return AsyncDriver(
            self._client,
            deadline_at,
            limit,
            self.timeout,
            self._clock,
            self.max_body,
            self.store,
            direct=self._owns_client,
        )

    async def chat(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> ChatResponse:
        flow, _, deadline_at, limit = self._start(messages, model, deadline, params, stream=False)
        driver = self._driver(deadline_at, limit)
        out: list[ChatResponse] = []
        async for _ in driver.run(flow, out):  # pragma: no cover - chat flows emit nothing
            raise RuntimeError("a chat flow emitted a chunk")
        return out[0]

    def stream(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> AsyncStream:
        flow, record, deadline_at, limit = self._start(messages, model, deadline, params, stream=True)
        driver = self._driver(deadline_at, limit)
        out: list[ChatResponse] = []
        return AsyncStream(driver.run(flow, out), record, out)

    async def health(self) -> dict[str, Health]:
        """Each deployment's breaker state, cooldown, in-flight calls, latency and recent errors."""
        return self.health_report(await self.store.aload(self._names))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
        aclose = getattr(self.store, "aclose", None)
        if self._owns_store and aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _StreamBase:
    def __init__(self, record: CallRecord) -> None:
        self._record = record
        self.response: ChatResponse | None = None

    @property
    def attempts(self) -> tuple[Any, ...]:
        """The attempts so far (complete once the stream has ended)."""
        return tuple(self._record.attempts)

    @property
    def deployment(self) -> str | None:
        return self._record.deployment

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._record.chunks)


class Stream(_StreamBase):
    """Iterate for `ChatChunk`s; use as a context manager so the connection is closed."""

    def __init__(self, run: Generator[ChatChunk, None, ChatResponse], record: CallRecord) -> None:
        super().__init__(record)
        self._run = run

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> ChatChunk:
        try:
            return next(self._run)
        except StopIteration as done:
            self.response = done.value
            raise StopIteration from None

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """`async for` over `ChatChunk`s; use `async with` so the connection is closed."""

    def __init__(
        self, run: AsyncGenerator[ChatChunk, None], record: CallRecord, out: list[ChatResponse]
    ) -> None:
        super().__init__(record)
        self._run = run
        self._out = out

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            return await anext(self._run)
        except StopAsyncIteration:
            if self._out:
                self.response = self._out[0]
            raise

    async def aclose(self) -> None:
        await self._run.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
