"""Routes and the order a call tries deployments in. Pure: data in, names out.

A route is an ordered group of deployments with a strategy (priority,
weighted, round_robin, least_latency, least_busy, lowest_cost) and fallback
routes. `RouteTable` answers the fallback layer's questions: which
deployments a call may try and in which order, which one may be tried now,
and where a call goes after an error.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from attrs import field, frozen

from ._errors import ConfigError, Fallback, ProviderError
from ._health import BreakerConfig, DeploymentState, availability
from ._models import Deployment
from ._retry import PolicyLayer

__all__ = ["DEFAULT_ROUTE", "STRATEGIES", "Route", "RouteTable"]

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
    # Hedging: when the first attempt has not answered after this many seconds, the
    # next deployment is started too and the first success wins (chat calls only).
    hedge_after: float | None = None
    # The retry policy of this route's own deployments (a policy, overrides or a
    # registered name), between the router's and each deployment's own.
    retry_policy: PolicyLayer = None


Order = Callable[["RouteTable", Route, Mapping[str, DeploymentState]], list[str]]


def _priority(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    return list(route.deployments)


def _weighted(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    # Efraimidis-Spirakis: a random order in which each deployment leads with
    # probability proportional to its weight.
    keyed = []
    for name in route.deployments:
        weight = table.deployments[name].weight
        keyed.append((table.rng.random() ** (1.0 / weight) if weight > 0 else -1.0, name))
    return [name for _, name in sorted(keyed, reverse=True)]


def _round_robin(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    start = next(table.turns(route.name)) % len(route.deployments)
    return [*route.deployments[start:], *route.deployments[:start]]


def _least_latency(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    # Unmeasured deployments first: they must be measured to be compared.
    def key(item: tuple[int, str]) -> tuple[float, int]:
        latency = states[item[1]].latency
        return (-1.0 if latency is None else latency, item[0])

    return [name for _, name in sorted(enumerate(route.deployments), key=key)]


def _least_busy(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    ranked = sorted(enumerate(route.deployments), key=lambda item: (states[item[1]].inflight, item[0]))
    return [name for _, name in ranked]


def _lowest_cost(table: RouteTable, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
    def cost(item: tuple[int, str]) -> tuple[float, int]:
        deployment = table.deployments[item[1]]
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


class RouteTable:
    """The routes of one router, over its deployments."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        deployments: Mapping[str, Deployment],
        breaker: BreakerConfig,
        rng: random.Random,
    ) -> None:
        self.routes = dict(routes)
        self.deployments = deployments
        self.breaker = breaker
        self.rng = rng
        self._turns: dict[str, Iterator[int]] = {name: itertools.count() for name in routes}
        self._members: dict[str, dict[str, str]] = {}

    def turns(self, route: str) -> Iterator[int]:
        """The round-robin counter of a route (routes made for one deployment share one)."""
        counter = self._turns.get(route)
        if counter is None:
            counter = self._turns.setdefault(route, itertools.count())
        return counter

    def route(self, model: str | None) -> Route:
        """The route a call's `model` names: a route, else a single deployment."""
        if model is None:
            return next(iter(self.routes.values()))
        route = self.routes.get(model)
        if route is not None:
            return route
        if model in self.deployments:
            return Route(model, (model,))
        known = sorted({*self.routes, *self.deployments})
        raise ConfigError(
            f"no route or deployment of that name; known: {', '.join(known)}", path="model", value=model
        )

    def members(self, route: Route) -> tuple[str, ...]:
        """Every deployment a call on `route` could reach, fallbacks and special
        fallback routes included (unordered: no strategy consulted, no turn taken)."""
        return tuple(self.listed_by(route))

    def listed_by(self, route: Route) -> Mapping[str, str]:
        """Every deployment a call on `route` could reach, with the route that lists
        it: `route` itself first, then its fallback routes in the order they are
        reached. A deployment's retry policy on this call is that route's."""
        found = self._members.get(route.name)
        if found is None or route.name not in self.routes:
            names = dict.fromkeys(route.deployments, route.name)
            pending = [*route.fallbacks, *route.content_policy_fallbacks, *route.context_window_fallbacks]
            seen: set[str] = {route.name}
            while pending:
                other = self.routes[pending.pop(0)]
                if other.name in seen:
                    continue
                seen.add(other.name)
                for name in other.deployments:
                    names.setdefault(name, other.name)
                pending.extend(
                    [*other.fallbacks, *other.content_policy_fallbacks, *other.context_window_fallbacks]
                )
            found = names
            if route.name in self.routes:
                self._members[route.name] = found
        return found

    def _order(self, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
        return STRATEGIES[route.strategy](self, route, states)

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
            route = self.routes[name]
            order.extend(d for d in self._order(route, states) if d not in order)
            pending.extend(route.fallbacks)
        return order

    def plan(self, route: Route, states: Mapping[str, DeploymentState]) -> list[str]:
        """The deployments a call on `route` may try, in order."""
        order = list(dict.fromkeys(self._order(route, states)))
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

    def choose(
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

    def failing(self, name: str | None, states: Mapping[str, DeploymentState]) -> bool:
        """Whether a deployment a fallback would go to is failing too (or there is none)."""
        if name is None:
            return True
        state = states[name]
        return state.status != "closed" or state.consecutive > 0


def route_from(name: str, spec: Any) -> Route:
    """A route from what a user passed: a Route, a list of deployment names, or a table."""
    if isinstance(spec, Route):
        return spec
    if isinstance(spec, Mapping):
        try:
            return Route(name, **spec)
        except TypeError as exc:
            raise ConfigError(f"invalid route: {exc}", path=f"routes.{name}") from None
    if isinstance(spec, list | tuple):
        return Route(name, tuple(spec))
    raise ConfigError("must be a list of deployment names or a table", path=f"routes.{name}", value=spec)
