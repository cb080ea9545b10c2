"""What a Redis store does, as generators that yield Redis operations (no I/O here).

Each `StateStore` method of `RedisStore` is a flow: a generator that yields
the operations below and receives their results (or has their exceptions
thrown in), as httpx's `Auth.auth_flow` does. `RedisStore` drives a flow with a
blocking client or an asyncio one; the drivers only perform, so every decision
is written once, here:

- each step is one script (`turnout._redis_lua`), one round trip: `EVALSHA`,
  or `EVAL` with the source once when the server answers NOSCRIPT (a restarted
  server, a failover, `SCRIPT FLUSH`);
- how long the round trip may take: the store's own budget, and for a claim
  also the time left in the call. A step that runs out of the store's budget
  means Redis is too slow: an outage. A claim that runs out of the call's time
  is no outage: the claim is cancelled (its place given back, if it was taken)
  and the call ends on its deadline (`OutOfTime`);
- a connection found broken is replaced once before anything is declared:
  servers and NAT gateways close idle connections, operators kill them. The
  step is sent again with the same operation number, so a step that was made
  before its reply was lost is not made twice (the script's journal says it
  was). A second failure, a timeout or any other Redis error is an outage;
- whether a call goes to Redis, probes it after an outage, or stays local
  (asked of `Outage`), and what it does locally instead;
- the order of a first claim's candidates: the route's strategy (`plan`)
  cannot run in Redis, so it orders them from the states this store last read
  (at most one round trip old) and the script claims in that order.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeAlias, TypeVar

from attrs import field, frozen

from ._flow import Claim, Claimed, Settle
from ._health import DeploymentState
from ._redis_codec import Layout, claim_args, claimed_of, decode_state, known, settle_args, states_of
from ._redis_lua import CANCEL, CLAIM, LOAD, SETTLE, Script
from ._redis_outage import Mode, Outage
from ._state import OutOfTime

__all__ = ["Eval", "Failure", "Failures", "Flow", "Op", "Reconnect", "RedisCore", "Unavailable"]

R = TypeVar("R")


# -- operations -----------------------------------------------------------------------


@frozen
class Eval:
    """Run `script` on `keys` with `args` (EVALSHA; EVAL with its source when `source`),
    within `timeout` seconds (None: the client's own bounds). Returns its reply."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[str, ...]
    timeout: float | None
    source: bool = False

    def command(self) -> tuple[str, ...]:
        """The Redis command, as redis-py's `send_command` takes it."""
        first = ("EVAL", self.script.source) if self.source else ("EVALSHA", self.script.sha)
        return (*first, str(len(self.keys)), *self.keys, *self.args)


@frozen
class Reconnect:
    """Close the idle connections (any may be one the server closed while it idled):
    the next command opens a fresh one."""


Op: TypeAlias = Eval | Reconnect
Flow: TypeAlias = Generator[Op, Any, R]


# -- failures -------------------------------------------------------------------------


class Failure(enum.Enum):
    NOSCRIPT = "noscript"  # the server does not have the script: send its source
    BROKEN = "broken"  # the connection was lost: worth one more try, on a fresh one
    SLOW = "slow"  # the round trip ran out of its time
    OUTAGE = "outage"  # Redis does not serve us: serve locally for a while


class Unavailable(Exception):
    """Redis failed in a way the flow does not retry; `cause` says how. `cut`: the
    round trip ran out of the call's time, not of the store's (no fault of Redis)."""

    def __init__(self, cause: BaseException, cut: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.cut = cut


@frozen
class Failures:
    """What an exception from an operation means: rows of (types, failure), the first
    match wins. The types are the client's, so the table is made with the store."""

    rows: tuple[tuple[tuple[type[BaseException], ...], Failure], ...]

    @classmethod
    def of_redis(cls) -> Failures:
        import redis
        from redis.exceptions import NoScriptError, RedisClusterException

        return cls(
            rows=(
                ((NoScriptError,), Failure.NOSCRIPT),
                # A refused password is met again on any connection.
                ((redis.AuthenticationError,), Failure.OUTAGE),
                ((redis.TimeoutError, TimeoutError), Failure.SLOW),
                ((redis.ConnectionError, ConnectionError), Failure.BROKEN),
                # Any other Redis error (READONLY, OOM, a cluster without the slot), a socket error.
                ((redis.RedisError, RedisClusterException, OSError), Failure.OUTAGE),
            ),
        )

    def classify(self, exc: BaseException) -> Failure | None:
        """The failure `exc` stands for, or None when it is not a Redis failure at all."""
        for types, failure in self.rows:
            if isinstance(exc, types):
                return failure
        return None


# -- the flows ------------------------------------------------------------------------


@frozen(eq=False)
class RedisCore:
    """The flows of one `RedisStore`: its key layout and journal, its outage switch,
    the meaning of its client's exceptions, and the time one step may take."""

    layout: Layout
    outage: Outage
    failures: Failures
    budget: float | None
    journal: str
    wall: Callable[[], float] = time.time  # for the records' times
    clock: Callable[[], float] = time.monotonic  # for the call's time left
    _ops: Iterator[int] = field(init=False, factory=lambda: itertools.count(1), repr=False)

    def load(self, names: Sequence[str]) -> Flow[dict[str, DeploymentState]]:
        if not names:
            return {}
        return (yield from self._step(lambda: self._load(names), lambda: self.outage.local.load(names)))

    def claim(self, command: Claim, within: float | None = None) -> Flow[Claimed]:
        """The `Claim` step (`turnout._state.claim`) in one script, within `within`
        seconds (the time left in the call) as well as the store's budget."""
        return (
            yield from self._step(
                lambda: self._claim(command, within), lambda: self.outage.local.claim(command)
            )
        )

    def settle(self, command: Settle) -> Flow[tuple[DeploymentState, DeploymentState]]:
        """The `Settle` step (`turnout._health.settle`) in one script, within the store's
        budget only: it is made even after the call's deadline, or state would drift."""
        settled: tuple[DeploymentState, DeploymentState] = yield from self._step(
            lambda: self._settle(command), lambda: self.outage.local.settle(command)
        )
        return settled

    def _step(self, shared: Callable[[], Flow[R]], local: Callable[[], R]) -> Flow[R]:
        """One step in Redis (the outage switch asked once: shared, or this call probes
        Redis after an outage), else locally."""
        mode = self.outage.mode()
        if mode is Mode.LOCAL:
            return local()
        try:
            result = yield from shared()
        except Unavailable as failure:
            self.outage.failed(failure.cause)
            return local()
        if mode is Mode.PROBE:
            self.outage.resumed()
        return result

    def _load(self, names: Sequence[str]) -> Flow[dict[str, DeploymentState]]:
        keys = tuple(self.layout.key(name) for name in names)
        states = states_of((yield from self._run(LOAD, keys, ())), names)
        self.outage.seen.update(states)
        return states

    def _claim(self, command: Claim, within: float | None) -> Flow[Claimed]:
        if within is not None and within <= 0:
            raise OutOfTime
        until = None if within is None else self.clock() + within
        order = command.candidates
        if command.plan is not None:
            order = tuple(command.plan(known(self.outage.seen, command.names)))
        op = next(self._ops)
        keys, args = claim_args(self.layout, self.journal, command, order, op, self.wall())
        try:
            reply = yield from self._run(CLAIM, keys, args, until)
        except Unavailable as failure:
            if not failure.cut:
                raise
            # The call's time ran out, not Redis's: whatever the claim did is undone.
            yield from self._cancel(keys, op)
            raise OutOfTime from None
        tokens, claimed = claimed_of(reply, command.names, order)
        self.outage.seen.update(claimed.states)
        self.outage.seen_tokens = tokens
        return claimed

    def _cancel(self, keys: tuple[str, ...], op: int) -> Flow[None]:
        args = (str(op), repr(self.wall()), repr(float(self.layout.ttl)))
        try:
            yield from self._run(CANCEL, keys, args)
        except Unavailable as failure:
            self.outage.failed(failure.cause)

    def _settle(self, command: Settle) -> Flow[tuple[DeploymentState, DeploymentState]]:
        op = next(self._ops)
        keys, args = settle_args(self.layout, self.journal, command, op, self.wall())
        before, after = yield from self._run(SETTLE, keys, args)
        settled = decode_state(before), decode_state(after)
        self.outage.seen[command.name] = settled[1]
        return settled

    def _run(
        self, script: Script, keys: tuple[str, ...], args: tuple[str, ...], until: float | None = None
    ) -> Flow[Any]:
        """The script's reply; the source is sent once after NOSCRIPT, and the same
        operation once more on a fresh connection after a broken one. Each round trip
        has the store's budget, and none goes past `until` (on `clock`). Raises
        `Unavailable` for a failure of Redis, and anything else as it is."""
        source = reconnect = reconnected = False
        while True:
            timeout, cut = self._bound(until)
            try:
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                if reconnect:
                    reconnect = False
                    yield Reconnect()
                return (yield Eval(script, keys, args, timeout, source))
            except Exception as exc:
                failure = self.failures.classify(exc)
                if failure is None:
                    raise
                if failure is Failure.NOSCRIPT and not source:
                    source = True
                elif failure is Failure.BROKEN and not reconnected:
                    reconnect = reconnected = True
                else:
                    raise Unavailable(exc, cut and failure is Failure.SLOW) from None

    def _bound(self, until: float | None) -> tuple[float | None, bool]:
        """This round trip's time, and whether it is the call's (shorter than the store's)."""
        if until is None:
            return self.budget, False
        left = until - self.clock()
        if self.budget is not None and self.budget <= left:
            return self.budget, False
        return left, True
