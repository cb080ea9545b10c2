"""Where router state lives: a small protocol, in memory by default.

A store keeps one `DeploymentState` per deployment and the retry budget's
tokens, and swaps them atomically: `update(name, fn)` applies a pure
function to the current record and stores its result, as one step. The
decisions stay in `turnout._health`; a Redis store (several processes, one
router) implements the same protocol with compare-and-set.

The router's flow reaches the store through commands (`LoadState`,
`UpdateState`, `UpdateBudget`) that the sync and async drivers perform, so
the logic is written once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from attrs import field, frozen

from ._flow import BudgetFn, LoadState, StateFn, UpdateBudget, UpdateState
from ._health import DeploymentState
from ._ranges import NON_NEGATIVE

__all__ = ["LoadState", "MemoryStore", "RetryBudget", "StateStore", "UpdateBudget", "UpdateState"]


@frozen
class RetryBudget:
    """A token bucket bounding retries, as gRPC's retry throttling and Envoy's budget do.

    Every call adds `ratio` tokens (up to `burst`); every retry, and every
    fallback into a deployment that is itself failing, takes one; the first
    try of a healthy deployment never does. When upstreams fail broadly,
    attempts stay within about (1 + ratio) x calls + burst. The default ratio,
    0.5, is what an upstream failing 30 % of its answers needs to keep
    answering ~99 % of calls (docs/resilience.md); it caps a total outage at
    1.5 attempts per call.
    """

    ratio: float = field(default=0.5, validator=NON_NEGATIVE)
    burst: float = field(default=10.0, validator=NON_NEGATIVE)

    def deposit(self, tokens: float) -> tuple[float, None]:
        return min(self.burst, tokens + self.ratio), None

    def withdraw(self, tokens: float) -> tuple[float, bool]:
        if tokens >= 1.0:
            return tokens - 1.0, True
        return tokens, False


class StateStore(Protocol):
    """What a router needs from its state, sync and async."""

    budget_start: float

    def load(self, names: Sequence[str]) -> dict[str, DeploymentState]: ...

    def update(self, name: str, fn: StateFn) -> Any: ...

    def update_budget(self, fn: BudgetFn) -> Any: ...

    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]: ...

    async def aupdate(self, name: str, fn: StateFn) -> Any: ...

    async def aupdate_budget(self, fn: BudgetFn) -> Any: ...


class MemoryStore:
    """State in this process, shared by every thread and task of the router. The default."""

    def __init__(self, budget_start: float = 10.0) -> None:
        self.budget_start = budget_start
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}
        self._tokens = budget_start

    def load(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        states = self._states
        empty = _EMPTY
        return {name: states.get(name, empty) for name in names}

    def update(self, name: str, fn: StateFn) -> Any:
        with self._lock:
            new, result = fn(self._states.get(name, _EMPTY))
            self._states[name] = new
        return result

    def update_budget(self, fn: BudgetFn) -> Any:
        with self._lock:
            self._tokens, result = fn(self._tokens)
        return result

    # No awaits inside: each update is atomic for every task on the loop too.
    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        return self.load(names)

    async def aupdate(self, name: str, fn: StateFn) -> Any:
        return self.update(name, fn)

    async def aupdate_budget(self, fn: BudgetFn) -> Any:
        return self.update_budget(fn)


_EMPTY = DeploymentState()
