"""Where router state lives: a small protocol, in memory by default.

A store keeps one `DeploymentState` per deployment and the retry budget's
tokens. A call touches them in two atomic steps per attempt, each one round
trip on a shared store:

- `Claim` before the attempt: the budget's share when the call starts, a
  place on the first deployment that may be tried (paying a retry token
  when a retry or a fallback into a failing deployment owes one), and the
  states the router plans with;
- `Settle` after it: the attempt's `Outcome` applied to its deployment.

What each step does is written once, here and in `turnout._health`, as pure
functions (`claim`, `settle`); the in-memory store applies them under a
lock, the Redis store in server-side scripts that mirror them (and a test
runs both on the same inputs). The router's flow reaches the store through
the commands, which the sync and async drivers perform.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from ._budget import RetryBudget
from ._flow import Claim, Claimed, LoadState, Settle
from ._health import DeploymentState, admit, failing, settle

__all__ = [
    "Claim",
    "Claimed",
    "LoadState",
    "MemoryStore",
    "OutOfTime",
    "RetryBudget",
    "Settle",
    "StateStore",
    "claim",
]


def claim(states: Mapping[str, DeploymentState], tokens: float, command: Claim) -> tuple[float, Claimed]:
    """The `Claim` step on `states` (every name the command names) and the budget's
    `tokens`: the tokens after it, and what the claim got.

    The first candidate that may be tried at `command.at` is claimed; if a token is
    due for it (`spend`) and the budget has none, nothing is claimed (`spent` False).
    """
    if command.deposit:
        tokens = min(command.budget.burst, tokens + command.budget.ratio)
    order = command.candidates if command.plan is None else tuple(command.plan(states))
    for name in order:
        state = states[name]
        claimed, admitted = admit(state, command.at, command.breaker)
        if not admitted:
            continue
        due = command.spend == "always" or (command.spend == "if_failing" and failing(state))
        if due:
            if tokens < 1.0:
                return tokens, Claimed(None, states, spent=False, candidates=order)
            tokens -= 1.0
        return tokens, Claimed(name, {**states, name: claimed}, state, candidates=order)
    return tokens, Claimed(None, states, candidates=order)


class OutOfTime(Exception):
    """The call's time ran out before a shared store could make its claim (the claim
    is not made); the driver ends the call on its deadline."""


class StateStore(Protocol):
    """What a router needs from its state, sync and async.

    `claim` is given `within`, the seconds left in the call (None: no limit): a
    shared store bounds its round trip by it as well as by its own budget, and
    raises `OutOfTime` when the call's time runs out first. `settle` has no such
    bound: it is made even after the deadline, or the state would drift."""

    budget_start: float

    def load(self, names: Sequence[str]) -> dict[str, DeploymentState]: ...

    def claim(self, command: Claim, within: float | None = None) -> Claimed: ...

    def settle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]: ...

    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]: ...

    async def aclaim(self, command: Claim, within: float | None = None) -> Claimed: ...

    async def asettle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]: ...


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

    def claim(self, command: Claim, within: float | None = None) -> Claimed:
        # In memory a claim takes no time: `within` never binds.
        with self._lock:
            self._tokens, claimed = claim(self.load(command.names), self._tokens, command)
            if claimed.name is not None:
                self._states[claimed.name] = claimed.states[claimed.name]
        return claimed

    def settle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        with self._lock:
            before = self._states.get(command.name, _EMPTY)
            after = self._states[command.name] = settle(before, command.outcome, command.breaker)
        return before, after

    def seed(self, states: Mapping[str, DeploymentState], tokens: float | None = None) -> None:
        """Start from these states (and tokens): what a shared store last saw, when it
        falls back to memory."""
        with self._lock:
            self._states.update(states)
            if tokens is not None:
                self._tokens = tokens

    # No awaits inside: each step is atomic for every task on the loop too.
    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        return self.load(names)

    async def aclaim(self, command: Claim, within: float | None = None) -> Claimed:
        return self.claim(command)

    async def asettle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        return self.settle(command)


_EMPTY = DeploymentState()
