"""One parser of server time hints: every form read the same way, and bounded."""

from __future__ import annotations

import random

import pytest

import turnout
from turnout._health import BreakerConfig, DeploymentState, on_failure, on_rate_limit_headers
from turnout._hints import MAX_HINT, duration, parse_retry_after, quota_exhausted, reset_in

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("6m0s", 360.0), ("1h2m", 3720.0), ("250ms", 0.25), ("1s", 1.0)],
)
def test_durations_in_every_form(text: str, seconds: float) -> None:
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "5x", "m", "1.2.3s"])
def test_unreadable_durations(text: str) -> None:
    assert duration(text) is None


def test_the_reset_header_reads_alike_everywhere() -> None:
    """`x-ratelimit-reset: 6m0s` is 360 s for a 429's wait and for quota exhaustion alike
    (once three parsers disagreed: 360 s, nothing, nothing)."""
    headers = {"x-ratelimit-reset": "6m0s", "x-ratelimit-remaining": "0"}
    assert parse_retry_after(headers, now=NOW) == 360.0
    assert reset_in(headers, NOW) == 360.0
    state = on_rate_limit_headers(DeploymentState(), headers, NOW)
    assert state.exhausted_until == NOW + 360.0


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "1e308"},
        {"retry-after-ms": "1e308"},
        {"x-ratelimit-reset": "1e308"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_every_hint_is_bounded(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) == MAX_HINT


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e400"])
def test_non_finite_hints_are_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, now=NOW) is None
    assert reset_in({"x-ratelimit-reset": value}, NOW) is None


def test_a_success_with_an_infinite_reset_sets_aside_for_a_bounded_time() -> None:
    state = on_rate_limit_headers(
        DeploymentState(), {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"}, NOW
    )
    assert NOW < state.exhausted_until <= NOW + MAX_HINT


@pytest.mark.parametrize(
    ("value", "exhausted"), [("0", True), ("nan", False), ("inf", False), ("3", False), ("", False)]
)
def test_remaining(value: str, exhausted: bool) -> None:
    assert quota_exhausted({"x-ratelimit-remaining": value}) is exhausted


def test_an_error_built_with_a_huge_retry_after_cools_down_for_a_bounded_time() -> None:
    error = turnout.RateLimitError("slow down", retry_after=1e308)
    state = on_failure(DeploymentState(), error, NOW, BreakerConfig(), random.Random(1))
    assert state.cooldown_until == NOW + MAX_HINT
