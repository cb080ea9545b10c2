"""Whether a Redis store is attached, and the stand-in it serves from while it is not.

Redis is never allowed to fail a call. When an operation fails (after the one
retry on a fresh connection that `_redis_flow` allows), the store marks Redis
down, logs one warning, and serves from a `MemoryStore` seeded with the states
Redis last gave. Every `retry_interval` seconds one call tries Redis again (a
*probe*) while the others keep to memory; when a probe succeeds, sharing
resumes (logged once too) and what was learned locally stays local.

No I/O happens here: the flows ask `mode()` before they reach Redis and report
`failed()` / `resumed()` afterwards. One lock guards the switch, so threads
and event loops of one store agree on it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import TypeVar

from attrs import define, evolve, field

from ._health import DeploymentState
from ._state import MemoryStore

__all__ = ["Mode", "Outage"]

logger = logging.getLogger("turnout.state")

T = TypeVar("T")


class Mode(enum.Enum):
    """How one call reaches its state."""

    SHARED = "shared"  # Redis, as usual
    PROBE = "probe"  # Redis again, the first call after `retry_interval` of an outage
    LOCAL = "local"  # the local stand-in: Redis is down and another call probes


@define(eq=False)
class Outage:
    """The attach/detach switch of one store, and its local stand-in."""

    shown_url: str
    # What the URL holds that no log may show (its password): masked, never in a repr.
    secrets: tuple[str, ...] = field(repr=False)
    retry_interval: float
    budget_start: float
    down: bool = field(default=False, init=False)
    local: MemoryStore = field(init=False, repr=False)
    # What Redis last said, to seed the stand-in with: open breakers stay open.
    seen: dict[str, DeploymentState] = field(init=False, factory=dict, repr=False)
    seen_tokens: float | None = field(default=None, init=False)
    _lock: threading.Lock = field(init=False, factory=threading.Lock, repr=False)
    _retry_at: float = field(default=0.0, init=False, repr=False)

    @local.default
    def _stand_in(self) -> MemoryStore:
        return MemoryStore(self.budget_start)

    def mode(self) -> Mode:
        return Mode.SHARED if not self.down else self._outage_mode()

    def _outage_mode(self) -> Mode:
        now = time.monotonic()
        with self._lock:
            if not self.down:  # another call found Redis back meanwhile
                return Mode.SHARED
            if now >= self._retry_at:
                # This call tries Redis; the others keep to memory until the next interval.
                self._retry_at = now + self.retry_interval
                return Mode.PROBE
        return Mode.LOCAL

    def failed(self, exc: BaseException) -> None:
        """An operation failed for a reason a fresh connection did not mend."""
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_interval
            if self.down:
                return
            self.down = True
            self.local = self._seeded()
        logger.warning(
            "Redis state store %s unavailable (%s); router state is kept in this process "
            "meanwhile, and Redis is tried every %gs",
            self.shown_url,
            self.describe(exc),
            self.retry_interval,
        )

    def resumed(self) -> None:
        """A probe succeeded."""
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.info("Redis state store %s answers again; router state is shared again", self.shown_url)

    def describe(self, exc: BaseException) -> str:
        """The error for the log: its secrets masked, its length bounded."""
        text = f"{type(exc).__name__}: {exc}"
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text[:300]

    def _seeded(self) -> MemoryStore:
        """A local store starting from the states Redis last gave: open breakers stay open.
        Calls in flight elsewhere are not ours to count."""
        local = MemoryStore(self.budget_start)
        seen = {name: evolve(state, inflight=0, probes=0) for name, state in list(self.seen.items())}
        local.seed(seen, self.seen_tokens)
        return local
