"""One router call, layered like httpx's `Client.send`, and written once.

    call_flow               fallback: which deployment next, hedging, waiting for one to free up
    retry_loop              retries on one deployment (turnout._retrying)
    DeploymentSeat.attempt  one attempt on a place claimed: the provider's flow, its outcome
                            settled (turnout._seat)

Each attempt is two steps on the shared state, `Claim` before and `Settle`
after (turnout._state): one round trip each on Redis.

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
from urllib.parse import urlsplit

from ._binding import Target
from ._errors import (
    KIND_RULES,
    Attempt,
    ErrorKind,
    FieldError,
    NoHealthyDeploymentError,
    ProviderError,
    TurnoutError,
    deadline_error,
    error_for,
)
from ._flow import CallAbandoned, Claim, Claimed, Flow, Notify, Race, Sleep, Spend
from ._health import BreakerConfig, DeploymentState, Health, report, set_aside
from ._limits import CallLimits
from ._models import ChatRequest, ChatResponse, Deployment
from ._observe import AttemptEvent, CallEvent, Observers
from ._provider import Provider, needed_features
from ._record import CallRecord
from ._retry import RetryPolicy
from ._retrying import Tried, retry_loop
from ._routing import Route, RouteTable
from ._seat import DeploymentSeat, sent
from ._state import MemoryStore, RetryBudget, StateStore

__all__ = ["CallRecord", "RouterCore"]

# What a provider flow is asked for: its deployment's target, the request, streaming or not.
FlowMaker = Callable[[Target, ChatRequest, bool], Flow[Any]]


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
        from ._limits import DEFAULT_MAX_BODY, DEFAULT_MAX_EVENT, DEFAULT_MAX_STREAM

        self.targets = dict(targets)
        self.names = tuple(self.targets)
        self.deadline = float(deadline)
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        # No response body is read past this (a success over it is parse_error).
        self.max_body = DEFAULT_MAX_BODY if max_body is None else max_body
        # One server-sent event, and a whole stream, are not read past these (a router
        # sets its own).
        self.max_event = DEFAULT_MAX_EVENT
        self.max_stream = DEFAULT_MAX_STREAM
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
        # Where each deployment's requests go, as events name it: host and port only.
        self.servers = {name: _server(target) for name, target in self.targets.items()}
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
            self.clock() + limit,
            limit,
            timeout=self.timeout,
            max_body=self.max_body,
            max_event=self.max_event,
            override=timeout,
            clock=self.clock,
            max_stream=self.max_stream,
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
                yield Notify(self._call_event(record, request, None, error))
            raise
        if self.observers.wanted(CallEvent):
            yield Notify(self._call_event(record, request, response, None))
        return response

    def _call_event(
        self,
        record: CallRecord,
        request: ChatRequest,
        response: ChatResponse | None,
        error: TurnoutError | None,
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
            request,
        )

    def note(
        self,
        record: CallRecord,
        attempt: Attempt,
        *,
        response: ChatResponse | None = None,
        started: float | None = None,
    ) -> Notify | None:
        """Add an attempt, decided, to the call's record; the `Notify` to yield when an
        observer or a logger wants to know. `started`: when it was sent (wall clock),
        when that is not just `elapsed` ago (a hedged leg told after its race)."""
        record.attempts.append(attempt)
        if not self.observers.wanted(AttemptEvent):
            return None
        target = self.targets.get(attempt.deployment)
        model = target.deployment.model if target is not None else ""
        address, port = self.servers.get(attempt.deployment, ("", None))
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
                None if response is None else response.usage,
                record.metadata,
                response,
                address,
                port,
                self.wall() - attempt.elapsed if started is None else started,
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
        names = table.members(route)

        def plan(states: Mapping[str, DeploymentState]) -> list[str]:
            return [name for name in table.plan(route, states) if name not in skip]

        queue: list[str] = []
        tried: set[str] = set()
        last: ProviderError | None = None
        waited = 0.0
        # The attempts of the previous round, whose decision (fallback or give up) is
        # known once the next claim says whether anything may be tried, and paid for.
        pending: list[Tried] = []
        deposit = True
        spend: Spend = "never"
        while limits.left() > 0:
            now = wall()
            candidates = tuple(name for name in queue if name not in tried)
            claimed: Claimed = yield Claim(
                candidates,
                names,
                now,
                self.breaker,
                self.budget,
                deposit=deposit,
                spend=spend,
                plan=plan if deposit else None,
            )
            if deposit:
                queue, deposit = list(claimed.candidates), False
            states = claimed.states
            if not claimed.spent:
                # A fallback into a deployment that is itself failing, and no retry token.
                # (After a wait for a set-aside deployment, the round's attempts are
                # already recorded: the call gives up with nothing more to record.)
                if pending:
                    pending[-1].reason = "the retry budget is spent"
                    yield from self._decided(record, pending, "give_up")
                assert last is not None
                raise self._final(last, record)
            name = claimed.name
            if name is None:
                _, soonest = table.choose(queue, tried, states, now)
                wait = None if soonest is None else soonest - now
                if wait is not None and self.wait_for_healthy and wait < limits.left():
                    # Every candidate left is set aside, and the first frees up within
                    # the deadline: wait for it rather than fail the call.
                    yield from self._decided(record, pending, "fallback")
                    pending = []
                    yield Sleep(wait)
                    waited += wait
                    continue
                yield from self._decided(record, pending, "give_up")
                if last is not None:
                    raise self._final(last, record)
                raise self._no_healthy(route, queue, tried, states, now, limits, record)
            yield from self._decided(record, pending, "fallback")
            seat = DeploymentSeat(self, name, request, record, stream, states[name])
            yield from seat.changed(claimed.before, states[name])
            tried.add(name)
            backup = None
            if route.hedge_after is not None and not stream:
                backup, _ = table.choose(queue, tried, states, now)
            if backup is None or route.hedge_after is None:
                retries = self._retries(seat, route, queue, tried, states, limits, stream, waited)
                ends = [(yield from retries)]
            else:
                others = tuple(n for n in queue if n not in tried)
                race: list[Tried] = yield Race(
                    (seat.attempt(waited), self._leg(others, names, request, record, route.hedge_after)),
                    (0.0, route.hedge_after),
                    _won,
                )
                ends = race
            waited = 0.0
            ran = [end for end in ends if end.admitted]
            tried.update(end.name for end in ran)
            winner = next((end for end in ran if end.error is None), None)
            if winner is not None:
                # Legs of a race that failed before the winner answered: the call moved on.
                yield from self._decided(record, [end for end in ran if end is not winner], "fallback")
                response = self._response(winner, record, stream)
                done = winner.attempt("done")
                yield from sent(self.note(record, done, response=response, started=winner.started))
                return response.answered_by(winner.name, winner.provider, tuple(record.attempts))
            error = ran[-1].error
            assert error is not None
            last = error
            if record.committed:
                error.partial_text = record.text
            following = (
                None if record.committed else table.next_after(error, route, queue, tried, False, states)
            )
            if following is None:
                yield from self._decided(record, ran, "give_up")
                raise self._final(error, record)
            pending, queue = ran, following
            # A fallback into a deployment that is failing too costs a retry token.
            spend = "if_failing" if KIND_RULES[error.kind].health_failure else "never"
        yield from self._decided(record, pending, "give_up")
        raise self._final(last if last is not None else deadline_error(limits.deadline), record)

    def _decided(self, record: CallRecord, ends: list[Tried], decision: str) -> list[Notify]:
        """Record the attempts that ended a round, with what the call did next; what to
        tell observers of them, to `yield from`."""
        notes = (
            self.note(record, end.attempt(decision), started=end.started) for end in ends if not end.noted
        )
        return [notify for notify in notes if notify is not None]

    def _leg(
        self,
        candidates: tuple[str, ...],
        names: tuple[str, ...],
        request: ChatRequest,
        record: CallRecord,
        waited: float,
    ) -> Flow[Tried]:
        """A hedged race's second leg: a place on the first candidate free when it
        starts, and one attempt there (none, when nothing is free: the race goes on)."""
        claimed: Claimed = yield Claim(candidates, names, self.wall(), self.breaker, self.budget)
        if claimed.name is None:
            return Tried("", "", admitted=False)
        seat = DeploymentSeat(self, claimed.name, request, record, False, claimed.states[claimed.name])
        yield from seat.changed(claimed.before, claimed.states[claimed.name])
        return (yield from seat.attempt(waited))

    def _retries(
        self,
        seat: DeploymentSeat,
        route: Route,
        queue: list[str],
        tried: set[str],
        states: Mapping[str, DeploymentState],
        limits: CallLimits,
        stream: bool,
        waited: float,
    ) -> Flow[Tried]:
        record = seat.record

        def can_fall_back(error: ProviderError) -> bool:
            return self.table.next_after(error, route, queue, tried, record.committed, states) is not None

        return retry_loop(
            seat,
            seat.target.policy_for(self.table.listed_by(route).get(seat.name)),
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


def _server(target: Target) -> tuple[str, int | None]:
    parts = urlsplit(target.deployment.base_url or target.provider.default_base_url or "")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    return parts.hostname or "", port


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _won(end: Tried) -> bool:
    return end.admitted and end.error is None
