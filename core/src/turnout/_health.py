"""Deployment health as data: the breaker, cooldowns, rate-limit exhaustion, latency.

Every function here is pure: it takes a `DeploymentState` (and the time) and
returns a new one. State stores only keep and swap these records
atomically, so the in-memory store and the Redis store share one logic.

Times are wall-clock seconds (`time.time()`), so several processes and
machines agree on when a breaker reopens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Literal

from attrs import evolve, field, frozen

from ._errors import KIND_RULES, ErrorKind, ProviderError
from ._hints import bounded, quota_exhausted, reset_in
from ._ranges import COUNT, FRACTION, POSITIVE, SHARE
from ._retry import backoff

__all__ = [
    "BreakerConfig",
    "DeploymentState",
    "Health",
    "Outcome",
    "admit",
    "availability",
    "exhausted_until",
    "failing",
    "on_failure",
    "on_rate_limit_headers",
    "on_success",
    "open_for",
    "release",
    "report",
    "set_aside",
    "settle",
]

BreakerStatus = Literal["closed", "open", "half_open"]
ERROR_HISTORY = 20


@frozen
class BreakerConfig:
    """When a deployment is set aside, and for how long.

    The defaults are chosen by measurement (bench/resilience_sim.py, figures in
    docs/resilience.md): a dead upstream trips after 12 failures in a row and
    then gets only probes; an upstream failing a third of its answers at random
    almost never trips (under 1 % of runs of 1,000 attempts), so a degraded
    upstream is retried and fallen back across instead of being taken out;
    one failing 60 % or more is taken out on the failure rate within about
    a hundred attempts. It stays out 10 s at first, doubling to 2 minutes: two
    deployments on an upstream down 10 s in every 30 s still answer about 69 %
    of calls (the first release's defaults, 30 s doubling to 5 minutes, 18 %).
    """

    # Open after this many consecutive health failures...
    consecutive_failures: int = field(default=12, validator=COUNT)
    # ...or when this share of the last `window` attempts failed (with at least
    # `min_calls` of them seen: a rate is evidence only over a real sample; above 1: never).
    failure_rate: float = field(default=0.6, validator=POSITIVE)
    window: int = field(default=100, validator=COUNT)
    min_calls: int = field(default=50, validator=COUNT)
    # Open for this long, doubling on each re-trip up to `max_open`, ± `jitter`. Short
    # at first (an upstream down for seconds is back soon: its calls should be too),
    # long once it stays down (a dead upstream soon gets one probe every two minutes).
    open_for: float = field(default=10.0, validator=POSITIVE)
    max_open: float = field(default=120.0, validator=POSITIVE)
    jitter: float = field(default=0.1, validator=FRACTION)
    # Calls let through at once while half-open, and how long a probe may hold its
    # slot (a process that died mid-probe must not keep the breaker half-open forever).
    probes: int = field(default=1, validator=COUNT)
    probe_timeout: float = field(default=120.0, validator=POSITIVE)
    # Weight of the newest latency sample in the moving average.
    ewma_alpha: float = field(default=0.3, validator=SHARE)


@frozen
class DeploymentState:
    """Everything the router remembers about one deployment."""

    status: BreakerStatus = "closed"
    consecutive: int = 0
    # The last outcomes that count for health, newest last: True is a failure.
    window: tuple[bool, ...] = ()
    open_until: float = 0.0
    trips: int = 0
    probes: int = 0
    probe_until: float = 0.0
    # Set aside for other calls: a wrong key (10 min) or a 429's retry-after.
    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    # X-RateLimit-Remaining reached 0: nothing should be sent before the reset.
    exhausted_until: float = 0.0
    inflight: int = 0
    latency: float | None = None
    # The kinds of the most recent errors, newest last (introspection only).
    errors: tuple[str, ...] = ()


@frozen
class Health:
    """What `router.health()` reports for one deployment."""

    deployment: str
    status: BreakerStatus
    available: bool
    available_at: float | None
    cooldown_until: float | None
    cooldown_reason: str | None
    exhausted_until: float | None
    inflight: int
    latency: float | None
    consecutive_failures: int
    trips: int
    recent_errors: Mapping[str, int] = field(factory=dict)


def availability(state: DeploymentState, now: float, config: BreakerConfig) -> tuple[bool, float]:
    """(may a call be sent now, the time from which it may) — the time is `now` when it may."""
    blocked_until = max(state.cooldown_until, state.exhausted_until)
    if state.status == "open":
        blocked_until = max(blocked_until, state.open_until)
    if blocked_until > now:
        return False, blocked_until
    if state.status != "closed" and state.probes >= config.probes and now < state.probe_until:
        # Half-open with every probe slot taken: free again when a probe ends.
        return False, now + 1.0
    return True, now


def set_aside(state: DeploymentState, now: float, config: BreakerConfig) -> tuple[str, float] | None:
    """Why a deployment may not be tried now, and until when (None: it may)."""
    reasons: list[tuple[float, str]] = []
    if state.status == "open" and state.open_until > now:
        reasons.append((state.open_until, "breaker open"))
    if state.cooldown_until > now:
        reasons.append((state.cooldown_until, f"cooling down after {state.cooldown_reason or 'an error'}"))
    if state.exhausted_until > now:
        reasons.append((state.exhausted_until, "rate limit used up"))
    if reasons:
        until, reason = max(reasons)
        return reason, until
    ok, at = availability(state, now, config)
    return None if ok else ("every probe slot taken (half-open)", at)


def admit(state: DeploymentState, now: float, config: BreakerConfig) -> tuple[DeploymentState, bool]:
    """Claim a place for one call: a probe slot when the breaker is not closed."""
    ok, _ = availability(state, now, config)
    if not ok:
        return state, False
    if state.status == "closed":
        return evolve(state, inflight=state.inflight + 1), True
    probes = state.probes + 1 if now < state.probe_until else 1
    return evolve(
        state,
        status="half_open",
        probes=probes,
        probe_until=now + config.probe_timeout,
        inflight=state.inflight + 1,
    ), True


def _ewma(old: float | None, sample: float, alpha: float) -> float:
    return sample if old is None else old + alpha * (sample - old)


def _finish(state: DeploymentState) -> dict[str, int]:
    """A call ends: its place (and its probe slot, if it held one) is given back."""
    return {"inflight": max(0, state.inflight - 1), "probes": max(0, state.probes - 1)}


def on_success(state: DeploymentState, latency: float, config: BreakerConfig) -> DeploymentState:
    finish = _finish(state)
    average = _ewma(state.latency, latency, config.ewma_alpha)
    if state.status == "half_open":
        # A probe succeeded: close, and forget the trips.
        return evolve(
            state,
            status="closed",
            consecutive=0,
            window=(),
            trips=0,
            probes=0,
            inflight=finish["inflight"],
            latency=average,
        )
    if state.status == "open":
        # A call admitted before the trip: it proves nothing about now.
        return evolve(state, inflight=finish["inflight"], latency=average)
    window = (*state.window, False)[-config.window :]
    return evolve(state, consecutive=0, window=window, latency=average, inflight=finish["inflight"])


OutcomeKind = Literal["success", "failure", "release", "quota"]


@frozen
class Outcome:
    """How an attempt ended, as far as its deployment's health goes, as plain data: the
    in-memory store applies it with `settle`, the Redis store with a script that
    mirrors `settle` line for line (tests run both on the same inputs)."""

    kind: OutcomeKind
    at: float  # wall clock
    latency: float | None = None
    # A failure's kind (its value), and what its row of the taxonomy says.
    error: str = ""
    health_failure: bool = False
    cooldown: float = 0.0
    # A 429 sets the deployment aside for other calls until its retry_after (bounded)...
    rate_limited: bool = False
    # ...and a breaker it trips stays open at least that long.
    retry_after: float | None = None
    # Where in the jitter band a breaker's open time falls: uniform in [0, 1).
    draw: float = 0.5
    # A response said the quota is used up until then (0: it did not).
    exhausted_until: float = 0.0

    @classmethod
    def success(cls, at: float, latency: float, exhausted_until: float = 0.0) -> Outcome:
        return cls("success", at, latency, exhausted_until=exhausted_until)

    @classmethod
    def failure(
        cls, error: ProviderError, at: float, latency: float | None = None, rng: random.Random | None = None
    ) -> Outcome:
        rule = KIND_RULES[error.kind]
        return cls(
            "failure",
            at,
            None if error.kind is ErrorKind.TIMEOUT else latency,  # a timeout's time is ours
            error=error.kind.value,
            health_failure=rule.health_failure,
            cooldown=rule.cooldown or 0.0,
            rate_limited=error.kind is ErrorKind.RATE_LIMITED,
            retry_after=bounded(error.retry_after),
            draw=(rng or random).random(),
        )

    @classmethod
    def release(cls, at: float) -> Outcome:
        """A call ended without an outcome (abandoned): its place is given back."""
        return cls("release", at)

    @classmethod
    def quota(cls, at: float, until: float) -> Outcome:
        """A response (a stream's head, say) said the quota is used up until `until`."""
        return cls("quota", at, exhausted_until=until)


def settle(state: DeploymentState, outcome: Outcome, config: BreakerConfig) -> DeploymentState:
    """What an attempt's end does to its deployment."""
    new = _SETTLE[outcome.kind](state, outcome, config)
    if outcome.exhausted_until > new.exhausted_until:
        new = evolve(new, exhausted_until=outcome.exhausted_until)
    return new


def _succeeded(state: DeploymentState, outcome: Outcome, config: BreakerConfig) -> DeploymentState:
    return on_success(state, outcome.latency or 0.0, config)


def _failed(state: DeploymentState, outcome: Outcome, config: BreakerConfig) -> DeploymentState:
    finish = _finish(state)
    errors = (*state.errors, outcome.error)[-ERROR_HISTORY:]
    changes: dict[str, object] = {"errors": errors, "inflight": finish["inflight"]}
    now = outcome.at
    if outcome.cooldown:
        changes["cooldown_until"] = max(state.cooldown_until, now + outcome.cooldown)
        changes["cooldown_reason"] = outcome.error
    if outcome.rate_limited and outcome.retry_after:
        until = now + outcome.retry_after
        if until > state.cooldown_until:
            changes["cooldown_until"] = until
            changes["cooldown_reason"] = outcome.error
    if not outcome.health_failure:
        # Says nothing about the deployment's health: a probe slot is just given back.
        changes["probes"] = finish["probes"]
        return evolve(state, **changes)  # type: ignore[arg-type]
    if outcome.latency is not None:
        changes["latency"] = _ewma(state.latency, outcome.latency, config.ewma_alpha)
    if state.status == "open":
        # A call admitted before the trip: already counted in the decision to open.
        return evolve(state, **changes)  # type: ignore[arg-type]
    window = (*state.window, True)[-config.window :]
    consecutive = state.consecutive + 1
    failures = sum(window)
    trip = (
        state.status == "half_open"
        or consecutive >= config.consecutive_failures
        or (len(window) >= config.min_calls and failures / len(window) >= config.failure_rate)
    )
    if trip:
        trips = state.trips + 1
        changes.update(
            status="open",
            trips=trips,
            open_until=now + open_for(trips, outcome.retry_after, config, outcome.draw),
            consecutive=0,
            window=(),
            probes=0,
        )
    else:
        changes.update(consecutive=consecutive, window=window, probes=finish["probes"])
    return evolve(state, **changes)  # type: ignore[arg-type]


def _released(state: DeploymentState, outcome: Outcome, config: BreakerConfig) -> DeploymentState:
    return release(state)


def _quota(state: DeploymentState, outcome: Outcome, config: BreakerConfig) -> DeploymentState:
    return state  # `settle` applies `exhausted_until`, whatever the kind


_SETTLE: dict[str, Callable[[DeploymentState, Outcome, BreakerConfig], DeploymentState]] = {
    "success": _succeeded,
    "failure": _failed,
    "release": _released,
    "quota": _quota,
}


def open_for(trips: int, retry_after: float | None, config: BreakerConfig, draw: float) -> float:
    """Doubling on each re-trip up to `max_open`, ± `jitter` (`draw` says where in the
    band); never shorter than the server's (bounded) retry_after."""
    duration = backoff(
        trips - 1,
        base=config.open_for,
        cap=config.max_open,
        jitter="symmetric",
        ratio=config.jitter,
        draw=draw,
    )
    return max(duration, retry_after or 0.0)


def on_failure(
    state: DeploymentState,
    error: ProviderError,
    now: float,
    config: BreakerConfig,
    rng: random.Random,
    latency: float | None = None,
) -> DeploymentState:
    """`settle` for a failure with `error`, the open time's jitter drawn from `rng`."""
    return settle(state, Outcome.failure(error, now, latency, rng), config)


def release(state: DeploymentState) -> DeploymentState:
    """A call ended without an outcome (abandoned): give back its place."""
    finish = _finish(state)
    return evolve(
        state, inflight=finish["inflight"], probes=finish["probes"] if state.status != "closed" else 0
    )


def exhausted_until(headers: Mapping[str, str], now: float) -> float:
    """Until when a response's rate-limit headers say the quota is used up (0: it is
    not): the reset, or a second from now when they do not say when."""
    if not quota_exhausted(headers):
        return 0.0
    reset = reset_in(headers, now)
    return now + (1.0 if reset is None else reset)


def on_rate_limit_headers(state: DeploymentState, headers: Mapping[str, str], now: float) -> DeploymentState:
    """A response said the quota is used up: no call goes there before the reset."""
    return settle(state, Outcome.quota(now, exhausted_until(headers, now)), BreakerConfig())


def failing(state: DeploymentState) -> bool:
    """Whether a deployment is failing now (a fallback into it costs a retry token)."""
    return state.status != "closed" or state.consecutive > 0


def report(name: str, state: DeploymentState, now: float, config: BreakerConfig) -> Health:
    ok, at = availability(state, now, config)
    status: BreakerStatus = state.status
    if status == "open" and now >= state.open_until:
        status = "half_open"
    counts: dict[str, int] = {}
    for kind in state.errors:
        counts[kind] = counts.get(kind, 0) + 1
    return Health(
        deployment=name,
        status=status,
        available=ok,
        available_at=None if ok else at,
        cooldown_until=state.cooldown_until if state.cooldown_until > now else None,
        cooldown_reason=state.cooldown_reason if state.cooldown_until > now else None,
        exhausted_until=state.exhausted_until if state.exhausted_until > now else None,
        inflight=state.inflight,
        latency=state.latency,
        consecutive_failures=state.consecutive,
        trips=state.trips,
        recent_errors=counts,
    )
