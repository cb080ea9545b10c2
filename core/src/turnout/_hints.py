"""What servers say about waiting, read once: the one parser of time hints.

`Retry-After` (seconds or an HTTP-date), `retry-after-ms`, `X-RateLimit-Reset`
(unix seconds, seconds from now, or OpenAI's `6m0s` / `250ms`) and
`X-RateLimit-Remaining` (and their `-requests` spellings). A hint is never
trusted: a negative one is zero, a non-finite or unreadable one is ignored,
and none is longer than `MAX_HINT`, so no header (`Retry-After: 1e308`, a
reset in the year 9999) sets a deployment aside for longer than that, in
memory and on Redis alike.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

__all__ = ["MAX_HINT", "bounded", "duration", "parse_retry_after", "quota_exhausted", "reset_in"]

# The longest wait any server hint can impose (an hour): longer than any documented
# rate-limit window of the gateways, short enough that a bogus header heals itself.
MAX_HINT = 3600.0
# Numbers above this in X-RateLimit-Reset are unix times, not seconds from now.
_UNIX_TIME = 1_000_000_000
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_REMAINING = ("x-ratelimit-remaining", "x-ratelimit-remaining-requests")
_RESET = ("x-ratelimit-reset", "x-ratelimit-reset-requests")


def bounded(seconds: float | None) -> float | None:
    """A wait as the router may use it: finite, between 0 and MAX_HINT; else None."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_HINT)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def duration(text: str) -> float | None:
    """`30`, `1.5`, or a Go-style duration (`6m0s`, `1h2m`, `250ms`) in seconds."""
    text = text.strip()
    if not text:
        return None
    plain = _number(text)
    if plain is not None:
        return plain
    total, number, i = 0.0, "", 0
    while i < len(text):
        char = text[i]
        if char.isdigit() or char == ".":
            number += char
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else char
        value = _number(number)
        if unit not in _UNITS or value is None:
            return None
        total += value * _UNITS[unit]
        number = ""
        i += len(unit)
    return None if number else total


def _http_date(text: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    try:
        return when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None


def reset_in(headers: Mapping[str, str], now: float, names: tuple[str, ...] = _RESET) -> float | None:
    """Seconds until the rate-limit window resets (`X-RateLimit-Reset`, or OpenAI's
    `-requests` spelling), bounded."""
    value = next((headers[h] for h in names if h in headers), None)
    if value is None:
        return None
    seconds = duration(value)
    if seconds is None or seconds < 0:
        return None
    if seconds > _UNIX_TIME:
        seconds -= now  # a reset already past is no wait at all
    return bounded(seconds)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After` (seconds or HTTP-date) or
    `X-RateLimit-Reset`, bounded. `headers` must have lower-case names. The longest
    hint wins: waiting less than any one of them would be refused again."""
    now = time.time() if now is None else now
    hints: list[float | None] = []
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _number(ms.strip())
        hints.append(None if value is None or value < 0 else value / 1000.0)
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        seconds = _number(retry_after.strip())
        if seconds is None:
            hints.append(_http_date(retry_after, now))  # a date already past is no wait at all
        elif seconds >= 0:
            hints.append(seconds)
    # Only the plain spelling: OpenAI's `x-ratelimit-reset-requests` is when the whole
    # window refills, not when one more request is let through.
    hints.append(reset_in(headers, now, ("x-ratelimit-reset",)))
    found = [h for h in (bounded(h) for h in hints) if h is not None]
    return max(found) if found else None


def quota_exhausted(headers: Mapping[str, str]) -> bool:
    """`X-RateLimit-Remaining` says no request is left in this window (a value that is
    not a finite number says nothing)."""
    value = next((headers[h] for h in _REMAINING if h in headers), None)
    remaining = _number(value.strip()) if value is not None else None
    return remaining is not None and remaining < 1
