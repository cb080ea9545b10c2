"""What a Redis store does, as generators that yield Redis operations (no I/O here).

Each `StateStore` method of `RedisStore` is a flow: a generator that yields the
operations below and receives their results (or has their exceptions thrown
in), as httpx's `Auth.auth_flow` does. `RedisStore` drives a flow with a
blocking client or an asyncio one; the drivers only perform, so every decision
is written once, here:

- whether a call goes to Redis, probes it after an outage, or stays local
  (asked of `Outage`), and what it does locally instead;
- the compare-and-set transaction: WATCH and GET the key, apply the pure `fn`,
  MULTI/SET/EXEC; nothing written when nothing changed; again when another
  writer got there first, with a small random pause after three conflicts in a
  row; given up (made locally) after a thousand;
- a connection found broken is retried once, on a fresh connection, before
  anything is declared: servers and NAT gateways close idle connections, and an
  operator may kill them. Only a second failure, or any other Redis error, is an
  outage. A write whose reply was lost is looked for before it is made again;
- how long a round of commands may take (`ROUND_TRIPS` socket timeouts), as a
  deadline on the operations, for the asyncio driver to enforce (the blocking
  client bounds each command by its socket timeout itself).

A later version may apply an update with one server-side script instead of the
transaction: that is another generator in place of `RedisCore.transact`,
yielding one more kind of operation.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeAlias, TypeVar

from attrs import frozen

from ._flow import Claim, Claimed, Settle
from ._health import DeploymentState, admit, availability, failing, settle
from ._redis_codec import Layout, Record
from ._redis_outage import Mode, Outage

__all__ = [
    "Failure",
    "Failures",
    "MGet",
    "Op",
    "Reconnect",
    "RedisCore",
    "Sleep",
    "TakeTurn",
    "Unavailable",
    "Unwatch",
    "WatchGet",
    "Write",
]

R = TypeVar("R")
V = TypeVar("V")

StateFn = Callable[[DeploymentState], tuple[DeploymentState, Any]]
BudgetFn = Callable[[float], tuple[float, Any]]


class _Local(Exception):
    """Redis failed during a step: the whole step is made locally instead."""


# The commands in one round of a transaction (WATCH, GET, MULTI/SET/EXEC) may take
# this many socket timeouts, as a whole.
ROUND_TRIPS = 3
# After this many conflicting transactions in a row, pause a little between tries.
QUIET_CONFLICTS = 3
# A transaction that keeps losing this often is given up: the update is made locally.
MAX_CONFLICTS = 1000


# -- operations -----------------------------------------------------------------
# `deadline` is on the driver's clock (the event loop's time), None for no limit.


@frozen
class MGet:
    """GET each key, in one command. Returns the values (None for a missing key)."""

    keys: Sequence[str]
    deadline: float | None


@frozen
class WatchGet:
    """WATCH the key, then GET it. Returns its value or None."""

    key: str
    deadline: float | None


@frozen
class Write:
    """MULTI, SET the key to `value` expiring in `ttl_ms`, EXEC. Raises the client's
    WatchError when the watched key changed meanwhile."""

    key: str
    value: bytes
    ttl_ms: int
    deadline: float | None


@frozen
class Unwatch:
    """End the transaction without writing (UNWATCH)."""

    deadline: float | None


@frozen
class Reconnect:
    """Close the connection the flow used and the idle ones: the next command opens a
    fresh connection."""

    deadline: float | None


@frozen
class Sleep:
    seconds: float


@frozen
class TakeTurn:
    """Wait for this process's other calls on `key` to finish; the turn lasts until the
    flow ends. (Transactions then only race other processes', not dozens of this one's
    threads or tasks.)"""

    key: str


Command: TypeAlias = MGet | WatchGet | Write | Unwatch | Reconnect
Op: TypeAlias = Command | Sleep | TakeTurn
Flow: TypeAlias = Generator[Op, Any, R]
# The driver's clock, for deadlines; None where the client bounds each command itself.
Clock: TypeAlias = Callable[[], float] | None
# A pure update: from the current value, the new value and what to return.
Change: TypeAlias = Callable[[V], tuple[V, Any]]
# An update made: the new value and what `fn` returned.
Applied: TypeAlias = tuple[V, Any]


# -- failures --------------------------------------------------------------------


class Failure(enum.Enum):
    CONFLICT = "conflict"  # another writer changed the key: run the transaction again
    BROKEN = "broken"  # the connection was lost: worth one more try, on a fresh one
    OUTAGE = "outage"  # Redis does not serve us: serve locally for a while


class Unavailable(Exception):
    """Redis failed in a way that the flow does not retry; `cause` says how."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


@frozen
class Failures:
    """What an exception from an operation means: rows of (types, failure), the first
    match wins. The types are the client's, so the table is made with the store."""

    conflict: type[BaseException]
    rows: tuple[tuple[tuple[type[BaseException], ...], Failure], ...]

    @classmethod
    def of_redis(cls) -> Failures:
        import redis

        return cls(
            conflict=redis.WatchError,
            rows=(
                # A refused password is met again on any connection.
                ((redis.AuthenticationError,), Failure.OUTAGE),
                ((redis.ConnectionError, ConnectionError), Failure.BROKEN),
                # Any other Redis error, a timeout, a socket error.
                ((redis.RedisError, OSError), Failure.OUTAGE),
            ),
        )

    def classify(self, exc: BaseException) -> tuple[Failure, BaseException] | None:
        """The failure `exc` stands for and the error to report, or None when it is not
        a Redis failure at all."""
        if isinstance(exc, self.conflict):
            # redis-py reports a connection lost while watching as a WatchError raised
            # while handling the connection error: that is no other writer.
            cause = exc.__context__
            if cause is None or isinstance(cause, self.conflict):
                return Failure.CONFLICT, exc
            found = self.classify(cause)
            return (Failure.CONFLICT, exc) if found is None else found
        for types, failure in self.rows:
            if isinstance(exc, types):
                return failure, exc
        return None


def conflict_pause(conflicts: int) -> float:
    """How long to wait after `conflicts` conflicts in a row: nothing at first, then a
    random pause that grows to 10 ms, so that racing processes fall out of step."""
    if conflicts <= QUIET_CONFLICTS:
        return 0.0
    return random.uniform(0.0, 0.0005 * min(conflicts - 1, 20))


# -- the flows -------------------------------------------------------------------


def _adding(tokens: float, burst: float) -> BudgetFn:
    return lambda held: (min(burst, held + tokens), None)


def _withdraw(tokens: float) -> tuple[float, bool]:
    return (tokens - 1.0, True) if tokens >= 1.0 else (tokens, False)


Admission = tuple[bool, DeploymentState, DeploymentState]  # admitted, before, after


def _admitting(at: float, breaker: Any) -> Callable[[DeploymentState], tuple[DeploymentState, Admission]]:
    def apply(state: DeploymentState) -> tuple[DeploymentState, Admission]:
        new, admitted = admit(state, at, breaker)
        return new, (admitted, state, new)

    return apply


class RedisCore:
    """The flows of one `RedisStore`: its key layout, its outage switch, and the
    meaning of its client's exceptions."""

    def __init__(
        self, layout: Layout, outage: Outage, failures: Failures, socket_timeout: float | None
    ) -> None:
        self.layout = layout
        self.outage = outage
        self.failures = failures
        self.round_budget = None if socket_timeout is None else ROUND_TRIPS * socket_timeout

    def load(self, names: Sequence[str], clock: Clock = None) -> Flow[dict[str, DeploymentState]]:
        if not names:
            return {}
        mode = self.outage.mode()
        if mode is Mode.LOCAL:
            return self.outage.local.load(names)
        try:
            states = yield from self._load(names, clock)
        except _Local:
            return self.outage.local.load(names)
        if mode is Mode.PROBE:
            self.outage.resumed()
        return states

    def claim(self, command: Claim, clock: Clock = None) -> Flow[Claimed]:
        """The `Claim` step (see `turnout._state.claim`), made with one transaction per
        key it changes: the budget's deposit, each candidate tried, its token. The
        whole step is made locally when Redis fails on the way."""
        return (
            yield from self._step(
                lambda probing: self._claim(command, clock, probing), lambda: self.outage.local.claim(command)
            )
        )

    def settle(self, command: Settle, clock: Clock = None) -> Flow[tuple[DeploymentState, DeploymentState]]:
        def apply(state: DeploymentState) -> tuple[DeploymentState, tuple[DeploymentState, DeploymentState]]:
            new = settle(state, command.outcome, command.breaker)
            return new, (state, new)

        settled: tuple[DeploymentState, DeploymentState] = yield from self._step(
            lambda probing: self._shared(command.name, apply, clock, probing),
            lambda: self.outage.local.settle(command),
        )
        return settled

    def _step(self, shared: Callable[[bool], Flow[R]], local: Callable[[], R]) -> Flow[R]:
        """One step in Redis (the outage switch asked once: shared, or this call probes
        Redis after an outage), else locally."""
        mode = self.outage.mode()
        if mode is Mode.LOCAL:
            return local()
        try:
            result = yield from shared(mode is Mode.PROBE)
        except _Local:
            return local()
        if mode is Mode.PROBE:
            self.outage.resumed()
        return result

    def _claim(self, command: Claim, clock: Clock, probing: bool) -> Flow[Claimed]:
        budget, at, breaker = command.budget, command.at, command.breaker
        if command.deposit:
            yield from self._shared_budget(_adding(budget.ratio, budget.burst), clock, probing)
        states = dict((yield from self._load(command.names, clock)))
        order = command.candidates if command.plan is None else tuple(command.plan(states))
        for name in order:
            if not availability(states[name], at, breaker)[0]:
                continue
            due = command.spend == "always" or (command.spend == "if_failing" and failing(states[name]))
            if due and not (yield from self._shared_budget(_withdraw, clock, probing)):
                return Claimed(None, states, spent=False, candidates=order)
            admitted, before, after = yield from self._shared(name, _admitting(at, breaker), clock, probing)
            states[name] = after
            if admitted:
                return Claimed(name, states, before, candidates=order)
            if due:  # the place was taken meanwhile: the token goes back
                yield from self._shared_budget(_adding(1.0, budget.burst), clock, probing)
        return Claimed(None, states, candidates=order)

    def _load(self, names: Sequence[str], clock: Clock) -> Flow[dict[str, DeploymentState]]:
        try:
            raws = yield from self._fetch([self.layout.key(name) for name in names], clock)
        except Unavailable as failure:
            self.outage.failed(failure.cause)
            raise _Local from None
        decode = self.layout.decode_state
        states = {name: decode(raw) for name, raw in zip(names, raws, strict=True)}
        self.outage.seen.update(states)
        return states

    def _shared(self, name: str, fn: StateFn, clock: Clock, probing: bool) -> Flow[Any]:
        done = yield from self._update(self.layout.key(name), self.layout.state, fn, clock, probing)
        if done is None:
            raise _Local
        new, result = done
        self.outage.seen[name] = new
        return result

    def _shared_budget(self, fn: BudgetFn, clock: Clock, probing: bool) -> Flow[Any]:
        done = yield from self._update(self.layout.budget_key, self.layout.budget, fn, clock, probing)
        if done is None:
            raise _Local
        self.outage.seen_tokens, result = done
        return result

    def _update(
        self, key: str, record: Record[V], fn: Change[V], clock: Clock, probing: bool
    ) -> Flow[Applied[V] | None]:
        """The update, made in Redis; None when it is to be made locally instead."""
        yield TakeTurn(key)
        if self.outage.down and not probing:  # Redis failed while this call waited
            return None
        try:
            return (yield from self.transact(key, record, fn, clock))
        except Unavailable as failure:
            self.outage.failed(failure.cause)
            return None

    def transact(self, key: str, record: Record[V], fn: Change[V], clock: Clock) -> Flow[Applied[V] | None]:
        """WATCH, GET, apply `fn`, MULTI/SET/EXEC; again while another writer gets there
        first. Returns the new value and `fn`'s result, or None when it kept losing;
        raises `Unavailable` when Redis failed."""
        conflicts = 0
        reconnected = False
        # A write whose reply a broken connection lost: (value, new, result).
        lost: tuple[bytes, V, Any] | None = None
        while conflicts < MAX_CONFLICTS:
            deadline = self._deadline(clock)
            writing: tuple[bytes, V, Any] | None = None
            try:
                raw = yield WatchGet(key, deadline)
                if lost is not None and raw == lost[0]:
                    # The write was made before the connection broke (unless another
                    # process wrote the very same bytes in that instant).
                    yield Unwatch(deadline)
                    return lost[1], lost[2]
                # Whatever else the key holds, the lost write counts as not made and
                # `fn` runs again, on that value: counts and probe slots err towards
                # taken twice, never towards overdrawn.
                lost = None
                current = record.decode(raw)
                new, result = fn(current)
                if raw is not None and new == current:
                    yield Unwatch(deadline)  # nothing to write
                    return new, result
                writing = (record.encode(new), new, result)
                yield Write(key, writing[0], record.ttl_ms(new), deadline)
                return new, result
            except Exception as exc:
                failure = self._retry_after(exc, reconnected)
            if failure is Failure.CONFLICT:
                conflicts += 1
                pause = conflict_pause(conflicts)
                if pause:
                    yield Sleep(pause)
            else:
                reconnected, lost = True, writing
                yield Reconnect(self._deadline(clock))
        return None

    def _fetch(self, keys: list[str], clock: Clock) -> Flow[list[bytes | None]]:
        """MGET, retried once on a fresh connection; raises `Unavailable`."""
        reconnected = False
        while True:
            try:
                raws: list[bytes | None] = yield MGet(keys, self._deadline(clock))
                return raws
            except Exception as exc:
                if self._retry_after(exc, reconnected) is not Failure.BROKEN:
                    raise  # a conflict, where nothing is watched: not ours to hide
            reconnected = True
            yield Reconnect(self._deadline(clock))

    def _retry_after(self, exc: Exception, reconnected: bool) -> Failure:
        """Whether a failed operation is tried again: after a conflict, or on a fresh
        connection after the call's first broken one. Raises `Unavailable` for a
        failure of Redis, and `exc` itself for what is no failure of Redis."""
        found = self.failures.classify(exc)
        if found is None:
            raise exc
        failure, cause = found
        if failure is Failure.CONFLICT or (failure is Failure.BROKEN and not reconnected):
            return failure
        raise Unavailable(cause) from None

    def _deadline(self, clock: Clock) -> float | None:
        if clock is None or self.round_budget is None:
            return None
        return clock() + self.round_budget
