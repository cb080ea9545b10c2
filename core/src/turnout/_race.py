"""When the next leg of a race starts: a pure function of times, shared by both drivers.

A hedged call races flows: the first starts at once, each next one after its
delay, or as soon as every started one has finished without winning. A leg
that could only start at or after the call's deadline is never started.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["next_start"]


def next_start(
    delays: Sequence[float],
    started: int,
    began_at: float,
    now: float,
    running: int,
    deadline_at: float,
) -> tuple[bool, float | None]:
    """(start the next leg now?, how long to wait for a result before asking again;
    None: until one finishes)."""
    if started >= len(delays):
        return False, None
    due = now if running == 0 else max(began_at + delays[started], now)
    if due >= deadline_at:
        return False, None
    if due <= now:
        return True, None
    return False, due - now
