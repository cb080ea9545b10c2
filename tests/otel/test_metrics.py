"""The metrics: the two GenAI client metrics (names, units, buckets and attributes as the
semantic conventions give them) and turnout's attempt and breaker counters."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum

import turnout
from tests.core.calls import HI, emulated, per_host
from tests.core.conftest import deployment
from turnout.emulation import Fault
from turnout_otel import OpenTelemetryObserver
from turnout_otel.names import DURATION_BUCKETS, TOKEN_BUCKETS

from .conftest import Telemetry, retried_then_fell_back


def operation(deployment: str, **more: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "acme",
        "gen_ai.request.model": f"model-{deployment}",
        **more,
    }


async def test_the_two_genai_metrics_and_the_attempt_counter(calls: Any, telemetry: Telemetry) -> None:
    response = await retried_then_fell_back(calls)
    found = telemetry.metrics()
    duration, tokens = found["gen_ai.client.operation.duration"], found["gen_ai.client.token.usage"]
    assert (duration.unit, tokens.unit) == ("s", "{token}")
    assert isinstance(duration.data, Histogram)
    assert isinstance(tokens.data, Histogram)
    assert tuple(duration.data.data_points[0].explicit_bounds) == DURATION_BUCKETS
    assert tuple(tokens.data.data_points[0].explicit_bounds) == TOKEN_BUCKETS

    durations = {tuple(sorted(attrs.items())): value for attrs, value in telemetry.points_of(duration)}
    assert set(durations) == {
        tuple(sorted(operation("a", **{"error.type": "rate_limited"}).items())),
        tuple(sorted(operation("a", **{"error.type": "unavailable"}).items())),
        tuple(sorted(operation("b").items())),
    }
    for count, seconds in durations.values():
        assert count == 1
        assert 0 < seconds < 5
    assert sorted(telemetry.points_of(tokens), key=lambda p: p[0]["gen_ai.token.type"]) == [
        (operation("b", **{"gen_ai.token.type": "input"}), (1, response.usage.prompt_tokens)),
        (operation("b", **{"gen_ai.token.type": "output"}), (1, response.usage.completion_tokens)),
    ]

    attempts = found["turnout.router.attempts"]
    assert attempts.unit == "{attempt}"
    assert isinstance(attempts.data, Sum)
    assert attempts.data.is_monotonic
    assert sorted(telemetry.points_of(attempts), key=lambda p: p[0]["turnout.decision"]) == [
        (
            {
                "turnout.decision": "done",
                "turnout.deployment": "b",
                "gen_ai.provider.name": "acme",
            },
            1,
        ),
        (
            {
                "turnout.decision": "fallback",
                "turnout.deployment": "a",
                "gen_ai.provider.name": "acme",
                "error.type": "unavailable",
            },
            1,
        ),
        (
            {
                "turnout.decision": "retry",
                "turnout.deployment": "a",
                "gen_ai.provider.name": "acme",
                "error.type": "rate_limited",
            },
            1,
        ),
    ]


async def test_breaker_transitions_and_cooldowns_are_counted(calls: Any, telemetry: Telemetry) -> None:
    script = per_host({"a": [Fault(error="overloaded")], "b": [Fault(error="invalid_key")]})
    await calls.chat(
        [deployment("a"), deployment("b"), deployment("c")],
        emulated(script),
        retry_policy=turnout.RetryPolicy(max_retries=0),
        breaker=turnout.BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0),
        observers=[OpenTelemetryObserver()],
    )
    transitions = telemetry.metrics()["turnout.breaker.transitions"]
    assert transitions.unit == "{transition}"
    assert isinstance(transitions.data, Sum)
    assert sorted(telemetry.points_of(transitions), key=lambda p: p[0]["turnout.deployment"]) == [
        (
            {
                "turnout.deployment": "a",
                "gen_ai.provider.name": "acme",
                "turnout.breaker.from": "closed",
                "turnout.breaker.to": "open",
            },
            1,
        ),
        (  # an authentication failure sets the deployment aside: its breaker stays closed
            {
                "turnout.deployment": "b",
                "gen_ai.provider.name": "acme",
                "turnout.breaker.from": "closed",
                "turnout.breaker.to": "closed",
            },
            1,
        ),
    ]


def test_one_observer_on_several_routers_adds_their_counts_up(
    plugins: turnout.Plugins, telemetry: Telemetry
) -> None:
    """As the plugin's observer is: one instance for every router."""
    observer = OpenTelemetryObserver()
    for _ in range(3):
        with turnout.Router(
            [deployment("a")], plugins=plugins, transport=emulated(), observers=[observer]
        ) as router:
            router.chat(HI)
    [(attrs, value)] = telemetry.points("turnout.router.attempts")
    assert attrs["turnout.decision"] == "done"
    assert value == 3


def test_two_observers_count_into_one_counter_and_another_provider_has_its_own(
    plugins: turnout.Plugins, telemetry: Telemetry
) -> None:
    """The SDK keeps the first callback of an instrument registered twice: a second
    observer on the same provider must still be counted; one on another provider is
    counted there only."""
    reader = InMemoryMetricReader()
    own = MeterProvider(metric_readers=[reader])
    for observer in (
        OpenTelemetryObserver(),
        OpenTelemetryObserver(),
        OpenTelemetryObserver(meter_provider=own),
    ):
        with turnout.Router(
            [deployment("a")], plugins=plugins, transport=emulated(), observers=[observer]
        ) as router:
            router.chat(HI)
    [(_, value)] = telemetry.points("turnout.router.attempts")
    assert value == 2
    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "turnout.router.attempts"
    ]
    assert [p.value for p in metric.data.data_points] == [1]
    own.shutdown()
