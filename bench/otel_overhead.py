"""What turnout-otel costs: CPU per call of the same router with and without its observer.

    python bench/otel_overhead.py [--quick] [--no-sdk]

With an OpenTelemetry SDK configured as an application would (a TracerProvider
with a BatchSpanProcessor over an exporter that drops the spans, a
MeterProvider with a periodic reader over an exporter that drops the metrics;
their threads' CPU counts, `time.process_time()` being the whole process's),
each cell runs two routers of one process in interleaved rounds: the same
deployments, one of them with `observers=[OpenTelemetryObserver()]`. Target
(issue 18): the observer's router at most 1.25x the CPU per call of the other.

Cells: the loopback upstream (bench/loopback.py, its own process) over real
sockets as bench/run.py measures turnout, plain and streamed, sync and async,
and a 503 -> fallback call (two attempts, so two attempt spans); and in one
process over httpx's MockTransport, where a call costs least and the
observer's share is largest. `--no-sdk`: no SDK at all (the API's no-ops: what
an installed plugin costs an application that configured no OpenTelemetry).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

import turnout
from contenders import API_KEY, MESSAGES, MODEL, _keep_trying, loopback_plugins
from harness import Placement, Upstream

TARGET = 1.25


def configure_sdk() -> None:
    """The global providers, as an application sets them, exporting nowhere."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Spans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Metrics(MetricExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kw: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
            pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Spans()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(Metrics(), export_interval_millis=1_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


class Floor:
    """The least the SDK can be asked for what turnout-otel records for a one-attempt
    call: two spans (a call span, an attempt span inside it) with the same attributes,
    prebuilt, and three histogram measurements. What it costs is the SDK's, not the
    plugin's: the difference between the two is what the plugin could still save."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.tracer = trace.get_tracer("bench-floor")
        meter = metrics.get_meter("bench-floor")
        self.duration = meter.create_histogram("floor.duration", unit="s")
        self.tokens = meter.create_histogram("floor.tokens", unit="{token}")
        operation = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "loopback"}
        self.operation = {**operation, "gen_ai.request.model": MODEL}
        self.inputs = {**self.operation, "gen_ai.token.type": "input"}
        self.outputs = {**self.operation, "gen_ai.token.type": "output"}
        self.call = {"turnout.call_id": "c", "turnout.route": "default", "turnout.attempts": 1}
        self.attempt = {
            **self.operation,
            "turnout.deployment": "primary",
            "turnout.attempt": 1,
            "turnout.decision": "done",
            "gen_ai.usage.input_tokens": 9,
            "gen_ai.usage.output_tokens": 7,
        }

    def on_attempt(self, event: turnout.AttemptEvent) -> None:
        self.duration.record(event.elapsed, self.operation)
        self.tokens.record(9, self.inputs)
        self.tokens.record(7, self.outputs)

    def on_call(self, event: turnout.CallEvent) -> None:
        from opentelemetry.trace import SpanKind

        now = time.time_ns()
        call = self.tracer.start_span("turnout.chat default", attributes=self.call, start_time=now - 1000)
        inside = self.trace.set_span_in_context(call)
        self.tracer.start_span(
            "chat m", inside, SpanKind.CLIENT, attributes=self.attempt, start_time=now - 900
        ).end(end_time=now)
        call.end(end_time=now)


# -- the cells --------------------------------------------------------------------


def body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-x",
            "model": MODEL,
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
        }
    ).encode()


def deployments(base_url: str, fallback: bool) -> list[turnout.Deployment]:
    primary = turnout.Deployment("primary", "loopback", MODEL, api_key=API_KEY, base_url=f"{base_url}/v1")
    if not fallback:
        return [primary]
    failing = turnout.Deployment(
        "failing",
        "loopback",
        MODEL,
        api_key=API_KEY,
        base_url=f"{base_url}/fail/v1",
        retry_policy=turnout.RetryPolicy(max_retries=0),
    )
    return [failing, primary]


Call = Callable[[], Any]


def sync_cell(routers: dict[str, turnout.Router], stream: bool) -> dict[str, Call]:
    def plain(router: turnout.Router) -> Call:
        return lambda: router.chat(MESSAGES).content

    def streamed(router: turnout.Router) -> Call:
        def call() -> str:
            with router.stream(MESSAGES) as chunks:
                return "".join(chunk.delta for chunk in chunks)

        return call

    return {name: (streamed if stream else plain)(router) for name, router in routers.items()}


def measure(
    calls: dict[str, Call], rounds: int, count: int, run: Callable[[Call, int], None]
) -> dict[str, list[float]]:
    """CPU µs per call of each variant, one list entry per round; the order alternates."""
    for call in calls.values():  # warm up: connections, caches, instruments
        run(call, max(count // 10, 5))
    found: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            started = time.process_time()
            run(calls[name], count)
            found[name].append((time.process_time() - started) / count * 1e6)
    return found


def run_sync(call: Call, count: int) -> None:
    for _ in range(count):
        call()


def report(cell: str, found: dict[str, list[float]]) -> bool:
    ratios = [o / p for o, p in zip(found["otel"], found["plain"], strict=True)]
    plain, otel = statistics.median(found["plain"]), statistics.median(found["otel"])
    ratio = statistics.median(ratios)
    verdict = "pass" if ratio <= TARGET else "MISS"
    print(
        f"| {cell} | {plain:,.0f} | {otel:,.0f} | {otel - plain:+,.0f} | "
        f"{ratio:.2f}x ({min(ratios):.2f}x-{max(ratios):.2f}x) | {verdict} |",
        flush=True,
    )
    return ratio <= TARGET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 9; quick 3)")
    parser.add_argument("--calls", type=int, help="calls per variant per round (default 400; quick 60)")
    parser.add_argument("--no-sdk", action="store_true", help="configure no SDK (the API's no-ops)")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the upstream and this process to CPUs"
    )
    args = parser.parse_args(argv)
    placement = Placement.choose(not args.no_pin)  # as bench/run.py: the upstream on a CPU of its own
    Placement.apply(0, placement.clients)
    rounds = args.rounds or (3 if args.quick else 9)
    count = args.calls or (60 if args.quick else 400)
    if not args.no_sdk:
        configure_sdk()
    from turnout_otel import OpenTelemetryObserver

    observer = OpenTelemetryObserver()
    plugins = loopback_plugins()
    sdk = (
        "no SDK (API no-ops)" if args.no_sdk else "SDK: BatchSpanProcessor + periodic metric reader, dropping"
    )
    print(
        f"turnout-otel overhead, {sdk}; {rounds} rounds x {count} calls per variant "
        f"(CPU µs per call); {placement.describe()}\n"
    )
    print("| cell | without | with turnout-otel | difference | ratio (range) | target 1.25x |")
    print("|---|---|---|---|---|---|")
    passed = []

    # In one process: the cheapest call there is, so the largest share for the observer.
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json=json.loads(body())))
    variants: list[tuple[str, list[Any]]] = [("plain", []), ("otel", [observer])]
    if not args.no_sdk:
        variants.append(("floor", [Floor()]))
    routers = {
        name: turnout.Router(
            deployments("http://127.0.0.1:9", False), plugins=plugins, transport=mock, observers=observers
        )
        for name, observers in variants
    }
    found = measure(sync_cell(routers, False), rounds, count * 4, run_sync)
    passed.append(report("in process (MockTransport), plain, sync", found))
    floor = found.get("floor")

    upstream = Upstream(placement, max_seconds=1800)
    try:
        for label, stream, fallback in (
            ("loopback, plain, sync", False, False),
            ("loopback, streamed (10 chunks), sync", True, False),
            ("loopback, 503 -> fallback, sync", False, True),
        ):
            options = _keep_trying() if fallback else {}
            routers = {
                name: turnout.Router(
                    deployments(upstream.base_url, fallback), plugins=plugins, observers=observers, **options
                )
                for name, observers in (("plain", []), ("otel", [observer]))
            }
            passed.append(report(label, measure(sync_cell(routers, stream), rounds, count, run_sync)))
            for router in routers.values():
                router.close()
        passed.append(
            report("loopback, plain, async", async_cell(upstream.base_url, plugins, observer, rounds, count))
        )
    finally:
        upstream.stop()
    print(f"\n{sum(passed)} of {len(passed)} cells within {TARGET}x")
    if floor is not None:
        extra = statistics.median(f - p for f, p in zip(floor, found["plain"], strict=True))
        print(
            f"In process, the SDK floor (the same two spans and three measurements, made inline "
            f"with prebuilt attributes: class Floor) costs {extra:+,.0f} µs per call; "
            f"turnout-otel {statistics.median(found['otel']) - statistics.median(found['plain']):+,.0f} µs."
        )


def async_cell(base_url: str, plugins: Any, observer: Any, rounds: int, count: int) -> dict[str, list[float]]:
    async def cell() -> dict[str, list[float]]:
        routers = {
            name: turnout.AsyncRouter(deployments(base_url, False), plugins=plugins, observers=observers)
            for name, observers in (("plain", []), ("otel", [observer]))
        }
        found: dict[str, list[float]] = {name: [] for name in routers}
        for router in routers.values():  # warm up
            for _ in range(max(count // 10, 5)):
                await router.chat(MESSAGES)
        names = list(routers)
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                router = routers[name]
                started = time.process_time()
                for _ in range(count):
                    await router.chat(MESSAGES)
                found[name].append((time.process_time() - started) / count * 1e6)
        for router in routers.values():
            await router.aclose()
        return found

    return asyncio.run(cell())


if __name__ == "__main__":
    main()
