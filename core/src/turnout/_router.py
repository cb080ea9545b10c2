"""`Router` and `AsyncRouter`: the same decisions (`RouterCore`), two I/O drivers.

`BaseRouter` checks and binds the configuration (the only place the router
meets the plugin manager) and prepares each call; `Router` and `AsyncRouter`
add their transports and the calls' I/O, and nothing else.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import httpx

from ._async_driver import AsyncDriver
from ._binding import bind, check_positive, check_routes
from ._call import CallRecord, RouterCore
from ._errors import TurnoutError
from ._flow import Flow
from ._health import BreakerConfig, Health
from ._limits import DEFAULT_MAX_BODY, CallLimits
from ._models import ChatRequest, ChatResponse, Deployment, Message
from ._retry import RetryOverrides, RetryPolicy
from ._routing import Route
from ._state import RetryBudget, StateStore
from ._stream import AsyncStream, Stream
from ._sync_driver import SyncDriver
from ._transport import Mounts, SyncTransport

if TYPE_CHECKING:
    from ._plugins import Plugins

__all__ = ["AsyncRouter", "BaseRouter", "Router"]

MessagesIn = Iterable[Message | Mapping[str, Any]]
RoutesIn = Mapping[str, Route | Sequence[str] | Mapping[str, Any]]

_MAX_CONNECTIONS = 200
_MAX_KEEPALIVE = 50
# Threads for hedged legs, per router; the pool grows on demand up to this.
_HEDGE_THREADS = 64


class BaseRouter(RouterCore):
    """Configuration, checked once, and what every call starts with."""

    _owns_store = False

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: RoutesIn | None = None,
        *,
        deadline: float = 600.0,
        timeout: float = 60.0,
        retry_policy: RetryPolicy | RetryOverrides | None = None,
        max_retry_wait: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = False,
        plugins: Plugins | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        from ._plugins import default_plugins

        check_positive(deadline, "deadline")
        check_positive(timeout, "timeout")
        check_positive(max_retry_wait, "max_retry_wait", allow_zero=True)
        check_positive(max_body, "max_body", integer=True)
        targets = bind(deployments, plugins or default_plugins(), retry_policy)
        super().__init__(
            targets,
            check_routes(routes, list(targets)),
            deadline=deadline,
            max_retry_wait=max_retry_wait,
            timeout=timeout,
            max_body=max_body,
            breaker=breaker,
            budget=budget,
            store=store,
            wait_for_healthy=wait_for_healthy,
            clock=clock,
            wall_clock=wall_clock,
            rng=rng,
        )
        self._closed = False

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any) -> Self:
        """A router from a TOML file or the same mapping; mistakes raise ConfigError."""
        from ._config import load_config

        kwargs = load_config(source).router_kwargs()
        router = cls(**{**kwargs, **overrides})
        # A store the configuration created (Redis) is the router's to close.
        router._owns_store = "store" not in overrides and kwargs.get("store") is not None
        return router

    # -- what it holds ---------------------------------------------------------

    @property
    def deployments(self) -> dict[str, Deployment]:
        return {name: target.deployment for name, target in self.targets.items()}

    @property
    def routes(self) -> dict[str, Route]:
        return dict(self.table.routes)

    def deployment(self, name: str) -> Deployment:
        return self.targets[name].deployment

    def policy(self, name: str) -> RetryPolicy:
        """The retry policy in force for a deployment: its provider's, adjusted by the
        router's and the deployment's own."""
        return self.targets[name].policy

    def route(self, model: str | None) -> Route:
        """The route a call's `model` names: a route, else a single deployment."""
        return self.table.route(model)

    # -- a call ------------------------------------------------------------------

    def _start(
        self,
        messages: MessagesIn,
        model: str | None,
        deadline: float | None,
        params: dict[str, Any],
        *,
        stream: bool,
    ) -> tuple[Flow[ChatResponse], CallRecord, CallLimits]:
        if self._closed:
            raise TurnoutError("this router is closed: make a new one (nothing was sent)")
        limits = self.limits(deadline)
        request = ChatRequest(messages, params)
        record = CallRecord()
        flow = self.call_flow(request, self.table.route(model), limits, record, stream=stream)
        return flow, record, limits


class Router(BaseRouter):
    """The synchronous router. Thread-safe.

    `transport`: the httpx transport every request goes through (default: the
    router's own, which bounds every socket read by the call's deadline);
    `mounts`: transports for some URLs (httpx's pattern keys, e.g. a proxy for
    `"https://"`); `http_client`: an `httpx.Client` of yours, used as it is
    (its headers, auth and hooks apply; deadlines are then checked between reads).
    """

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: RoutesIn | None = None,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        mounts: Mapping[str, httpx.BaseTransport] | None = None,
        deadline: float = 600.0,
        timeout: float = 60.0,
        retry_policy: RetryPolicy | RetryOverrides | None = None,
        max_retry_wait: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = False,
        plugins: Plugins | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            deployments,
            routes,
            deadline=deadline,
            timeout=timeout,
            retry_policy=retry_policy,
            max_retry_wait=max_retry_wait,
            max_body=max_body,
            breaker=breaker,
            budget=budget,
            store=store,
            wait_for_healthy=wait_for_healthy,
            plugins=plugins,
            clock=clock,
            wall_clock=wall_clock,
            rng=rng,
        )
        self._client = http_client
        own = transport is None
        self._transports: Mounts[httpx.BaseTransport] = Mounts(
            transport or _sync_transport(), mounts, proxy=_sync_transport if own else None
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def _driver(self, limits: CallLimits, headers: Mapping[str, str] | None = None) -> SyncDriver:
        return SyncDriver(
            limits,
            self.store,
            transports=self._transports,
            client=self._client,
            executor=self._hedge_pool(),
            headers=headers,
        )

    def _hedge_pool(self) -> concurrent.futures.ThreadPoolExecutor | None:
        if self._executor is None and any(r.hedge_after is not None for r in self.table.routes.values()):
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=_HEDGE_THREADS, thread_name_prefix="turnout-hedge"
            )
        return self._executor

    def chat(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> ChatResponse:
        """Send one chat call through the route `model` (a route or deployment name)."""
        flow, _, limits = self._start(messages, model, deadline, params, stream=False)
        run = self._driver(limits).run(flow)
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
        flow, record, limits = self._start(messages, model, deadline, params, stream=True)
        return Stream(self._driver(limits).run(flow), record)

    def health(self) -> dict[str, Health]:
        """Each deployment's breaker state, cooldown, in-flight calls, latency and recent errors."""
        return self.health_report(self.store.load(self.names))

    def close(self) -> None:
        """Close the connections (and a state store the configuration made). Calls made
        afterwards raise `TurnoutError`; closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        if self._client is None:
            for transport in self._transports.all():
                transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.store, "close", None)
        if self._owns_store and close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRouter(BaseRouter):
    """The asyncio router. Safe to share between tasks. Same arguments as `Router`,
    with httpx's async types (`httpx.AsyncClient`, `httpx.AsyncBaseTransport`)."""

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: RoutesIn | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        deadline: float = 600.0,
        timeout: float = 60.0,
        retry_policy: RetryPolicy | RetryOverrides | None = None,
        max_retry_wait: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = False,
        plugins: Plugins | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            deployments,
            routes,
            deadline=deadline,
            timeout=timeout,
            retry_policy=retry_policy,
            max_retry_wait=max_retry_wait,
            max_body=max_body,
            breaker=breaker,
            budget=budget,
            store=store,
            wait_for_healthy=wait_for_healthy,
            plugins=plugins,
            clock=clock,
            wall_clock=wall_clock,
            rng=rng,
        )
        self._client = http_client
        own = transport is None
        self._transports: Mounts[httpx.AsyncBaseTransport] = Mounts(
            transport or _async_transport(), mounts, proxy=_async_transport if own else None
        )

    def _driver(self, limits: CallLimits, headers: Mapping[str, str] | None = None) -> AsyncDriver:
        return AsyncDriver(
            limits, self.store, transports=self._transports, client=self._client, headers=headers
        )

    async def chat(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> ChatResponse:
        flow, _, limits = self._start(messages, model, deadline, params, stream=False)
        out: list[ChatResponse] = []
        async for _ in self._driver(limits).run(flow, out):  # pragma: no cover - chat flows emit nothing
            raise RuntimeError("a chat flow emitted a chunk")
        return out[0]

    def stream(
        self, messages: MessagesIn, *, model: str | None = None, deadline: float | None = None, **params: Any
    ) -> AsyncStream:
        flow, record, limits = self._start(messages, model, deadline, params, stream=True)
        out: list[ChatResponse] = []
        return AsyncStream(self._driver(limits).run(flow, out), record, out)

    async def health(self) -> dict[str, Health]:
        """Each deployment's breaker state, cooldown, in-flight calls, latency and recent errors."""
        return self.health_report(await self.store.aload(self.names))

    async def aclose(self) -> None:
        """See `Router.close`."""
        if self._closed:
            return
        self._closed = True
        if self._client is None:
            for transport in self._transports.all():
                await transport.aclose()
        aclose = getattr(self.store, "aclose", None)
        if self._owns_store and aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _sync_transport(proxy: str | None = None) -> httpx.BaseTransport:
    return SyncTransport(proxy=proxy, max_connections=_MAX_CONNECTIONS, max_keepalive=_MAX_KEEPALIVE)


def _async_transport(proxy: str | None = None) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_KEEPALIVE)
    return httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
