"""`Router` and `AsyncRouter`: the same decisions (`RouterCore`), two I/O drivers.

`BaseRouter` checks and binds the configuration (the only place the router
meets the plugin manager) and prepares each call; `Router` and `AsyncRouter`
add their transports and the calls' I/O, and nothing else.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx

from ._async_driver import AsyncDriver
from ._async_transport import async_transport
from ._binding import bind, check_positive, check_routes
from ._call import RouterCore
from ._errors import TurnoutError
from ._flow import Flow
from ._health import BreakerConfig, Health
from ._limits import DEFAULT_MAX_BODY, DEFAULT_MAX_EVENT, DEFAULT_MAX_STREAM, CallLimits
from ._models import ChatResponse, Deployment, Message
from ._observe import Observers
from ._record import CallRecord
from ._request import call_request
from ._retry import PolicyLayer
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


ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class BaseRouter(RouterCore, Generic[ClientT, TransportT]):
    """Configuration, checked once, and what every call starts with; `Router` and
    `AsyncRouter` only add how their requests are sent.

    `transport`: the httpx transport every request goes through (default: the
    router's own); `mounts`: transports for some URLs (httpx's pattern keys, e.g.
    a proxy for `"https://"`); `http_client`: an httpx client of yours, used as it
    is (its headers, auth and hooks apply).
    """

    _owns_store = False

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: RoutesIn | None = None,
        *,
        http_client: ClientT | None = None,
        transport: TransportT | None = None,
        mounts: Mapping[str, TransportT] | None = None,
        deadline: float = 600.0,
        timeout: float = 60.0,
        retry_policy: PolicyLayer = None,
        max_retry_wait: float = 30.0,
        max_body: int = DEFAULT_MAX_BODY,
        max_event: int = DEFAULT_MAX_EVENT,
        max_stream: int = DEFAULT_MAX_STREAM,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = True,
        observers: Iterable[object] = (),
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
        check_positive(max_event, "max_event", integer=True)
        check_positive(max_stream, "max_stream", integer=True)
        registry: Plugins = plugins or default_plugins()
        targets = bind(deployments, registry, retry_policy)
        checked = check_routes(routes, list(targets))
        if any(route.retry_policy is not None for route in checked.values()):
            targets = bind(deployments, registry, retry_policy, checked)
        super().__init__(
            targets,
            checked,
            deadline=deadline,
            max_retry_wait=max_retry_wait,
            timeout=timeout,
            max_body=max_body,
            breaker=breaker,
            budget=budget,
            store=store,
            wait_for_healthy=wait_for_healthy,
            # The router's own observers, then those installed plugins contribute.
            observers=Observers([*observers, *registry.observers()]),
            clock=clock,
            wall_clock=wall_clock,
            rng=rng,
        )
        # Caps on one server-sent event and on a whole stream (see turnout._limits).
        self.max_event = max_event
        self.max_stream = max_stream
        self._closed = False
        self._client: ClientT | None = http_client
        # Without a transport of the user's, proxies from the environment apply (as in httpx).
        proxy = self._transport if transport is None else None
        self._transports: Mounts[TransportT] = Mounts(transport or self._transport(), mounts, proxy=proxy)

    @staticmethod
    def _transport(proxy: str | None = None) -> TransportT:
        """The router's own transport (through `proxy`, if given)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any) -> Self:
        """A router from a TOML file or the same mapping; mistakes raise ConfigError."""
        from ._config import load_config

        kwargs = load_config(source).router_kwargs()
        router = cls(**{**kwargs, **overrides})
        # A store the configuration created (Redis) is the router's to close.
        router._owns_store = "store" not in overrides and kwargs.get("store") is not None
        return router

    # -- a call ------------------------------------------------------------------

    def _start(
        self,
        messages: MessagesIn,
        model: str | None,
        params: dict[str, Any],
        kw: dict[str, Any],
        *,
        stream: bool,
    ) -> tuple[Flow[ChatResponse], CallRecord, CallLimits, Mapping[str, str] | None]:
        """Check the call (the caller's mistakes are raised here, before anything is
        sent) and make its flow."""
        if self._closed:
            raise TurnoutError("this router is closed: make a new one (nothing was sent)")
        request, options = call_request(messages, params, stream=stream, **kw)
        route = self.table.route(model)
        skip = self.unsupported(route, request, stream=stream)
        limits = self.limits(options.deadline, options.timeout)
        record = CallRecord(
            request.call_id,
            route.name,
            stream=stream,
            metadata=request.metadata,
            started=self.clock(),
            clock=self.clock,
        )
        flow = self.call_flow(request, route, limits, record, stream=stream, skip=skip)
        return flow, record, limits, options.extra_headers


class Router(BaseRouter[httpx.Client, httpx.BaseTransport]):
    """The synchronous router. Thread-safe.

    `transport`: the httpx transport every request goes through (default: the
    router's own, which bounds every socket read by the call's deadline);
    `mounts`: transports for some URLs (httpx's pattern keys, e.g. a proxy for
    `"https://"`); `http_client`: an `httpx.Client` of yours, used as it is
    (its headers, auth and hooks apply; deadlines are then checked between reads).
    """

    @staticmethod
    def _transport(proxy: str | None = None) -> httpx.BaseTransport:
        return SyncTransport(proxy=proxy, max_connections=_MAX_CONNECTIONS, max_keepalive=_MAX_KEEPALIVE)

    def _driver(self, limits: CallLimits, headers: Mapping[str, str] | None = None) -> SyncDriver:
        return SyncDriver(
            limits,
            self.store,
            transports=self._transports,
            client=self._client,
            executor=self._hedge_pool,
            headers=headers,
            observers=self.observers,
        )

    @functools.cached_property
    def _hedge_pool(self) -> concurrent.futures.ThreadPoolExecutor | None:
        """This router's threads for hedged legs (none without a hedged route): a pool
        of its own, so its calls never wait behind another router's losers."""
        if all(route.hedge_after is None for route in self.table.routes.values()):
            return None
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=_HEDGE_THREADS, thread_name_prefix="turnout-hedge"
        )

    def chat(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatResponse:
        """Send one chat call through the route `model` (a route or deployment name)."""
        kw = _keywords(timeout, deadline, extra_headers, extra_body, metadata)
        flow, _, limits, headers = self._start(messages, model, params, kw, stream=False)
        run = self._driver(limits, headers).run(flow)
        try:
            next(run)
        except StopIteration as done:
            result: ChatResponse = done.value
            return result
        raise RuntimeError("a chat flow emitted a chunk")  # pragma: no cover

    def stream(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Stream:
        """A stream of chunks; it falls back until its first chunk reaches you."""
        kw = _keywords(timeout, deadline, extra_headers, extra_body, metadata)
        flow, record, limits, headers = self._start(messages, model, params, kw, stream=True)
        return Stream(self._driver(limits, headers).run(flow), record)

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
        pool = self.__dict__.get("_hedge_pool")
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.store, "close", None)
        if self._owns_store and close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRouter(BaseRouter[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The asyncio router. Safe to share between tasks. Same arguments as `Router`,
    with httpx's async types (`httpx.AsyncClient`, `httpx.AsyncBaseTransport`)."""

    @staticmethod
    def _transport(proxy: str | None = None) -> httpx.AsyncBaseTransport:
        # Every connection is kept for reuse (5 s): a burst of concurrent calls finds those the
        # last one opened, instead of closing all but 50 and opening them again.
        return async_transport(proxy, max_connections=_MAX_CONNECTIONS, max_keepalive=_MAX_CONNECTIONS)

    def _driver(self, limits: CallLimits, headers: Mapping[str, str] | None = None) -> AsyncDriver:
        return AsyncDriver(
            limits,
            self.store,
            transports=self._transports,
            client=self._client,
            headers=headers,
            observers=self.observers,
        )

    async def chat(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatResponse:
        kw = _keywords(timeout, deadline, extra_headers, extra_body, metadata)
        flow, _, limits, headers = self._start(messages, model, params, kw, stream=False)
        out: list[ChatResponse] = []
        async for _ in self._driver(limits, headers).run(
            flow, out
        ):  # pragma: no cover - chat flows emit nothing
            raise RuntimeError("a chat flow emitted a chunk")
        return out[0]

    def stream(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> AsyncStream:
        kw = _keywords(timeout, deadline, extra_headers, extra_body, metadata)
        flow, record, limits, headers = self._start(messages, model, params, kw, stream=True)
        out: list[ChatResponse] = []
        return AsyncStream(self._driver(limits, headers).run(flow, out), record, out)

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


def _keywords(
    timeout: Any, deadline: Any, extra_headers: Any, extra_body: Any, metadata: Any
) -> dict[str, Any]:
    return {
        "timeout": timeout,
        "deadline": deadline,
        "extra_headers": extra_headers,
        "extra_body": extra_body,
        "metadata": metadata,
    }
