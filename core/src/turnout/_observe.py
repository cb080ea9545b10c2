"""Seeing what a router does: events, the observers a router hands them to, and its logs.

A call's flow yields `Notify(event)` when it decides something (after each
attempt, at the end of the call, when a breaker changes state); the driver
hands the event to the router's observers and to the `turnout` loggers. So
the decisions stay pure, and a router with no observer and logging above
INFO pays nothing: the flow does not even make the events.

Observers are per router (`Router(..., observers=[...])`), any objects with
any of `on_attempt(AttemptEvent)`, `on_call(CallEvent)`,
`on_breaker(BreakerEvent)`. One that raises is logged and ignored: it never
breaks a call. No key is ever in an event, and no message content in an
event's text (its repr) or a log record: the call's request and a done
attempt's answer ride along for observers that record content on purpose
(turnout-otel's opt-in capture), and are left out of the repr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from ._errors import Attempt, ProviderError, TurnoutError
from ._health import DeploymentState
from ._models import ChatRequest, ChatResponse, Usage

__all__ = ["AttemptEvent", "BreakerEvent", "CallEvent", "Event", "Observers", "breaker_events"]

# A library installs no handler but NullHandler (Python's advice): records reach the
# application's handlers, and nothing is printed when it configured none.
logging.getLogger("turnout").addHandler(logging.NullHandler())
router_log = logging.getLogger("turnout.router")
breaker_log = logging.getLogger("turnout.breaker")


@frozen
class AttemptEvent:
    """One attempt ended, and the router decided what comes next."""

    call_id: str
    route: str
    deployment: str
    provider: str
    model: str
    number: int  # 1-based within the call
    error: ProviderError | None
    elapsed: float
    waited: float
    decision: str  # "done", "retry", "fallback", "give_up", "abandoned"
    reason: str
    usage: Usage | None = None
    metadata: Mapping[str, Any] = field(factory=dict)
    # The answer of a "done" attempt (a stream's, assembled).
    response: ChatResponse | None = field(default=None, repr=False)
    # Where it was sent: host and port only (never a path or a query, which may hold a key).
    server_address: str = ""
    server_port: int | None = None
    # When it was sent (wall clock, seconds): a hedged leg is told when its race ends.
    started: float | None = None


@frozen
class CallEvent:
    """One call ended: answered, failed, or abandoned by its caller."""

    call_id: str
    route: str
    deployment: str | None  # the one that answered
    attempts: tuple[Attempt, ...]
    error: TurnoutError | None
    elapsed: float
    usage: Usage | None
    stream: bool
    time_to_first_chunk: float | None = None
    metadata: Mapping[str, Any] = field(factory=dict)
    # What the caller asked (messages and parameters, after the call's checks).
    request: ChatRequest | None = field(default=None, repr=False)


@frozen
class BreakerEvent:
    """A deployment's breaker changed state ("closed", "open", "half_open"), or the
    deployment was set aside for a while (`old == new`, with `until` and `reason`)."""

    deployment: str
    provider: str
    old: str
    new: str
    until: float | None = None  # wall-clock time the deployment is set aside until
    reason: str = ""


Event = AttemptEvent | CallEvent | BreakerEvent


class Observers:
    """A router's observers, with the loggers, called safely."""

    __slots__ = ("_attempt", "_breaker", "_call")

    def __init__(self, observers: Iterable[object] = ()) -> None:
        found = list(observers)
        self._attempt = [o.on_attempt for o in found if callable(getattr(o, "on_attempt", None))]  # type: ignore[attr-defined]
        self._call = [o.on_call for o in found if callable(getattr(o, "on_call", None))]  # type: ignore[attr-defined]
        self._breaker = [o.on_breaker for o in found if callable(getattr(o, "on_breaker", None))]  # type: ignore[attr-defined]

    def wanted(self, kind: type[Event]) -> bool:
        """Whether an event of this kind would reach anyone (an observer, or a log
        record a logger would keep): when not, the flow does not make it."""
        if kind is AttemptEvent:
            return bool(self._attempt) or router_log.isEnabledFor(logging.DEBUG)
        if kind is CallEvent:
            return bool(self._call) or router_log.isEnabledFor(logging.DEBUG)
        return bool(self._breaker) or breaker_log.isEnabledFor(logging.WARNING)

    def notify(self, event: Event) -> None:
        if type(event) is AttemptEvent:
            _log_attempt(event)
            callbacks = self._attempt
        elif type(event) is CallEvent:
            _log_call(event)
            callbacks = self._call
        else:
            assert type(event) is BreakerEvent
            _log_breaker(event)
            callbacks = self._breaker
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                router_log.exception("an observer failed on %s (ignored)", type(event).__name__)


def _kind(error: BaseException | None) -> str | None:
    return error.kind.value if isinstance(error, ProviderError) else (type(error).__name__ if error else None)


def _log_attempt(event: AttemptEvent) -> None:
    # Nothing is built for a record no logger would keep (an observer alone pays nothing).
    debug = router_log.isEnabledFor(logging.DEBUG)
    told = event.decision in ("retry", "fallback") and router_log.isEnabledFor(logging.INFO)
    if not (debug or told):
        return
    extra = {"call_id": event.call_id, "deployment": event.deployment, "kind": _kind(event.error)}
    outcome = "answered" if event.error is None else f"{_wire(event.error)} {event.error.kind.value}"
    if debug:
        router_log.debug(
            "attempt %d on %s (%s): %s in %.3f s -> %s%s",
            event.number,
            event.deployment,
            event.provider,
            outcome,
            event.elapsed,
            event.decision,
            f": {event.reason}" if event.reason else "",
            extra=extra,
        )
    if told:
        router_log.info(
            "%s %s: %s",
            "retrying on" if event.decision == "retry" else "falling back from",
            event.deployment,
            event.reason or (event.error.kind.value if event.error else ""),
            extra=extra,
        )


def _log_call(event: CallEvent) -> None:
    if not router_log.isEnabledFor(logging.DEBUG):
        return
    router_log.debug(
        "call %s on route %s: %s after %d attempt(s) in %.3f s",
        event.call_id,
        event.route,
        f"answered by {event.deployment}" if event.error is None else f"failed ({_kind(event.error)})",
        len(event.attempts),
        event.elapsed,
        extra={"call_id": event.call_id, "deployment": event.deployment, "kind": _kind(event.error)},
    )


def _log_breaker(event: BreakerEvent) -> None:
    extra = {"call_id": None, "deployment": event.deployment, "kind": None}
    if event.new == "open":
        breaker_log.warning(
            "breaker of %s opened%s: %s", event.deployment, _until(event.until), event.reason, extra=extra
        )
    elif event.old == event.new:
        breaker_log.warning(
            "%s set aside%s: %s", event.deployment, _until(event.until), event.reason, extra=extra
        )
    else:
        breaker_log.info("breaker of %s %s", event.deployment, event.new.replace("_", "-"), extra=extra)


def _until(when: float | None) -> str:
    import time

    return "" if when is None else f" for {max(when - time.time(), 0.0):.1f} s"


def _wire(error: ProviderError) -> str:
    return str(error.status) if error.status is not None else "-"


def breaker_events(
    name: str, provider: str, old: DeploymentState, new: DeploymentState, now: float
) -> list[BreakerEvent]:
    """What changed in a deployment's health that operators want to hear of: the
    breaker's state, and a new or longer cooldown."""
    if old.status == new.status and new.cooldown_until <= old.cooldown_until:
        return []  # the common case (a call claimed or settled, nothing else): at once
    events = []
    if old.status != new.status:
        if new.status == "open":
            why = "its probe failed" if old.status == "half_open" else "too many failures"
            events.append(BreakerEvent(name, provider, old.status, "open", new.open_until, why))
        else:
            events.append(BreakerEvent(name, provider, old.status, new.status))
    if new.cooldown_until > max(old.cooldown_until, now):
        reason = f"cooling down after {new.cooldown_reason}"
        events.append(BreakerEvent(name, provider, new.status, new.status, new.cooldown_until, reason))
    return events
