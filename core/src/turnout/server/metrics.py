"""`GET /metrics`: Prometheus text, with prometheus-client.

What is counted is shaped like the router's observer events, so the server can
move to `AsyncRouter(observers=[...])` without changing a metric: `attempt`
takes what an `AttemptEvent` carries (deployment, decision, elapsed) and
`call` what a `CallEvent` carries. Today the app feeds them from the call's
result (`ChatResponse.attempts`, `error.attempts`) once the call is over.

Labels are bounded: routes and deployments come from the configuration (a
call for an unknown model is never counted under its name), kinds and
decisions from fixed sets.

Several workers (`--workers N`) share one count through prometheus-client's
multiprocess mode: `turnout serve` sets `PROMETHEUS_MULTIPROC_DIR` before the
workers start, each writes its counts there, and a scrape of any worker adds
them all up. Breaker states are read at scrape time from `router.health()`,
which with `[state] backend = "redis"` every worker sees alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from turnout._health import Health
    from turnout._models import Usage
    from turnout._observe import AttemptEvent

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_ENV", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a cache hit to a long generation.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_STATES = ("closed", "open", "half_open")


class _Breakers(Collector):
    """Each deployment's breaker state and availability, from one `router.health()`."""

    def __init__(self, health: Mapping[str, Health]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "turnout_breaker_state",
            "1 for the state each deployment's breaker is in (closed, open, half_open)",
            labels=["deployment", "state"],
        )
        available = GaugeMetricFamily(
            "turnout_deployment_available",
            "1 when a call may be sent to the deployment now",
            labels=["deployment"],
        )
        inflight = GaugeMetricFamily(
            "turnout_deployment_inflight", "Calls in flight on the deployment", labels=["deployment"]
        )
        for name, health in self.health.items():
            for each in _STATES:
                state.add_metric([name, each], 1.0 if health.status == each else 0.0)
            available.add_metric([name], 1.0 if health.available else 0.0)
            inflight.add_metric([name], float(health.inflight))
        yield from (state, available, inflight)


class Metrics:
    """The server's counters and histograms, in a registry of its own (never the
    process-global one: two apps in one process count apart)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        registry = self.registry = CollectorRegistry()

        def counter(name: str, documentation: str, labels: list[str]) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        def seconds(name: str, documentation: str, labels: list[str]) -> Histogram:
            return Histogram(name, documentation, labels, buckets=_BUCKETS, registry=registry)

        self.calls = counter(
            "turnout_calls",
            "Calls through the router, by route, stream and outcome (ok, the error's kind, "
            "no_healthy_deployment, abandoned, shutting_down)",
            ["route", "stream", "outcome"],
        )
        self.attempts = counter(
            "turnout_attempts",
            "Attempts on deployments, by what the router decided after each",
            ["deployment", "decision"],
        )
        self.errors = counter(
            "turnout_errors",
            "Error answers by kind; source router: a call failed, server: the request was refused",
            ["kind", "source"],
        )
        self.requests = counter("turnout_server_requests", "HTTP requests answered", ["endpoint", "status"])
        self.call_seconds = seconds(
            "turnout_call_duration_seconds",
            "Whole calls, every attempt and wait included",
            ["route", "stream"],
        )
        self.attempt_seconds = seconds(
            "turnout_attempt_duration_seconds", "Attempts on one deployment", ["deployment"]
        )
        self.first_chunk_seconds = seconds(
            "turnout_time_to_first_chunk_seconds",
            "Streams: from the request to the first chunk sent",
            ["route"],
        )
        self.tokens = counter("turnout_tokens", "Tokens the gateways reported", ["route", "type"])
        self.inflight = Gauge(
            "turnout_server_inflight",
            "Chat calls in flight",
            registry=registry,
            multiprocess_mode="livesum",
        )

    # -- what the router's observers will report ------------------------------------

    def attempt(self, deployment: str, decision: str, elapsed: float) -> None:
        """One attempt (an `AttemptEvent`'s deployment, decision and elapsed)."""
        self.attempts.labels(deployment, decision or "unknown").inc()
        self.attempt_seconds.labels(deployment).observe(elapsed)

    def call(
        self,
        route: str,
        *,
        stream: bool,
        outcome: str,
        elapsed: float,
        usage: Usage | None = None,
        first_chunk: float | None = None,
    ) -> None:
        """One call (a `CallEvent`); `outcome` is "ok" or why it failed."""
        streamed = "true" if stream else "false"
        self.calls.labels(route, streamed, outcome).inc()
        self.call_seconds.labels(route, streamed).observe(elapsed)
        if outcome != "ok":
            self.errors.labels(outcome, "router").inc()
        if first_chunk is not None:
            self.first_chunk_seconds.labels(route).observe(first_chunk)
        if usage is not None:
            if usage.prompt_tokens:
                self.tokens.labels(route, "prompt").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                self.tokens.labels(route, "completion").inc(usage.completion_tokens)

    def on_attempt(self, event: AttemptEvent) -> None:
        """The router's observer hook: every attempt as the router decides after it,
        abandoned ones included (a client that left, a hedged leg that lost)."""
        self.attempt(event.deployment, event.decision, event.elapsed)

    # -- what the server does -----------------------------------------------------------

    def refused(self, kind: str) -> None:
        """The server answered an error of its own (a wrong key, a malformed body...)."""
        self.errors.labels(kind, "server").inc()

    def answered(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()

    def render(self, health: Mapping[str, Health]) -> bytes:
        """The text exposition: this process's counts (every worker's, in multiprocess
        mode) and the breakers as `health` shows them."""
        if self.multiprocess:
            scraped = CollectorRegistry()
            MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
        else:
            scraped = self.registry
        breakers = CollectorRegistry()
        breakers.register(_Breakers(health))
        return generate_latest(scraped) + generate_latest(breakers)
