"""The retry layer: repeating a failed attempt on the same deployment, written once.

Layered as httpx's `Client.send`: fallback across deployments (`turnout._call`)
→ retries on one deployment (here) → one attempt. The router and anything
that drives a provider's flows alone (a SaaS-LiteLLM job session) use this
same layer, so the same answers give the same error everywhere: a 429 whose
`Retry-After` would pass the deadline raises that `RateLimitError` at once,
with its `retry_after`, wherever it happens.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from attrs import define, field

from ._errors import Attempt, ProviderError
from ._flow import Claimed, Emit, Flow, Notify, Sleep, Spend
from ._limits import CallLimits
from ._pump import relay
from ._retry import GiveUp, Retry, RetryDecision, RetryPolicy

__all__ = ["Seat", "Tried", "retry_decision", "retry_loop", "retrying", "wait_reason"]

T = TypeVar("T")


@define(slots=True, eq=False)
class Tried:
    """How one attempt ended: a result, a normalized error, or not admitted at all.
    `reason` says why the retry layer stopped on it."""

    name: str
    provider: str
    admitted: bool = field(default=True, kw_only=True)
    result: Any = field(default=None, kw_only=True, repr=False)  # an answer: content
    error: ProviderError | None = field(default=None, kw_only=True)
    elapsed: float = field(default=0.0, kw_only=True)
    waited: float = field(default=0.0, kw_only=True)
    state: Any = field(default=None, kw_only=True)
    # When it was sent (wall clock), for observers.
    started: float | None = field(default=None, kw_only=True)
    reason: str = field(default="", init=False)
    # Already told to observers and the record (as a retry that then could not be
    # sent): the layer above does not note it again.
    noted: bool = field(default=False, init=False)

    def attempt(self, decision: str, reason: str = "") -> Attempt:
        return Attempt(
            self.name, self.provider, self.error, self.elapsed, self.waited, decision, reason or self.reason
        )


def wait_reason(error: ProviderError, delay: float) -> str:
    """`429, retry after 2.0 s`: what failed, and the wait before the next try."""
    what = str(error.status) if error.status is not None else error.kind.value
    return f"{what}, retry after {delay:.1f} s"


def retry_decision(
    error: ProviderError,
    retries: int,
    *,
    policy: RetryPolicy,
    streaming: bool,
    committed: bool,
    left: float,
    max_wait: float,
    can_fall_back: bool,
    ready_in: Callable[[float], float],
    rng: random.Random | None = None,
) -> Retry | GiveUp:
    """Whether to repeat `error` on the same deployment, and after how long: at least
    the policy's backoff and the server's retry_after, and until the deployment may
    be tried again (another call's 429 may have set it aside a little longer)."""
    if committed:
        return GiveUp("a chunk already reached the caller")
    if error.maybe_processed and not error.retryable:
        return GiveUp("not safe to repeat: the request may have been processed")
    decision = policy.decide(error, retries, streaming=streaming, rng=rng)
    if isinstance(decision, GiveUp):
        return decision
    delay = ready_in(decision.delay)
    if delay > decision.delay and can_fall_back:
        # Set aside for longer than this error asks (a breaker that just opened, another
        # call's 429): every other call skips it now, and so does this one.
        return GiveUp(f"set aside for {delay:.1f} s, longer than a fallback")
    if delay >= left:
        return GiveUp(f"{wait_reason(error, delay)} would pass the deadline")
    if delay > max_wait and can_fall_back:
        return GiveUp(f"{wait_reason(error, delay)} is longer than a fallback")
    return Retry(delay)


class Seat(Protocol):
    """Where the attempts of the retry layer are made: one deployment, on which the
    layer above has already claimed a place for the first attempt."""

    @property
    def committed(self) -> bool:
        """A chunk reached the caller: nothing may be repeated any more."""

    def attempt(self, waited: float, delay: float) -> Flow[Tried]:
        """One attempt on the place claimed for it, after waiting `delay` seconds
        (holding the place), its outcome recorded after."""

    def claim(self, delay: float, spend: Spend = "always") -> Flow[Claimed]:
        """Claim a place for a retry sent `delay` seconds from now, paying its token
        (`spend`: "never" when it was paid already)."""

    def ready_in(self, delay: float) -> float:
        """Seconds from now until the deployment may be tried again, `delay` at least."""


def retry_loop(
    seat: Seat,
    policy: RetryPolicy,
    *,
    limits: CallLimits,
    streaming: bool,
    note: Callable[[Attempt], Notify | None],
    max_wait: float = float("inf"),
    can_fall_back: Callable[[ProviderError], bool] = lambda error: False,
    rng: random.Random | None = None,
    waited: float = 0.0,
) -> Flow[Tried]:
    """Attempts on one seat until one succeeds or is not to be repeated; each retry is
    `note`d with its reason (a `Notify` it returns is yielded, for observers), and
    the last attempt comes back for the caller (the fallback layer) to decide on.

    A retry's place is claimed before its wait, for the moment it will be sent: a
    spent budget gives up at once instead of after the wait, and a deployment set
    aside meanwhile (another call's 429, a trip) is waited for within the deadline
    (or left for a fallback); one whose breaker opened during its wait is not sent.
    `waited`: what the call slept before the first attempt (for its record)."""
    retries = 0
    delay = 0.0
    last: Tried | None = None
    decision: RetryDecision
    while True:
        tried = yield from seat.attempt(waited, delay)
        resumed = not tried.admitted and last is not None
        if resumed:
            # Another call tripped the breaker while the retry waited: it was not sent.
            # The attempt before it stands, already noted; the same retry (its token
            # paid) later, if that still fits.
            assert last is not None
            tried, decision = last, Retry(0.0)
            tried.noted = True
            error = tried.error
            assert error is not None
        else:
            last = tried
            error = tried.error
            if error is None:
                return tried
            decision = retry_decision(
                error,
                retries,
                policy=policy,
                streaming=streaming,
                committed=seat.committed,
                left=limits.left(),
                max_wait=max_wait,
                can_fall_back=can_fall_back(error),
                ready_in=seat.ready_in,
                rng=rng,
            )
        while isinstance(decision, Retry):
            claimed = yield from seat.claim(decision.delay, "never" if resumed else "always")
            if not claimed.spent:
                decision = GiveUp("the retry budget is spent")
            elif claimed.name is not None:
                break
            else:
                # Set aside again since the decision (another call's 429, a trip): the
                # same retry, later, if that still fits.
                later = seat.ready_in(decision.delay)
                if later >= limits.left():
                    decision = GiveUp("set aside until after the deadline")
                elif later > decision.delay and can_fall_back(error):
                    decision = GiveUp(f"set aside for {later:.1f} s, longer than a fallback")
                else:
                    decision = Retry(later)
        if isinstance(decision, GiveUp):
            tried.reason = decision.reason
            return tried
        if not resumed:
            notify = note(tried.attempt("retry", wait_reason(error, decision.delay)))
            if notify is not None:
                yield notify
            retries += 1
        delay = waited = decision.delay


class _Plain:
    """A seat with no breaker and no budget: a flow made afresh for each attempt."""

    def __init__(
        self, make: Callable[[], Flow[Any]], name: str, provider: str, clock: Callable[[], float]
    ) -> None:
        self._make = make
        self._name = name
        self._provider = provider
        self._clock = clock
        self.emitted: list[str] = []

    @property
    def committed(self) -> bool:
        return bool(self.emitted)

    def _seen(self, command: Any) -> None:
        if type(command) is Emit:
            self.emitted.append(command.chunk.delta)

    def attempt(self, waited: float, delay: float) -> Flow[Tried]:
        if delay > 0:
            yield Sleep(delay)
        started = self._clock()
        try:
            result = yield from relay(self._make(), before=self._seen)
        except ProviderError as error:
            elapsed = self._clock() - started
            return Tried(self._name, self._provider, error=error, elapsed=elapsed, waited=waited)
        return Tried(
            self._name, self._provider, result=result, elapsed=self._clock() - started, waited=waited
        )

    def claim(self, delay: float, spend: Spend = "always") -> Flow[Claimed]:
        yield from ()  # no state, no budget: always a place
        return Claimed(self._name, {})

    def ready_in(self, delay: float) -> float:
        return delay


def retrying(
    make: Callable[[], Flow[T]],
    policy: RetryPolicy,
    *,
    limits: CallLimits,
    streaming: bool = False,
    name: str = "",
    provider: str = "",
    rng: random.Random | None = None,
) -> Flow[T]:
    """The router's retry layer as a flow, for a provider flow driven alone: run the
    flow `make()` builds, again after a retryable error, as `policy` decides within
    `limits`. A stream is repeated only while none of its chunks reached the caller
    (after that its error carries `partial_text`). The error raised carries every
    attempt in `attempts`, each with its decision and reason."""
    seat = _Plain(make, name, provider, limits.clock)
    history: list[Attempt] = []

    def note(attempt: Attempt) -> None:
        history.append(attempt)

    tried = yield from retry_loop(seat, policy, limits=limits, streaming=streaming, note=note, rng=rng)
    error = tried.error
    if error is None:
        return tried.result  # type: ignore[no-any-return]
    if seat.committed:
        error.partial_text = "".join(seat.emitted)
    history.append(tried.attempt("give_up"))
    error.attempts = tuple(history)
    raise error
