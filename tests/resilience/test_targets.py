"""Issue 17's targets, with the defaults: the same code as the chaos benchmark and the
simulation (bench/chaos.py, bench/resilience_sim.py), on smaller runs.

- two deployments on one upstream failing 30 % at random: >= 95 % answered;
- one deployment answering 20 % 429 with Retry-After <= 1 s: >= 95 % answered;
- primary dead, secondary healthy, any budget (none at all here): 100 % answered;
- a dead upstream among healthy ones: after the trip, one probe per open period;
- every call ends within its deadline + 1 s.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import chaos  # noqa: E402
import resilience_sim as sim  # noqa: E402
from turnout import BreakerConfig, RetryBudget  # noqa: E402


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    served = chaos.Upstream()
    yield served
    served.stop()


# -- simulated, with the router's own decisions ------------------------------------


def test_a_third_failing_at_random_almost_never_trips_the_default_breaker() -> None:
    assert sim.trip_probability(0.3, BreakerConfig(), attempts=1000, runs=300) < 0.01
    # ... while the old defaults tripped within 100 attempts more often than not.
    assert sim.trip_probability(0.3, sim.OLD, attempts=100, runs=300) > 0.5


def test_a_dead_upstream_trips_the_default_breaker_after_twelve() -> None:
    assert sim.trip_probability(1.0, BreakerConfig(), attempts=12, runs=10) == 1.0
    assert sim.trip_probability(1.0, BreakerConfig(), attempts=11, runs=10) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_degraded_upstreams_still_answer(seed: int) -> None:
    outcome = sim.simulate(sim.degraded(0.3), calls=1200, seed=seed)
    assert outcome.share >= 0.95


def test_a_spent_budget_never_blocks_a_healthy_fallback() -> None:
    outcome = sim.simulate(sim.dead_beside_healthy("a"), calls=1200, budget=RetryBudget(ratio=0.0, burst=0.0))
    assert outcome.share == 1.0
    # Twelve to trip, then a probe per open period (30 s, then 60 s): the run lasts 60 s.
    assert outcome.requests["a"] <= 12 + 2


# -- over loopback HTTP ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_degraded_two_deployments_over_http(upstream: Any, mode: str) -> None:
    result = chaos.run(upstream, "degraded", ["degraded", "degraded"], mode=mode, calls=120)
    assert result.share >= 0.95, result.errors
    assert result.slowest <= chaos.DEADLINE + 1.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_429_storm_on_one_deployment_over_http(upstream: Any, mode: str) -> None:
    result = chaos.run(upstream, "429", ["ratelimited"], mode=mode, calls=120)
    assert result.share >= 0.95, result.errors
    assert result.slowest <= chaos.DEADLINE + 1.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dead_primary_over_http(upstream: Any, mode: str) -> None:
    result = chaos.run(upstream, "dead primary", ["dead", "healthy"], mode=mode, calls=80)
    assert result.share == 1.0, result.errors
