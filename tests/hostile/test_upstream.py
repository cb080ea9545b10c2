"""Issue 16's hostile upstream, through `turnout.Router` and `AsyncRouter`, chat and stream.

Every row runs in a child process of its own (`tests.hostile.probe`), a few at
a time, against one loopback server that misbehaves on purpose. For each row
and each driver: the call ends within its deadline + 1 s with the expected
`TurnoutError` subclass, the child's peak RSS grows by less than 200 MB, and
the key is nowhere reachable (the error's str, repr, pickle and traceback, its
attempts and exception chain, any request on them, DEBUG logs of every
logger). The same run prints the closing table: `python -m tests.hostile.probe`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import turnout

from .probe import MODES, run_rows, upstreams
from .rows import ROWS_LIST, Row

# What "within the deadline" allows: the issue's bound, deadline + 1 s.
SLACK = 1.0
# Peak RSS growth of one hostile answer (the gzip-bombed stream took 3.2 GB before).
MEMORY_MB = 200.0

Outcome = dict[str, Any]


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[tuple[str, str], Outcome]]:
    with upstreams() as (port, redis):
        yield run_rows(ROWS_LIST, port, redis)


CASES = [pytest.param(row, mode, id=f"{row.id}-{mode}") for row in ROWS_LIST for mode in MODES]


def _requests(outcome: Outcome) -> dict[str, int]:
    requests: dict[str, int] = outcome["stats"]["requests"]
    return requests


def check_closed(row: Row, outcome: Outcome) -> None:
    extra = outcome["extra"]
    assert extra["first_call_ok"]
    assert extra["resource_warnings"] == []
    assert "closed" in outcome["message"]
    # Only the call made before close() reached the upstream.
    assert sum(_requests(outcome).values()) == 1


def check_hints(row: Row, outcome: Outcome) -> None:
    extra = outcome["extra"]
    assert extra["set_aside"] <= turnout.MAX_HINT + 1.0
    if extra["retry_after"] is not None:
        assert extra["retry_after"] <= turnout.MAX_HINT
    if row.id in ("hint-nan", "remaining-nan"):  # NaN says nothing: nothing is set aside
        assert extra["set_aside"] == 0.0
    if row.id.startswith("reset-inf"):  # an infinite reset is no reset: the one-second default
        assert extra["set_aside"] <= 1.0


def check_hedge(row: Row, outcome: Outcome) -> None:
    extra, requests = outcome["extra"], _requests(outcome)
    if row.id == "hedge-too-late":
        # The backup could only have started after the deadline: it never was.
        assert "POST ok/v1/chat/completions" not in requests
        return
    assert extra["calls"] == row.options["calls"]
    assert extra["failed"] == 0
    # No call waited for a thread (the backup answers at once; 1 s is generous).
    assert outcome["elapsed"] < row.options["hedge_after"] + 1.0
    assert requests["POST ok/v1/chat/completions"] == row.options["calls"]
    # Every losing primary's connection was closed (none waits for its own timeout).
    assert outcome["stats"]["open"] == 0


def check_call(row: Row, outcome: Outcome) -> None:
    if row.provider == "modelroute":
        cancels = [r for r in _requests(outcome) if r.endswith("/cancel")]
        assert cancels, "the execution was not cancelled"


def check_config(row: Row, outcome: Outcome) -> None:
    assert outcome["extra"]["problems"] == []


CHECKS: dict[str, Callable[[Row, Outcome], None]] = {
    "call": check_call,
    "closed": check_closed,
    "hints": check_hints,
    "hedge": check_hedge,
    "config": check_config,
}


@pytest.mark.parametrize(("row", "mode"), CASES)
def test_a_hostile_row_ends_in_time_in_bounded_memory_and_leaks_no_key(
    outcomes: dict[tuple[str, str], Outcome], row: Row, mode: str
) -> None:
    outcome = outcomes[(row.id, mode)]
    if "skipped" in outcome:
        pytest.skip(outcome["skipped"])
    assert "crashed" not in outcome, outcome.get("crashed")
    summary = {k: outcome[k] for k in ("error", "code", "elapsed", "rss_mb", "message")}
    assert outcome["error"] in row.expect, summary
    assert outcome["elapsed"] <= row.deadline + SLACK, summary
    assert outcome["rss_mb"] < MEMORY_MB, summary
    assert outcome["leaks"] == []
    CHECKS[row.run](row, outcome)


def test_every_row_of_the_issue_is_driven() -> None:
    assert {row.issue for row in ROWS_LIST} >= set(range(1, 15))
    assert {row.op for row in ROWS_LIST if row.run == "call"} == {"chat", "stream"}
