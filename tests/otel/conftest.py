"""The OpenTelemetry SDK, set once as the global providers (as an application does), with
an in-memory span exporter and an in-memory metric reader that each test reads afresh."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import turnout
from tests.core.acme import Acme
from tests.core.calls import Calls, emulated, per_host
from tests.core.conftest import deployment
from turnout.emulation import Fault
from turnout_otel import OpenTelemetryObserver

# Rate-limited on `a`, retried there and answered 503, then answered by `b`.
ONE_RETRY = turnout.RetryPolicy(max_retries=1, base=0.001, cap=0.001, jitter="none")
RETRY_THEN_FALLBACK = {"a": [Fault(error="slow_down", retry_after=0.001), Fault(error="overloaded")]}


async def retried_then_fell_back(calls: Calls) -> Any:
    """The answer of one call that made three attempts (retry, fallback, done), observed."""
    return await calls.chat(
        [deployment("a"), deployment("b")],
        emulated(per_host(RETRY_THEN_FALLBACK)),
        retry_policy=ONE_RETRY,
        observers=[OpenTelemetryObserver()],
    )


class Telemetry:
    """What the global SDK received: finished spans, and the metrics recorded since the
    test began (delta temporality: each read returns what came since the last)."""

    def __init__(self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.exporter = exporter
        self.reader = reader

    def reset(self) -> None:
        self.exporter.clear()
        self.reader.get_metrics_data()

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        found: dict[str, Metric] = {}
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                if scope.scope.name == "turnout_otel":
                    found.update((metric.name, metric) for metric in scope.metrics)
        return found

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of one metric recorded since the last read (see `points_of`)."""
        metric = self.metrics().get(name)
        return [] if metric is None else self.points_of(metric)

    @staticmethod
    def points_of(metric: Metric) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of each data point: a counter's sum, a histogram's
        (count, sum). An asynchronous counter reports every attribute set it ever saw
        (the tally is the process's): those that did not grow since the last read are
        left out."""
        return [
            (dict(p.attributes or {}), (p.count, p.sum) if hasattr(p, "count") else p.value)
            for p in metric.data.data_points
            if hasattr(p, "count") or p.value != 0
        ]


@pytest.fixture(scope="session")
def _sdk() -> Telemetry:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    delta = dict.fromkeys((Counter, ObservableCounter, Histogram), AggregationTemporality.DELTA)
    reader = InMemoryMetricReader(preferred_temporality=delta)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return Telemetry(exporter, reader)


@pytest.fixture
def telemetry(_sdk: Telemetry) -> Iterator[Telemetry]:
    _sdk.reset()
    yield _sdk
    _sdk.reset()


@pytest.fixture
def plugins() -> turnout.Plugins:
    """Only acme (the core's test provider), registered in code."""
    found = turnout.Plugins(entry_points=False)
    found.add_provider(Acme())
    return found


@pytest.fixture(params=["sync", "async"])
def calls(request: pytest.FixtureRequest, plugins: turnout.Plugins) -> Calls:
    """Whole calls through `turnout.Router` or `turnout.AsyncRouter`."""
    return Calls(request.param, plugins)
