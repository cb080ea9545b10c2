"""Graceful shutdown as state: whether new calls are taken, how many are in flight,
and when the grace period is over.

The server's first stop signal calls `drain()` (from a signal handler, so it only
sets fields); from then on new calls are answered 503 and `/readyz` says so,
while calls in flight go on. The server stops once none is left, or when the
grace period ends: then `expired` is set, and the calls still running are
cancelled and answered (a 503, or an error frame in a stream already begun).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Gate"]


class Gate:
    def __init__(self, grace_period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_period = grace_period
        self.clock = clock
        self.draining = False
        self.inflight = 0
        self.until: float | None = None
        self._expired: asyncio.Future[None] | None = None

    @property
    def expired(self) -> asyncio.Future[None]:
        """Done once the grace period is over (made in the running loop on first use)."""
        if self._expired is None:
            self._expired = asyncio.get_running_loop().create_future()
        return self._expired

    def drain(self) -> None:
        """Take no new calls; the calls in flight have the grace period to finish.
        Safe in a signal handler (no loop call)."""
        if not self.draining:
            self.draining = True
            self.until = self.clock() + self.grace_period

    def may_stop(self) -> bool:
        """Whether a draining server may stop now: nothing in flight, or the grace
        period is over (then the calls left are told to give up). Call it in the loop."""
        if not self.draining:
            return False
        if self.inflight == 0:
            return True
        assert self.until is not None
        if self.clock() < self.until:
            return False
        if not self.expired.done():
            self.expired.set_result(None)
        return True
