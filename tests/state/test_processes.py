"""Two router processes on one Redis act as one router."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import RedisServer

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("worker.py")


def run(server: RedisServer, prefix: str, **job: Any) -> dict[str, Any]:
    """One separate Python process running a router against the shared Redis."""
    job = {"url": server.url, "prefix": prefix, **job}
    done = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shared"], "the worker lost Redis"
    return result


def test_a_breaker_opened_by_one_process_is_respected_by_another(
    redis_server: RedisServer, prefix: str
) -> None:
    first = run(redis_server, prefix, failing={"a": "overloaded"}, calls=5)
    assert [c["attempts"] for c in first["calls"]] == [[["a", "unavailable"], ["b", None]]] * 5
    assert first["health"]["a"] == "open"
    # The other process has never seen `a` fail: its first call goes straight to b.
    second = run(redis_server, prefix, failing={"a": "overloaded"}, calls=3)
    assert [c["attempts"] for c in second["calls"]] == [[["b", None]]] * 3
    assert second["hosts"] == ["b.test"] * 3
    assert second["health"] == {"a": "open", "b": "closed"}


def test_a_401_cooldown_set_by_one_process_is_seen_by_another(redis_server: RedisServer, prefix: str) -> None:
    first = run(redis_server, prefix, failing={"a": "invalid_key"}, calls=1)
    assert first["calls"] == [{"attempts": [["a", "authentication"], ["b", None]]}]
    second = run(redis_server, prefix, calls=2)  # a would answer now: the cooldown holds it back
    assert [c["attempts"] for c in second["calls"]] == [[["b", None]]] * 2
    assert second["hosts"] == ["b.test"] * 2


def test_the_retry_budget_is_shared(redis_server: RedisServer, prefix: str) -> None:
    # Three tokens, no deposits, `a` always overloaded (breaker kept closed), up to
    # three immediate retries: each retry costs a token.
    job = {
        "failing": {"a": "overloaded"},
        "budget": {"ratio": 0.0, "burst": 3.0},
        "budget_start": 3.0,
        "breaker": {"consecutive_failures": 1000, "failure_rate": 1.1},
        "retry": {"max_retries": 3, "base": 0.001, "cap": 0.001, "jitter": "none"},
        "calls": 1,
    }
    first = run(redis_server, prefix, names=["a"], **job)
    assert first["calls"] == [{"error": "ServiceUnavailableError", "attempts": [["a", "unavailable"]] * 4}]
    # The other process finds the bucket empty: a's error is raised without a retry.
    second = run(redis_server, prefix, names=["a"], **job)
    assert second["calls"] == [{"error": "ServiceUnavailableError", "attempts": [["a", "unavailable"]]}]
    assert second["hosts"] == ["a.test"]
