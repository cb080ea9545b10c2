"""One router call, layered like httpx's `Client.send`, and written once.

    call_flow      fallback: which deployment next, hedging, waiting for one to free up
    retry_loop     retries on one deployment (turnout._retrying)
    _Seat.attempt  one attempt: claim a place, run the provider's flow, report the outcome

`RouterCore` is to `Router`/`AsyncRouter` what httpx's `BaseClient` is to
`Client`/`AsyncClient`: everything that is not I/O. A call is one generator
that the sync and async drivers perform; neither re-implements a decision.
The core does not know about plugins: it is handed deployments already bound
to their providers (`turnout._binding`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._binding import Target
from ._errors import (
    KIND_RULES,
    Attempt,
    ErrorKind,
    FieldError,
    NoHealthyDeploymentError,
    ProviderError,
    TurnoutError,
    attribute_error,
    deadline_error,
    error_for,
)
from ._flow import CallAbandoned, Emit, Flow, HTTPResponse, Notify, Race, Sleep
from ._health import (
    BreakerConfig,
    DeploymentState,
    Health,
    admitting,
    availability,
    failing,
    rate_limited,
    released,
    report,
    set_aside,
    succeeding,
)
from ._limits import CallLimits
from ._models import ChatRequest, ChatResponse, Deployment, Usage
from ._observe import AttemptEvent, BreakerEvent, CallEvent, Observers, breaker_events
from ._provider import Provider, needed_features
from ._pump import relay
from ._record import CallRecord
from ._retry import RetryPolicy
from ._retrying import Tried, retry_loop
from ._routing import Route, RouteTable
from ._state import LoadState, MemoryStore, RetryBudget, StateStore, UpdateBudget, UpdateState

__all__ = ["CallRecord", "RouterCore"]

# What a provider flow is asked for: its deployment's target, the request, streaming or not.
FlowMaker = Callable[[Target, ChatRequest, bool], Flow[Any]]
_RATE_HEADERS = frozenset({"x-ratelimit-remaining", "x-ratelimit-remaining-requests"})


def _provider_flow(target: Target, request: ChatRequest, stream: bool) -> Flow[Any]:
    provider, deployment = target.provider, target.deployment
    return provider.stream(deployment, request) if stream else provider.chat(deployment, request)


class RouterCore:
    """Configuration and decisions shared by `Router` and `AsyncRouter`."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        routes: Mapping[str, Route],
        *,
        deadline: float = 600.0,
        max_retry_wait: float = 30.0,
        timeout: float = 60.0,
        max_body: int | None = None,
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        store: StateStore | None = None,
        wait_for_healthy: bool = True,
        observers: Observers | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        make_flow: FlowMaker = _provider_flow,
    ) -> None:
        from ._limits import DEFAULT_MAX_BODY

        self.targets = dict(targets)
        self.names = tuple(self.targets)
        self.deadline = float(deadline)
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        # No response body is read past this (a success over it is parse_error).
        self.max_body = DEFAULT_MAX_BODY if max_body is None else max_body
        self.clock = clock
        self.wall = wall_clock
        self.rng = rng or random.Random()
        self.breaker = breaker or BreakerConfig()
        self.budget = budget or RetryBudget()
        self.store: StateStore = store or MemoryStore(self.budget.burst)
        # When every deployment left is set aside and the first frees up within the
        # call's deadline: wait for it instead of failing (False: fail at once).
        self.wait_for_healthy = wait_for_healthy
        deployments = {name: target.deployment for name, target in self.targets.items()}
        self.table = RouteTable(routes, deployments, self.breaker, self.rng)
        self.make_flow = make_flow
        self.observers = observers or Observers()
        # Whether a provider decides for itself what it cannot carry (not only by capabilities).
        self._custom_unsupported = any(
            type(target.provider).unsupported is not Provider.unsupported for target in self.targets.values()
        )

    # -- what it holds ------------------------------------------------------------

    @property
    def deployments(self) -> dict[str, Deployment]:
        return {name: target.deployment for name, target in self.targets.items()}

    @property
    def routes(self) -> dict[str, Route]:
        return dict(self.table.routes)

    def deployment(self, name: str) -> Deployment:
        return self.targets[name].deployment

    def policy(self, name: str, route: str | None = None) -> RetryPolicy:
        """The retry policy in force for a deployment: its provider's, adjusted by the
        router's, the route's (when the call reaches it through `route`, and the
        route sets one) and the deployment's own."""
        return self.targets[name].policy_for(route)

    def route(self, model: str | None) -> Route:
        """The route a call's `model` names: a route, else a single deployment."""
        return self.table.route(model)

    def unsupported(self, route: Route, request: ChatRequest, *, stream: bool) -> frozenset[str]:
        """The deployments of `route` (and its fallbacks) that cannot carry `request`;
        when none can, the `unsupported_feature` error, before any request."""
        needed: list[str] | None = None
        if not self._custom_unsupported:
            needed = needed_features(request, stream=stream)
            if not needed:
                return frozenset()
        missing: dict[str, list[str]] = {}
        candidates = self.table.members(route)
        for name in candidates:
            target = self.targets[name]
            provider = target.provider
            if type(provider).unsupported is Provider.unsupported:
                # The common case, without asking each provider to look at the request again.
                if needed is None:
                    needed = needed_features(request, stream=stream)
                lacking = [feature for feature in needed if feature not in provider.capabilities]
            else:
                lacking = provider.unsupported(target.deployment, request, stream=stream)
            if lacking:
                missing[name] = lacking
        if missing and len(missing) == len(candidates):
            raise unsupported_error(route.name, missing)
        return frozenset(missing)

    # -- what the facades show -------------------------------------------------

    def limits(self, deadline: float | None = None, timeout: float | None = None) -> CallLimits:
        limit = self.deadline if deadline is None else float(deadline)
        return CallLimits(
            self.clock() + limit, limit, self.timeout, self.max_body, override=timeout, clock=self.clock
        )

    def health_report(self, states: Mapping[str, DeploymentState]) -> dict[str, Health]:
        now = self.wall()
        return {name: report(name, states[name], now, self.breaker) for name in self.names}

    # -- fallback: the call --------------------------------------------------------

    def call_flow(
        self,
        request: ChatRequest,
        route: Route,
        limits: CallLimits,
        record: CallRecord,
        *,
        stream: bool,
        skip: frozenset[str] = frozenset(),
    ) -> Flow[ChatResponse]:
        """One call: choices, attempts, retries, waits and fallbacks, until a result or an
        error. Deployments in `skip` cannot carry the request and are never tried. Its
        end is told to the router's observers (a `CallEvent`), however it ends."""
        try:
            response = yield from self._fallbacks(request, route, limits, record, stream, skip)
        except (TurnoutError, CallAbandoned) as ended:
            # (Not on GeneratorExit: a flow being closed may not yield.)
            if self.observers.wanted(CallEvent):
                error = ended if isinstance(ended, TurnoutError) else None
                yield Notify(self._call_event(record, None, error))
            raise
        if self.observers.wanted(CallEvent):
            yield Notify(self._call_event(record, response, None))
        return response

    def _call_event(
        self, record: CallRecord, response: ChatResponse | None, error: TurnoutError | None
    ) -> CallEvent:
        first = record.first_chunk_at
        return CallEvent(
            record.call_id,
            record.route,
            response.deployment if response is not None else None,
            tuple(record.attempts),
            error,
            self.clock() - record.started,
            response.usage if response is not None else None,
            record.stream,
            None if first is None else first - record.started,
            record.metadata,
        )

    def note(self, record: CallRecord, attempt: Attempt, usage: Usage | None = None) -> Notify | None:
        """Add an attempt, decided, to the call's record; the `Notify` to yield when an
        observer or a logger wants to know."""
        record.attempts.append(attempt)
        if not self.observers.wanted(AttemptEvent):
            return None
        target = self.targets.get(attempt.deployment)
        model = target.deployment.model if target is not None else ""
        return Notify(
            AttemptEvent(
                record.call_id,
                record.route,
                attempt.deployment,
                attempt.provider,
                model,
                len(record.attempts),
                attempt.error,
                attempt.elapsed,
                attempt.waited,
                attempt.decision,
                attempt.reason,
                usage,
                record.metadata,
            )
        )

    def _fallbacks(
        self,
        request: ChatRequest,
        route: Route,
        limits: CallLimits,
        record: CallRecord,
        stream: bool,
        skip: frozenset[str],
    ) -> Flow[ChatResponse]:
        table, wall = self.table, self.wall
        yield UpdateBudget(self.budget.deposit)
        states: dict[str, DeploymentState] = yield LoadState(self.names)
        queue = [name for name in table.plan(route, states) if name not in skip]
        tried: set[str] = set()
        last: ProviderError | None = None
        waited = 0.0
        while limits.left() > 0:
            now = wall()
            name, soonest = table.choose(queue, tried, states, now)
            if name is None:
                wait = None if soonest is None else soonest - now
                if wait is not None and self.wait_for_healthy and wait < limits.left():
                    # Every candidate left is set aside, and the first frees up within
                    # the deadline: wait for it rather than fail the call.
                    yield Sleep(wait)
                    waited += wait
                    states = yield LoadState(self.names)
                    continue
                if last is not None:
                    raise self._final(last, record)
                raise self._no_healthy(route, queue, tried, states, now, limits, record)
            backup = None
            if route.hedge_after is not None and not stream:
                backup, _ = table.choose(queue, tried | {name}, states, now)
            if backup is None or route.hedge_after is None:
                tried.add(name)
                retries = self._retries(
                    name, request, route, queue, tried, states, limits, record, stream, waited
                )
                ends = [(yield from retries)]
            else:
                tried.update((name, backup))
                race: list[Tried] = yield Race(
                    (
                        _Seat(self, name, request, record, stream).attempt(waited),
                        _Seat(self, backup, request, record, stream).attempt(route.hedge_after),
                    ),
                    (0.0, route.hedge_after),
                    _won,
                )
                ends = race
            waited = 0.0
            ran = [end for end in ends if end.admitted]
            if not ran:
                # Another call took the last probe slot, or it just tripped or cooled
                # down: look again (and wait for the first to free up, as above).
                tried.difference_update(end.name for end in ends)
                states = yield LoadState(self.names)
                continue
            for end in ran:
                if end.state is not None:
                    states[end.name] = end.state
            winner = next((end for end in ran if end.error is None), None)
            if winner is not None:
                # Legs of a race that failed before the winner answered: the call moved on.
                for end in ran:
                    if end is not winner:
                        yield from _sent(self.note(record, end.attempt("fallback")))
                response = self._response(winner, record, stream)
                yield from _sent(self.note(record, winner.attempt("done"), response.usage))
                return response.answered_by(winner.name, winner.provider, tuple(record.attempts))
            error = ran[-1].error
            assert error is not None
            last = error
            following = (
                None if record.committed else table.next_after(error, route, queue, tried, False, states)
            )
            if following is not None and KIND_RULES[error.kind].health_failure:
                after, _ = table.choose(following, tried, states, wall())
                if table.failing(after, states) and not (yield UpdateBudget(self.budget.withdraw)):
                    following = None
                    ran[-1].reason = "the retry budget is spent"
            decision = "fallback" if following is not None else "give_up"
            for end in ran:
                if not end.recorded:
                    yield from _sent(self.note(record, end.attempt(decision)))
            if record.committed:
                error.partial_text = record.text
            if following is None:
                raise self._final(error, record)
            queue = following
        raise self._final(last if last is not None else deadline_error(limits.deadline), record)

    def _retries(
        self,
        name: str,
        request: ChatRequest,
        route: Route,
        queue: list[str],
        tried: set[str],
        states: Mapping[str, DeploymentState],
        limits: CallLimits,
        record: CallRecord,
        stream: bool,
        waited: float,
    ) -> Flow[Tried]:
        seat = _Seat(self, name, request, record, stream)

        def can_fall_back(error: ProviderError) -> bool:
            return self.table.next_after(error, route, queue, tried, record.committed, states) is not None

        return retry_loop(
            seat,
            self.targets[name].policy_for(self.table.listed_by(route).get(name)),
            limits=limits,
            streaming=stream,
            note=lambda attempt: self.note(record, attempt),
            max_wait=self.max_retry_wait,
            can_fall_back=can_fall_back,
            rng=self.rng,
            waited=waited,
        )

    def _response(self, end: Tried, record: CallRecord, stream: bool) -> ChatResponse:
        record.deployment = end.name
        record.provider = end.provider
        result = end.result if not stream else record.response()
        assert isinstance(result, ChatResponse)
        return result

    def _no_healthy(
        self,
        route: Route,
        queue: list[str],
        tried: set[str],
        states: Mapping[str, DeploymentState],
        now: float,
        limits: CallLimits,
        record: CallRecord,
    ) -> NoHealthyDeploymentError:
        reasons: dict[str, str] = {}
        soonest: float | None = None
        for name in queue:
            if name in tried:
                continue
            found = set_aside(states[name], now, self.breaker)
            if found is not None:
                reason, until = found
                reasons[name] = f"{reason} for {until - now:.1f} s more (until {_clock_time(until)})"
                soonest = until if soonest is None else min(soonest, until)
        wait = None if soonest is None else soonest - now
        each = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        return NoHealthyDeploymentError(
            f"no deployment of route {route.name!r} may be tried before the call's deadline "
            f"(in {max(limits.left(), 0.0):.1f} s): {each or 'none left to try'}",
            route=route.name,
            retry_after=wait,
            attempts=tuple(record.attempts),
            reasons=reasons,
        )

    @staticmethod
    def _final(error: ProviderError, record: CallRecord) -> ProviderError:
        error.attempts = tuple(record.attempts)
        return error


def unsupported_error(route: str, missing: Mapping[str, list[str]]) -> ProviderError:
    """No deployment can carry the request: the caller's, raised before any request."""
    features = sorted({feature for lacking in missing.values() for feature in lacking})
    each = "; ".join(f"{name}: {', '.join(lacking)}" for name, lacking in missing.items())
    return error_for(
        ErrorKind.BAD_REQUEST,
        f"no deployment of route {route!r} can carry this request ({', '.join(features)}): {each}",
        code="unsupported_feature",
        details=tuple(FieldError(name, "unsupported_feature", ", ".join(f)) for name, f in missing.items()),
    )


def _clock_time(when: float) -> str:
    """A wall-clock time as people read it in logs: 12:03:04 UTC."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(when))


def _sent(command: Notify | None) -> Flow[None]:
    """Yield `command` if there is one (so a note costs nothing when nobody listens)."""
    if command is not None:
        yield command


def _won(end: Tried) -> bool:
    return end.admitted and end.error is None


class _Seat:
    """One deployment as the retry layer sees it: admission, attempts and health."""

    def __init__(
        self, core: RouterCore, name: str, request: ChatRequest, record: CallRecord, stream: bool
    ) -> None:
        self.core = core
        self.name = name
        self.target = core.targets[name]
        self.request = request
        self.record = record
        self.stream = stream
        self.state: DeploymentState | None = None

    @property
    def committed(self) -> bool:
        return self.record.committed

    def ready_in(self, delay: float) -> float:
        if self.state is None:
            return delay
        now = self.core.wall()
        ready, at = availability(self.state, now + delay, self.core.breaker)
        return delay if ready else max(delay, at - now)

    def spend(self) -> Flow[bool]:
        spent: bool = yield UpdateBudget(self.core.budget.withdraw)
        return spent

    def attempt(self, waited: float) -> Flow[Tried]:
        """Claim a place, send, record the outcome. Never raises a ProviderError: the
        layers above decide what a failure means."""
        core, name, record = self.core, self.name, self.record
        config, clock = core.breaker, core.clock
        provider = self.target.provider.name
        admitted, old, state = yield UpdateState(name, admitting(core.wall(), config))
        if not admitted:
            self.state = state  # what set it aside, for the retry layer's wait
            return Tried(name, provider, admitted=False, state=state)
        if old.status != state.status and core.observers.wanted(BreakerEvent):
            yield from self._changed(old, state)
        started = clock()
        try:
            try:
                inner = core.make_flow(self.target, self.request, self.stream)
                if self.stream:  # every chunk is watched, and the stream's head
                    result = yield from relay(inner, before=self._seen, after=self._headers)
                else:  # the final response's headers come with the answer
                    result = yield from inner
                    if isinstance(result, ChatResponse):
                        yield from self._quota(result.headers)
            except ProviderError as error:
                elapsed = clock() - started
                attribute_error(
                    error, provider=provider, deployment=name, secret=self.target.deployment.key()
                )
                old, state = yield UpdateState(name, failing(error, core.wall(), config, core.rng, elapsed))
                self.state = state
                if core.observers.wanted(BreakerEvent):
                    yield from self._changed(old, state)
                return Tried(name, provider, error=error, elapsed=elapsed, waited=waited, state=state)
            first = record.first_chunk_at if self.stream else None
            old, state = yield UpdateState(name, succeeding((first or clock()) - started, config))
            if old.status != state.status and core.observers.wanted(BreakerEvent):
                yield from self._changed(old, state)
        except CallAbandoned as abandoned:
            # The caller went away (or a hedged leg lost its race) before the outcome:
            # give back the place, and say so in the call's record.
            yield UpdateState(name, released)
            why = str(abandoned) or "abandoned"
            attempt = Attempt(name, provider, None, clock() - started, waited, "abandoned", why)
            yield from _sent(core.note(record, attempt))
            raise
        except Exception:
            # A mistake that is nobody's health (a body that cannot be serialized, a bug
            # in a plugin): give back the place, and let it go on.
            yield UpdateState(name, released)
            raise
        return Tried(name, provider, result=result, elapsed=clock() - started, waited=waited)

    def _changed(self, old: DeploymentState, new: DeploymentState) -> Flow[None]:
        for event in breaker_events(self.name, self.target.provider.name, old, new, self.core.wall()):
            yield Notify(event)

    def _seen(self, command: Any) -> None:
        if type(command) is Emit:
            record = self.record
            if record.first_chunk_at is None:
                record.first_chunk_at = self.core.clock()
            record.observe(command.chunk)

    def _headers(self, value: Any) -> Flow[None] | None:
        if type(value) is not HTTPResponse:
            return None
        self.record.headers = dict(value.headers)
        return self._quota(value.headers) if value.ok else None

    def _quota(self, headers: Mapping[str, str]) -> Flow[None]:
        """A success that used up the quota: steer the next calls away before they hit
        a 429. (On an error, its retry_after and cooldown already decide.)"""
        if _RATE_HEADERS.intersection(headers):
            yield UpdateState(self.name, rate_limited(headers, self.core.wall()))
