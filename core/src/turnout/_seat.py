"""One deployment as the retry layer sees it: its claims, its attempts, its health.

The fallback layer (`turnout._call`) claims the first attempt's place and hands
the seat to the retry layer (`turnout._retrying`), which claims each retry's
place itself. An attempt runs the provider's flow on the place claimed and
settles its outcome: two steps on the shared state per attempt (`Claim`,
`Settle`), each one round trip on Redis.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from attrs import define, field

from ._errors import Attempt, ProviderError, attribute_error
from ._flow import CallAbandoned, Claim, Claimed, Flow, HTTPResponse, LoadState, Notify, Settle, Sleep
from ._health import DeploymentState, Outcome, availability, exhausted_until
from ._models import ChatRequest, ChatResponse
from ._observe import BreakerEvent, breaker_events
from ._pump import relay
from ._retrying import Tried

if TYPE_CHECKING:
    from ._binding import Target
    from ._budget import RetryBudget
    from ._flow import Spend
    from ._health import BreakerConfig
    from ._observe import Observers
    from ._record import CallRecord

__all__ = ["DeploymentSeat", "SeatHost", "sent"]

_RATE_HEADERS = frozenset({"x-ratelimit-remaining", "x-ratelimit-remaining-requests"})


def sent(command: Notify | None) -> tuple[Notify, ...]:
    """`command`, if there is one, to `yield from` (a note costs nothing when nobody
    listens). Tells are tuples, not generators: a call makes several, most of them
    empty, and a `Notify` is answered with None."""
    return () if command is None else (command,)


class SeatHost(Protocol):
    """What a seat needs of the router's core (`turnout._call.RouterCore`)."""

    @property
    def targets(self) -> Mapping[str, Target]: ...
    @property
    def breaker(self) -> BreakerConfig: ...
    @property
    def budget(self) -> RetryBudget: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def wall(self) -> Callable[[], float]: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def observers(self) -> Observers: ...
    @property
    def make_flow(self) -> Callable[[Target, ChatRequest, bool], Flow[Any]]: ...

    def note(self, record: CallRecord, attempt: Attempt) -> Notify | None: ...


@define(slots=True, eq=False)
class DeploymentSeat:
    """One deployment for one call: claims, attempts and their outcomes."""

    # (Out of its repr: the request and the record hold the conversation.)
    core: SeatHost = field(repr=False)
    name: str
    request: ChatRequest = field(repr=False)
    record: CallRecord = field(repr=False)
    stream: bool
    # Its state as last seen (after a claim or an outcome), for the retry layer's waits.
    state: DeploymentState | None = None
    target: Target = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.target = self.core.targets[self.name]

    @property
    def committed(self) -> bool:
        return self.record.committed

    def ready_in(self, delay: float) -> float:
        if self.state is None:
            return delay
        now = self.core.wall()
        ready, at = availability(self.state, now + delay, self.core.breaker)
        return delay if ready else max(delay, at - now)

    def claim(self, delay: float, spend: Spend = "always") -> Flow[Claimed]:
        """A place for an attempt sent `delay` seconds from now (a retry pays a token)."""
        core = self.core
        claimed: Claimed = yield Claim(
            (self.name,), (self.name,), core.wall() + delay, core.breaker, core.budget, spend=spend
        )
        self.state = claimed.states[self.name]
        if claimed.name is not None:
            yield from self.changed(claimed.before, self.state)
        return claimed

    def changed(self, old: DeploymentState | None, new: DeploymentState) -> tuple[Notify, ...]:
        """What to tell observers of a change in the deployment's health (a breaker
        half-opening on a claim, opening on a failure), to `yield from`."""
        if old is None or not self.core.observers.wanted(BreakerEvent):
            return ()
        events = breaker_events(self.name, self.target.provider.name, old, new, self.core.wall())
        return tuple(Notify(event) for event in events)

    def settle(self, outcome: Outcome) -> Flow[DeploymentState]:
        before, after = yield Settle(self.name, outcome, self.core.breaker)
        self.state = after
        yield from self.changed(before, after)
        return after  # type: ignore[no-any-return]

    def attempt(self, waited: float, delay: float = 0.0) -> Flow[Tried]:
        """Wait `delay` (holding the place claimed), send, settle the outcome. Never
        raises a ProviderError: the layers above decide what a failure means."""
        core, name, record = self.core, self.name, self.record
        clock, wall = core.clock, core.wall
        provider = self.target.provider.name
        started = clock()
        sent_at = wall()
        try:
            if delay > 0:
                yield Sleep(delay)
                if (yield from self._tripped()):
                    # Another call tripped the breaker while the retry waited: the place
                    # is given back, nothing is sent.
                    yield Settle(name, Outcome.release(wall()), core.breaker)
                    return Tried(name, provider, admitted=False, waited=waited)
                started, sent_at = clock(), wall()
            try:
                inner = core.make_flow(self.target, self.request, self.stream)
                if self.stream:  # its head is read on its way in (the stream keeps the chunks)
                    result = yield from relay(inner, after=self._headers)
                    quota = 0.0
                else:  # the final response's headers come with the answer
                    result = yield from inner
                    quota = self._exhausted(result.headers) if isinstance(result, ChatResponse) else 0.0
            except ProviderError as error:
                elapsed = clock() - started
                attribute_error(
                    error, provider=provider, deployment=name, secret=self.target.deployment.key()
                )
                state = yield from self.settle(Outcome.failure(error, wall(), elapsed, core.rng))
                return Tried(
                    name, provider, error=error, elapsed=elapsed, waited=waited, state=state, started=sent_at
                )
            first = record.first_chunk_at if self.stream else None
            yield from self.settle(Outcome.success(wall(), (first or clock()) - started, quota))
        except CallAbandoned as abandoned:
            # The caller went away (or a hedged leg lost its race) before the outcome:
            # give back the place, and say so in the call's record.
            yield Settle(name, Outcome.release(wall()), core.breaker)
            why = str(abandoned) or "abandoned"
            attempt = Attempt(name, provider, None, clock() - started, waited, "abandoned", why)
            yield from sent(core.note(record, attempt))
            raise
        except Exception:
            # A mistake that is nobody's health (a body that cannot be serialized, a bug
            # in a plugin): give back the place, and let it go on.
            yield Settle(name, Outcome.release(wall()), core.breaker)
            raise
        return Tried(name, provider, result=result, elapsed=clock() - started, waited=waited, started=sent_at)

    def _tripped(self) -> Flow[bool]:
        """Whether another call tripped the breaker while this retry waited. A retry's
        place was claimed before its wait; this reads the deployment once more (one
        more round trip on Redis, for retries that waited only). A cooldown begun
        meanwhile (another call's 429) does not stop it: it is short, and the retry's
        own wait already honours its own error's hints."""
        states: Mapping[str, DeploymentState] = yield LoadState((self.name,))
        state = self.state = states[self.name]
        return state.status == "open" and state.open_until > self.core.wall()

    def _headers(self, value: HTTPResponse) -> Flow[None] | None:
        """A stream's head: its headers for the record, and a quota it says is used up
        for every other call at once (not at the stream's end)."""
        self.record.headers = dict(value.headers)
        until = self._exhausted(value.headers) if value.ok else 0.0
        return self._quota(until) if until else None

    def _quota(self, until: float) -> Flow[None]:
        yield Settle(self.name, Outcome.quota(self.core.wall(), until), self.core.breaker)

    def _exhausted(self, headers: Mapping[str, str]) -> float:
        """Until when a success says the quota is used up (0: it does not): the next
        calls are steered away before they hit a 429. (On an error, its retry_after
        and cooldown already decide.)"""
        if _RATE_HEADERS.isdisjoint(headers):
            return 0.0
        return exhausted_until(headers, self.core.wall())
