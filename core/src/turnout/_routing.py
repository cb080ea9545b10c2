"""The router's decisions, written once: which deployment next, retry, wait or fall back.

`RouterCore` is to `Router`/`AsyncRouter` what httpx's `BaseClient` is to
`Client`/`AsyncClient`: everything that is not I/O. A call is one generator
(`call_flow`) that delegates to the chosen provider's flow, catches its
normalized errors and decides; the drivers only perform the commands.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from ._errors import ConfigError, ErrorKind, Fallback, ProviderError, error_for
from ._flow import DEFAULT_MAX_BODY, Emit, Flow, Sleep
from ._models import Attempt, ChatChunk, ChatRequest, ChatResponse, Deployment, Usage
from ._plugins import Plugins, default_plugins
from ._provider import Provider
from ._retry import Retry, RetryPolicy

__all__ = ["CallRecord", "Route", "RouterCore", "Target", "deadline_error"]

STRATEGIES = frozenset({"priority"})
DEFAULT_ROUTE = "default"


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@frozen
class Route:
    """An ordered group of deployments a call may be sent to, with its fallbacks."""

    name: str
    deployments: tuple[str, ...] = field(converter=_names)
    strategy: str = "priority"
    # Other routes, tried (in order) when this one is exhausted.
    fallbacks: tuple[str, ...] = field(default=(), converter=_names)
    # Routes tried only after content_filtered / context_length_exceeded.
    content_policy_fallbacks: tuple[str, ...] = field(default=(), converter=_names)
    context_window_fallbacks: tuple[str, ...] = field(default=(), converter=_names)


@frozen
class Target:
    """A deployment bound to its provider and its effective retry policy."""

    deployment: Deployment
    provider: Provider
    policy: RetryPolicy


class CallRecord:
    """What one call has done so far; a stream exposes it while it runs."""

    __slots__ = ("attempts", "chunks", "deployment", "finish_reason", "provider", "request_id", "usage")

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.chunks: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.request_id: str | None = None
        self.deployment: str | None = None
        self.provider: str | None = None

    def observe(self, chunk: ChatChunk) -> None:
        self.chunks.append(chunk.delta)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.request_id is not None:
            self.request_id = chunk.request_id

    @property
    def committed(self) -> bool:
        """A chunk reached the caller: the call can no longer move elsewhere."""
        return bool(self.chunks)


def deadline_error(deadline: float) -> ProviderError:
    return error_for(
        ErrorKind.TIMEOUT,
        f"the call's deadline of {deadline:g}s passed",
        retryable=False,
        code="deadline_exceeded",
    )


def _redact(error: ProviderError, secret: str | None) -> None:
    """Gateways sometimes echo the key they rejected; it must not travel further."""
    if not secret or len(secret) < 6:
        return
    if secret in error.message:
        error.message = error.message.replace(secret, "***")
        error.args = (error.message,)


class RouterCore:
    """Configuration and decisions shared by `Router` and `AsyncRouter`."""

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: Mapping[str, Route | Sequence[str] | Mapping[str, Any]] | None = None,
        *,
        deadline: float = 600.0,
        retry_policy: RetryPolicy | None = None,
        max_retry_wait: float = 30.0,
        timeout: float = 60.0,
        max_body: int = DEFAULT_MAX_BODY,
        plugins: Plugins | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0:
            raise ConfigError("must be a positive number of seconds", path="deadline", value=deadline)
        self.deadline = float(deadline)
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        # No response body is read past this (a success over it is parse_error).
        self.max_body = max_body
        self._plugins = plugins or default_plugins()
        self._clock = clock
        self._rng = rng or random.Random()
        self._targets = self._bind(deployments, retry_policy)
        self._routes = self._check_routes(routes)

    # -- configuration -------------------------------------------------------

    def _bind(self, deployments: Sequence[Deployment], policy: RetryPolicy | None) -> dict[str, Target]:
        if not deployments:
            raise ConfigError("at least one deployment is needed", path="deployments")
        targets: dict[str, Target] = {}
        for index, deployment in enumerate(deployments):
            path = f"deployments[{index}]"
            if not isinstance(deployment, Deployment):
                raise ConfigError("must be a turnout.Deployment", path=path, value=type(deployment).__name__)
            if deployment.name in targets:
                raise ConfigError("duplicate deployment name", path=f"{path}.name", value=deployment.name)
            provider = self._plugins.provider(deployment.provider, path=f"{path}.provider")
            base = deployment.base_url or provider.default_base_url
            if not base.startswith(("http://", "https://")):
                raise ConfigError("must be an http:// or https:// URL", path=f"{path}.base_url", value=base)
            provider.check_deployment(deployment, path)
            effective = deployment.retry_policy or policy or provider.retry_policy
            targets[deployment.name] = Target(deployment, provider, effective)
        return targets

    def _check_routes(
        self, routes: Mapping[str, Route | Sequence[str] | Mapping[str, Any]] | None
    ) -> dict[str, Route]:
        if not routes:
            return {DEFAULT_ROUTE: Route(DEFAULT_ROUTE, tuple(self._targets))}
        checked: dict[str, Route] = {}
        for name, spec in routes.items():
            path = f"routes.{name}"
            if isinstance(spec, Route):
                route = spec
            elif isinstance(spec, Mapping):
                try:
                    route = Route(name, **spec)
                except TypeError as exc:
                    raise ConfigError(f"invalid route: {exc}", path=path) from None
            elif isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
                route = Route(name, tuple(spec))
            else:
                raise ConfigError("must be a list of deployment names or a table", path=path, value=spec)
            if not route.deployments:
                raise ConfigError("a route needs at least one deployment", path=f"{path}.deployments")
            for i, dep in enumerate(route.deployments):
                if dep not in self._targets:
                    raise ConfigError("unknown deployment", path=f"{path}.deployments[{i}]", value=dep)
            if route.strategy not in STRATEGIES:
                raise ConfigError(
                    f"unknown strategy; known: {', '.join(sorted(STRATEGIES))}",
                    path=f"{path}.strategy",
                    value=route.strategy,
                )
            checked[name] = route
        for name, route in checked.items():
            for attr in ("fallbacks", "content_policy_fallbacks", "context_window_fallbacks"):
                for i, other in enumerate(getattr(route, attr)):
                    if other not in checked:
                        raise ConfigError("unknown route", path=f"routes.{name}.{attr}[{i}]", value=other)
        return checked

    @property
    def deployments(self) -> dict[str, Deployment]:
        return {name: target.deployment for name, target in self._targets.items()}

    @property
    def routes(self) -> dict[str, Route]:
        return dict(self._routes)

    def route(self, model: str | None) -> Route:
        """The route a call's `model` names: a route, else a single deployment."""
        if model is None:
            return next(iter(self._routes.values()))
        route = self._routes.get(model)
        if route is not None:
            return route
        if model in self._targets:
            return Route(model, (model,))
        known = sorted({*self._routes, *self._targets})
        raise ConfigError(
            f"no route or deployment of that name; known: {', '.join(known)}", path="model", value=model
        )

    # -- planning ------------------------------------------------------------

    def _expand(self, routes: Iterable[str], seen: set[str]) -> list[str]:
        """Deployments of `routes` and, after them, of their fallback routes."""
        order: list[str] = []
        pending = list(routes)
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            route = self._routes[name]
            order.extend(d for d in route.deployments if d not in order)
            pending.extend(route.fallbacks)
        return order

    def plan(self, route: Route) -> list[str]:
        """The deployments a call on `route` may try, in order."""
        order = list(dict.fromkeys(route.deployments))
        fallback_order = self._expand(route.fallbacks, {route.name})
        order.extend(d for d in fallback_order if d not in order)
        return order

    def next_after(
        self, error: ProviderError, route: Route, queue: list[str], tried: set[str], committed: bool
    ) -> list[str] | None:
        """The queue to continue with after `error`, or None to raise it."""
        rule = error.fallback
        if rule is Fallback.ALWAYS or (rule is Fallback.BEFORE_FIRST_CHUNK and not committed):
            remaining = [d for d in queue if d not in tried]
        elif rule is Fallback.CONTENT_POLICY_ROUTE:
            remaining = [d for d in self._expand(route.content_policy_fallbacks, set()) if d not in tried]
        elif rule is Fallback.CONTEXT_WINDOW_ROUTE:
            remaining = [d for d in self._expand(route.context_window_fallbacks, set()) if d not in tried]
        else:
            return None
        return remaining or None

    # -- the call ------------------------------------------------------------

    def call_flow(
        self,
        request: ChatRequest,
        route: Route,
        deadline_at: float,
        record: CallRecord,
        *,
        stream: bool,
    ) -> Flow[ChatResponse]:
        """One call: attempts, retries, waits and fallbacks, until a result or an error."""
        clock = self._clock
        queue = self.plan(route)
        tried: set[str] = set()
        retries = 0
        waited = 0.0
        last: ProviderError | None = None
        while queue:
            name = queue[0]
            tried.add(name)
            target = self._targets[name]
            deployment = target.deployment
            if clock() >= deadline_at:
                break
            started = clock()
            inner = (
                target.provider.stream(deployment, request)
                if stream
                else target.provider.chat(deployment, request)
            )
            try:
                result = yield from self._delegate(inner, record if stream else None)
            except ProviderError as error:
                error.provider = target.provider.name
                error.deployment = name
                _redact(error, deployment.key())
                record.attempts.append(Attempt(name, error.provider, error, clock() - started, waited))
                waited = 0.0
                last = error
                if record.committed:
                    error.partial_text = "".join(record.chunks)
                    raise self._final(error, record) from None
                decision = target.policy.decide(error, retries, streaming=stream, rng=self._rng)
                following = self.next_after(error, route, queue, tried, record.committed)
                if isinstance(decision, Retry):
                    left = deadline_at - clock()
                    too_long = decision.delay > self.max_retry_wait and following is not None
                    if decision.delay < left and not too_long:
                        yield Sleep(decision.delay)
                        waited = decision.delay
                        retries += 1
                        continue
                if following is None:
                    raise self._final(error, record) from None
                queue = following
                retries = 0
                continue
            record.attempts.append(Attempt(name, target.provider.name, None, clock() - started, waited))
            record.deployment = name
            record.provider = target.provider.name
            if not stream:
                assert isinstance(result, ChatResponse)
                return ChatResponse(
                    content=result.content,
                    finish_reason=result.finish_reason,
                    usage=result.usage,
                    model=result.model,
                    request_id=result.request_id,
                    deployment=name,
                    provider=target.provider.name,
                    attempts=tuple(record.attempts),
                )
            return ChatResponse(
                content="".join(record.chunks),
                finish_reason=record.finish_reason,
                usage=record.usage,
                request_id=record.request_id,
                deployment=name,
                provider=target.provider.name,
                attempts=tuple(record.attempts),
            )
        raise self._final(last if last is not None else deadline_error(self.deadline), record)

    @staticmethod
    def _final(error: ProviderError, record: CallRecord) -> ProviderError:
        error.attempts = tuple(record.attempts)
        return error

    @staticmethod
    def _delegate(inner: Flow[Any], record: CallRecord | None) -> Flow[Any]:
        """`yield from inner`, but seeing the chunks it hands to the caller."""
        value: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                command = inner.send(value) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                return stop.value
            value = thrown = None
            if record is not None and type(command) is Emit:
                record.observe(command.chunk)
            try:
                value = yield command
            except BaseException as exc:  # handed on, so the provider's flow can clean up
                thrown = exc
