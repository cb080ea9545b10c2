"""The limits of one call, as one frozen record the drivers consult.

A call has one wall-clock bound (its deadline) that every request, sleep,
body and stream of it must respect, whatever the upstream does; each request
also has its own timeout (the endpoint's, the router's default, or the
caller's `timeout=`), and bodies and stream events have size caps. Deciding
with these numbers is done here, once: the sync and async drivers only ask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypedDict

from attrs import frozen

from ._errors import ProviderError, deadline_error

__all__ = [
    "CLEANUP_GRACE",
    "CLEANUP_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_EVENT",
    "DEFAULT_MAX_STREAM",
    "ERROR_BODY_LIMIT",
    "CallLimits",
    "FlowOptions",
    "limits_of",
]

# A success body larger than this is refused as parse_error instead of filling memory.
DEFAULT_MAX_BODY = 32 * 1024 * 1024
# What an error body is read up to: enough for any envelope, never a 5 MB HTML page.
ERROR_BODY_LIMIT = 64 * 1024
# One server-sent event (its lines and its data together) may not grow past this.
DEFAULT_MAX_EVENT = 4 * 1024 * 1024
# A whole stream (its events, inflated) may not grow past this: the router keeps the
# streamed text (for `stream.response` and an error's `partial_text`), so an upstream
# sending valid chunks as fast as loopback allows must end as an error, not as
# gigabytes of text. A 100,000-token answer is about 25 MB of OpenAI-style events.
DEFAULT_MAX_STREAM = 64 * 1024 * 1024
# Best-effort cleanup requests (cancelling an execution, failing a job) get at most
# this long, and never more than CLEANUP_GRACE past the call's deadline: a call ends
# within its deadline plus one second, whatever the cleanup endpoint does.
CLEANUP_TIMEOUT = 5.0
CLEANUP_GRACE = 0.5
# The shortest timeout a request is ever given: zero would mean "no timeout" to httpx.
_MIN_TIMEOUT = 0.001


class FlowOptions(TypedDict, total=False):
    """How a flow driven outside a router is bounded: `limits`, or a `deadline` and a
    request `timeout` (seconds) on `clock`."""

    deadline: float
    timeout: float
    clock: Callable[[], float]
    limits: CallLimits


def limits_of(options: FlowOptions) -> CallLimits:
    limits = options.get("limits")
    if limits is not None:
        return limits
    return CallLimits.starting_now(
        options.get("deadline", 600.0),
        timeout=options.get("timeout", 60.0),
        clock=options.get("clock", time.monotonic),
    )


@frozen
class CallLimits:
    """When the call must end, and how much each request may take and read.

    `deadline_at` is on `clock` (monotonic by default); `deadline` is the
    call's total in seconds, for messages. `timeout` is the default timeout
    of one request; `override` (the caller's `timeout=`) replaces every
    endpoint's own. `max_body`, `max_event` and `max_stream` cap a body, one
    server-sent event and a whole stream, in bytes.
    """

    deadline_at: float
    deadline: float
    timeout: float = 60.0
    max_body: int = DEFAULT_MAX_BODY
    max_event: int = DEFAULT_MAX_EVENT
    override: float | None = None
    clock: Callable[[], float] = time.monotonic
    max_stream: int = DEFAULT_MAX_STREAM

    @classmethod
    def starting_now(
        cls,
        deadline: float,
        *,
        timeout: float = 60.0,
        max_body: int = DEFAULT_MAX_BODY,
        max_event: int = DEFAULT_MAX_EVENT,
        override: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_stream: int = DEFAULT_MAX_STREAM,
    ) -> CallLimits:
        return cls(clock() + deadline, deadline, timeout, max_body, max_event, override, clock, max_stream)

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self.deadline_at - self.clock()

    def expired_error(self) -> ProviderError:
        return deadline_error(self.deadline)

    def check(self) -> None:
        """Raise the deadline's error once it has passed."""
        if self.clock() >= self.deadline_at:
            raise deadline_error(self.deadline)

    def request_timeout(self, endpoint: float | None, *, cleanup: bool = False) -> float:
        """The timeout of one request: its own (or the caller's override), never past
        the deadline. A cleanup request gets its own short budget instead."""
        if cleanup:
            return self.cleanup_timeout(endpoint)
        left = self.left()
        if left <= 0:
            raise deadline_error(self.deadline)
        own = self.override if self.override is not None else (endpoint or self.timeout)
        return max(min(own, left), _MIN_TIMEOUT)

    def cleanup_timeout(self, endpoint: float | None = None) -> float:
        """A cleanup request's budget: short, and ending by the deadline plus the grace."""
        budget = min(endpoint or CLEANUP_TIMEOUT, CLEANUP_TIMEOUT, self.left() + CLEANUP_GRACE)
        return max(budget, _MIN_TIMEOUT)

    def sleep_for(self, seconds: float) -> float:
        """How long to sleep; a sleep that would reach the deadline is not slept at all
        (the deadline's error is raised at once instead)."""
        if seconds >= self.left():
            raise deadline_error(self.deadline)
        return max(seconds, 0.0)

    def body_limit(self, requested: int, *, success: bool) -> int:
        """How much of a body is read: the flow's cap and the call's, and far less for
        an error (an envelope, never a page of HTML)."""
        limit = min(requested, self.max_body)
        return limit if success else min(limit, ERROR_BODY_LIMIT)
