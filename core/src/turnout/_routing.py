"""The router's decisions, written once: which deployment next, retry, wait or fall back.

`RouterCore` is to `Router`/`AsyncRouter` what httpx's `BaseClient` is to
`Client`/`AsyncClient`: everything that is not I/O. A call is one generator
(`call_flow`) that delegates to the chosen provider's flow, catches its
normalized errors and decides; the drivers only perform the commands.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from ._errors import (
    KIND_RULES,
    ConfigError,
    ErrorKind,
    Fallback,
    NoHealthyDeploymentError,
    ProviderError,
    attribute_error,
    error_for,
)
from ._flow import DEFAULT_MAX_BODY, CallAbandoned, Emit, Flow, HTTPResponse, Race, Sleep
from ._health import (
    BreakerConfig,
    DeploymentState,
    Health,
    admit,
    availability,
    on_failure,
    on_rate_limit_headers,
    on_success,
    release,
    report,
)
from ._models import Attempt, ChatChunk, ChatRequest, ChatResponse, Deployment, Usage
from ._plugins import Plugins, default_plugins
from ._provider import Provider
from ._retry import Retry, RetryOverrides, RetryPolicy, effective_policy
from ._state import LoadState, MemoryStore, RetryBudget, StateStore, UpdateBudget, UpdateState

__all__ = ["CallRecord", "Leg", "Route", "RouterCore", "Target", "deadline_error"]

DEFAULT_ROUTE = "default"
Order = Callable[["RouterCore", "Route", Mapping[str, DeploymentState]], list[str]]


def _priority(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    return list(route.deployments)


def _weighted(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    # Efraimidis-Spirakis: a random order in which each deployment leads with
    # probability proportional to its weight.
    weights = {name: core.deployment(name).weight for name in route.deployments}
    keyed = [(core.rng.random() ** (1.0 / w) if w > 0 else -1.0, name) for name, w in weights.items()]
    return [name for _, name in sorted(keyed, reverse=True)]


def _round_robin(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    start = next(core.turns(route.name)) % len(route.deployments)
    return [*route.deployments[start:], *route.deployments[:start]]


def _least_latency(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    # Unmeasured deployments first: they must be measured to be compared.
    def key(item: tuple[int, str]) -> tuple[float, int]:
        latency = states[item[1]].latency
        return (-1.0 if latency is None else latency, item[0])

    return [name for _, name in sorted(enumerate(route.deployments), key=key)]


def _least_busy(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    ranked = sorted(enumerate(route.deployments), key=lambda item: (states[item[1]].inflight, item[0]))
    return [name for _, name in ranked]


def _lowest_cost(core: RouterCore, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    def cost(item: tuple[int, str]) -> tuple[float, int]:
        deployment = core.deployment(item[1])
        return (deployment.input_cost + deployment.output_cost, item[0])

    return [name for _, name in sorted(enumerate(route.deployments), key=cost)]


STRATEGIES: Mapping[str, Order] = {
    "priority": _priority,
    "weighted": _weighted,
    "round_robin": _round_robin,
    "least_latency": _least_latency,
    "least_busy": _least_busy,
    "lowest_cost": _lowest_cost,
}


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
    # Hedging: when the first attempt has not answered after this many seconds, the
    # next deployment is started too and the first success wins (chat calls only).
    hedge_after: float | None = None


@frozen
class Target:
    """A deployment bound to its provider and its effective retry policy."""

    deployment: Deployment
    provider: Provider
    policy: RetryPolicy


class Leg:
    """How one attempt ended: a result, a normalized error, or not admitted at all."""

    __slots__ = ("admitted", "elapsed", "error", "name", "provider", "result", "state", "waited")

    def __init__(
        self,
        name: str,
        provider: str,
        *,
        admitted: bool = True,
        result: Any = None,
        error: ProviderError | None = None,
        elapsed: float = 0.0,
        waited: float = 0.0,
        state: DeploymentState | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.admitted = admitted
        self.result = result
        self.error = error
        self.elapsed = elapsed
        self.waited = waited
        self.state = state


def _won(leg: Leg) -> bool:
    return leg.admitted and leg.error is None


class CallRecord:
    """What one call has done so far; a stream exposes it while it runs."""

    __slots__ = (
        "attempts",
        "chunks",
        "deployment",
        "finish_reason",
        "first_chunk_at",
        "provider",
        "request_id",
        "usage",
    )

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.chunks: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.request_id: str | None = None
        self.deployment: str | None = None
        self.provider: str | None = None
        self.first_chunk_at: float | None = None

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


class RouterCore:
    """Configuration and decisions shared by `Router` and `AsyncRouter`."""

    def __init__(
        self,
        deployments: Sequence[Deployment],
        routes: Mapping[str, Route | Sequence[str] | Mapping[str, Any]] | None = None,
        *,
        deadline: float = 600.0,
        retry_policy: RetryPolicy | RetryOverrides | None = None,
        max_retry_wait: float = 30.0,
        timeout: float = 60.0,
        max_body: int = DEFAULT_MAX_BODY,
        plugins: Plugins | None = None,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
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
        self._wall = wall_clock
        self.rng = rng or random.Random()
        self.breaker = breaker or BreakerConfig()
        self.budget = budget or RetryBudget()
        self.store: StateStore = store or MemoryStore(self.budget.burst)
        # When every deployment is set aside: wait (within the deadline) instead of raising.
        self.wait_for_healthy = wait_for_healthy
        self._targets = self._bind(deployments, retry_policy)
        self._names = tuple(self._targets)
        self._routes = self._check_routes(routes)
        self._turns = {name: itertools.count() for name in self._routes}

    # -- configuration -------------------------------------------------------

    def _bind(
        self, deployments: Sequence[Deployment], policy: RetryPolicy | RetryOverrides | None
    ) -> dict[str, Target]:
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
            # The provider's own checks first: it explains a missing base URL best.
            provider.check_deployment(deployment, path)
            base = deployment.base_url or provider.default_base_url
            if not base:
                raise ConfigError(
                    f"provider {provider.name!r} has no public URL: set one", path=f"{path}.base_url"
                )
            if not base.startswith(("http://", "https://")):
                raise ConfigError("must be an http:// or https:// URL", path=f"{path}.base_url", value=base)
            effective = effective_policy(provider.retry_policy, policy, deployment.retry_policy)
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

    def deployment(self, name: str) -> Deployment:
        return self._targets[name].deployment

    def policy(self, name: str) -> RetryPolicy:
        """The retry policy in force for a deployment: its provider's, adjusted by the
        router's and the deployment's own."""
        return self._targets[name].policy

    def turns(self, route: str) -> Iterator[int]:
        """The round-robin counter of a route (routes made for one deployment share one)."""
        counter = self._turns.get(route)
        if counter is None:
            counter = self._turns.setdefault(route, itertools.count())
        return counter

    def health_report(self, states: Mapping[str, DeploymentState]) -> dict[str, Health]:
        now = self._wall()
        return {name: report(name, states[name], now, self.breaker) for name in self._names}

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

    def _expand(
        self, routes: Iterable[str], seen: set[str], states: Mapping[str, DeploymentState]
    ) -> list[str]:
        """Deployments of `routes`, each ordered by its strategy, then of their fallback routes."""
        order: list[str] = []
        pending = list(routes)
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            route = self._routes[name]
            order.extend(d for d in STRATEGIES[route.strategy](self, route, states) if d not in order)
            pending.extend(route.fallbacks)
        return order

    def plan(self, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
        """The deployments a call on `route` may try, in order."""
        order = list(dict.fromkeys(STRATEGIES[route.strategy](self, route, states)))
        order.extend(d for d in self._expand(route.fallbacks, {route.name}, states) if d not in order)
        return order

    def next_after(
        self,
        error: ProviderError,
        route: Route,
        queue: list[str],
        tried: set[str],
        committed: bool,
        states: Mapping[str, DeploymentState],
    ) -> list[str] | None:
        """The queue to continue with after `error`, or None to raise it."""
        rule = error.fallback
        if rule is Fallback.ALWAYS or (rule is Fallback.BEFORE_FIRST_CHUNK and not committed):
            remaining = [d for d in queue if d not in tried]
        elif rule is Fallback.CONTENT_POLICY_ROUTE:
            special = self._expand(route.content_policy_fallbacks, set(), states)
            remaining = [d for d in special if d not in tried]
        elif rule is Fallback.CONTEXT_WINDOW_ROUTE:
            special = self._expand(route.context_window_fallbacks, set(), states)
            remaining = [d for d in special if d not in tried]
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
        """One call: choices, attempts, retries, waits and fallbacks, until a result or an error."""
        clock, wall, config = self._clock, self._wall, self.breaker
        yield UpdateBudget(self.budget.deposit)
        states: dict[str, DeploymentState] = yield LoadState(self._names)
        queue = self.plan(route, states)
        tried: set[str] = set()
        current: str | None = None
        retries = 0
        waited = 0.0
        last: ProviderError | None = None
        while clock() < deadline_at:
            now = wall()
            if current is None:
                current, soonest = self._choose(queue, tried, states, now)
                if current is None:
                    wait = (soonest or now) - now
                    if last is None and self.wait_for_healthy and wait < deadline_at - clock():
                        yield Sleep(wait)
                        waited += wait
                        states = yield LoadState(self._names)
                        continue
                    if last is not None:
                        raise self._final(last, record)
                    raise NoHealthyDeploymentError(
                        f"no deployment of route {route.name!r} may be tried now",
                        route=route.name,
                        retry_after=wait,
                        attempts=tuple(record.attempts),
                    )
            name = current
            backup = None
            hedge = route.hedge_after
            if hedge is not None and not stream and retries == 0:
                backup, _ = self._choose(queue, tried | {name}, states, now)
            if backup is None or hedge is None:
                tried.add(name)
                legs = [(yield from self._leg(name, request, record, stream, now, waited))]
            else:
                tried.update((name, backup))
                race: list[Leg] = yield Race(
                    (
                        self._leg(name, request, record, stream, now, waited),
                        self._leg(backup, request, record, stream, now, hedge),
                    ),
                    (0.0, hedge),
                    _won,
                )
                legs = race
            waited = 0.0
            ran = [leg for leg in legs if leg.admitted]
            if not ran:  # another call took the last probe slot, or it just tripped
                current = None
                continue
            for leg in ran:
                record.attempts.append(Attempt(leg.name, leg.provider, leg.error, leg.elapsed, leg.waited))
                if leg.error is None:
                    return self._response(leg, record, stream)
            error = ran[-1].error
            assert error is not None
            for leg in ran:
                if leg.state is not None:
                    states[leg.name] = leg.state
            last = error
            if record.committed:
                error.partial_text = "".join(record.chunks)
                raise self._final(error, record)
            following = self.next_after(error, route, queue, tried, record.committed, states)
            if backup is None:
                decision = self._targets[name].policy.decide(error, retries, streaming=stream, rng=self.rng)
                if isinstance(decision, Retry):
                    left = deadline_at - clock()
                    too_long = decision.delay > self.max_retry_wait and following is not None
                    ready, _ = availability(states[name], wall() + decision.delay, config)
                    if decision.delay < left and not too_long and ready:
                        if not (yield UpdateBudget(self.budget.withdraw)):
                            raise self._final(error, record)
                        yield Sleep(decision.delay)
                        waited = decision.delay
                        retries += 1
                        tried.discard(name)
                        continue
            if following is None:
                raise self._final(error, record)
            if (
                KIND_RULES[error.kind].health_failure
                and self._failing_next(following, tried, states, wall())
                and not (yield UpdateBudget(self.budget.withdraw))
            ):
                raise self._final(error, record)
            queue, current, retries = following, None, 0
        raise self._final(last if last is not None else deadline_error(self.deadline), record)

    def _leg(
        self, name: str, request: ChatRequest, record: CallRecord, stream: bool, now: float, waited: float
    ) -> Flow[Leg]:
        """One attempt on one deployment: claim a place, send, record the outcome.
        Never raises a ProviderError: the caller decides what a failure means."""
        target = self._targets[name]
        config, clock = self.breaker, self._clock
        provider = target.provider.name
        if not (yield UpdateState(name, _admitter(now, config))):
            return Leg(name, provider, admitted=False)
        started = clock()
        try:
            try:
                result = yield from self._attempt(target, request, record, stream)
            except ProviderError as error:
                elapsed = clock() - started
                attribute_error(error, provider=provider, deployment=name, secret=target.deployment.key())
                state = yield UpdateState(name, _failure(error, self._wall(), config, self.rng, elapsed))
                return Leg(name, provider, error=error, elapsed=elapsed, waited=waited, state=state)
            first = record.first_chunk_at if stream else None
            yield UpdateState(name, _success((first or clock()) - started, config))
        except CallAbandoned:
            # Abandoned (or lost a race) before its outcome was recorded: give back its place.
            yield UpdateState(name, _released)
            raise
        return Leg(name, provider, result=result, elapsed=clock() - started, waited=waited)

    def _response(self, leg: Leg, record: CallRecord, stream: bool) -> ChatResponse:
        record.deployment = leg.name
        record.provider = leg.provider
        if not stream:
            result = leg.result
            assert isinstance(result, ChatResponse)
            return ChatResponse(
                content=result.content,
                finish_reason=result.finish_reason,
                usage=result.usage,
                model=result.model,
                request_id=result.request_id,
                deployment=leg.name,
                provider=leg.provider,
                attempts=tuple(record.attempts),
            )
        return ChatResponse(
            content="".join(record.chunks),
            finish_reason=record.finish_reason,
            usage=record.usage,
            request_id=record.request_id,
            deployment=leg.name,
            provider=leg.provider,
            attempts=tuple(record.attempts),
        )

    def _failing_next(
        self, queue: list[str], tried: set[str], states: Mapping[str, DeploymentState], now: float
    ) -> bool:
        """Whether the deployment a fallback would go to is failing too. Only then does
        the fallback spend retry budget: moving a call to a healthy deployment adds no
        load to a failing one, and is what fallback is for."""
        following, _ = self._choose(queue, tried, states, now)
        if following is None:
            return True
        state = states[following]
        return state.status != "closed" or state.consecutive > 0

    def _choose(
        self, queue: list[str], tried: set[str], states: Mapping[str, DeploymentState], now: float
    ) -> tuple[str | None, float | None]:
        """The first untried deployment that may be tried now, else when the first one may."""
        soonest: float | None = None
        for name in queue:
            if name in tried:
                continue
            ok, at = availability(states[name], now, self.breaker)
            if ok:
                return name, None
            soonest = at if soonest is None else min(soonest, at)
        return None, soonest

    def _attempt(self, target: Target, request: ChatRequest, record: CallRecord, stream: bool) -> Flow[Any]:
        deployment = target.deployment
        inner = (
            target.provider.stream(deployment, request)
            if stream
            else target.provider.chat(deployment, request)
        )
        return self._delegate(inner, record if stream else None, deployment.name)

    @staticmethod
    def _final(error: ProviderError, record: CallRecord) -> ProviderError:
        error.attempts = tuple(record.attempts)
        return error

    def _delegate(self, inner: Flow[Any], record: CallRecord | None, name: str) -> Flow[Any]:
        """`yield from inner`, but seeing the chunks it hands to the caller and the
        rate-limit headers of every response it receives."""
        value: Any = None
        thrown: BaseException | None = None
        clock = self._clock
        while True:
            try:
                command = inner.send(value) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                return stop.value
            value = thrown = None
            if record is not None and type(command) is Emit:
                if record.first_chunk_at is None:
                    record.first_chunk_at = clock()
                record.observe(command.chunk)
            try:
                value = yield command
            except BaseException as exc:  # handed on, so the provider's flow can clean up
                thrown = exc
                continue
            # A success that used up the quota: steer the next calls away before they
            # hit a 429. (On an error, its retry_after and cooldown already decide.)
            if type(value) is HTTPResponse and value.ok and _RATE_HEADERS.intersection(value.headers):
                yield UpdateState(name, _rate_limited(value.headers, self._wall()))


_RATE_HEADERS = frozenset({"x-ratelimit-remaining", "x-ratelimit-remaining-requests"})


# The store applies these to the current record; each returns (new state, result).
def _admitter(now: float, config: BreakerConfig) -> Callable[[DeploymentState], tuple[DeploymentState, bool]]:
    return lambda state: admit(state, now, config)


def _failure(
    error: ProviderError, now: float, config: BreakerConfig, rng: random.Random, latency: float
) -> Callable[[DeploymentState], tuple[DeploymentState, DeploymentState]]:
    def apply(state: DeploymentState) -> tuple[DeploymentState, DeploymentState]:
        new = on_failure(state, error, now, config, rng, latency)
        return new, new

    return apply


def _success(
    latency: float, config: BreakerConfig
) -> Callable[[DeploymentState], tuple[DeploymentState, None]]:
    return lambda state: (on_success(state, latency, config), None)


def _released(state: DeploymentState) -> tuple[DeploymentState, None]:
    return release(state), None


def _rate_limited(
    headers: Mapping[str, str], now: float
) -> Callable[[DeploymentState], tuple[DeploymentState, None]]:
    return lambda state: (on_rate_limit_headers(state, headers, now), None)
