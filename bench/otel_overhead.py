"""What turnout-otel costs: CPU per call of the same router with and without its observer.

    python bench/otel_overhead.py [--quick] [--no-sdk | --sample RATIO | --sdk-calls]

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
`--sample 0.1`: the SDK traces a tenth of the calls (`ParentBased(TraceIdRatioBased)`),
as a busy service would; the metrics are still recorded for every call.

With an SDK, each cell also runs a third router whose observer is the SDK floor
(`Floor`): the very SDK calls turnout-otel made for that cell's call, captured
once and replayed with prebuilt arguments. The SDK's share of the cost, which
no plugin can save; the rest is turnout-otel's own. `--sdk-calls`: instead of the
cells, the µs of each of those SDK calls for a plain call, alone in a tight loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import httpx

import turnout
from contenders import API_KEY, MESSAGES, MODEL, _keep_trying, loopback_plugins
from harness import Placement, Upstream

TARGET = 1.25


def configure_sdk(sample: float | None = None) -> None:
    """The global providers, as an application sets them, exporting nowhere; `sample`:
    the share of calls traced (a parent-based trace-id ratio sampler), else all."""
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

    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    tracer_provider = TracerProvider(
        sampler=None if sample is None else ParentBased(TraceIdRatioBased(sample))
    )
    tracer_provider.add_span_processor(BatchSpanProcessor(Spans()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(Metrics(), export_interval_millis=1_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


class Floor:
    """The least the SDK can be asked for what turnout-otel records for a cell's call:
    the very same SDK calls (spans with their names, kinds, attributes and statuses;
    histogram measurements with their values and attributes), captured once from the
    observer itself (`capture`) and replayed with prebuilt arguments, with no logic of
    the plugin's in between. What it costs is the SDK's; the difference between the
    observer and the floor is what the plugin itself costs, and all it could save.
    (`turnout.router.attempts` is an asynchronous counter: the SDK's work for it is at
    collection, not per call, so the floor leaves it out.)"""

    def __init__(self, script: Script) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.set_span_in_context = trace.set_span_in_context
        self.tracer = trace.get_tracer("bench-floor")
        meter = metrics.get_meter("bench-floor")
        instruments: dict[str, Any] = {}

        def instrument(name: str) -> Any:
            if name not in instruments:  # as the observer made it: unit, description, buckets
                instruments[name] = meter.create_histogram(f"floor.{name}", **script.instruments[name])
            return instruments[name]

        self.measures = [
            [(instrument(name).record, value, attributes) for name, value, attributes in told]
            for told in script.measures
        ]
        error = Status(StatusCode.ERROR)
        self.call = (script.call[0], script.call[1], error if script.call[2] else None, SpanKind.INTERNAL)
        self.attempts = [
            (name, attributes, error if failed else None) for name, attributes, failed in script.attempts
        ]
        self.client = SpanKind.CLIENT

    def on_attempt(self, event: turnout.AttemptEvent) -> None:
        for record, value, attributes in self.measures[event.number - 1]:
            record(value, attributes)

    def on_call(self, event: turnout.CallEvent) -> None:
        now = time.time_ns()
        name, attributes, status, kind = self.call
        call = self.tracer.start_span(name, kind=kind, attributes=attributes, start_time=now - 1000)
        if status is not None:
            call.set_status(status)
        inside = self.set_span_in_context(call)
        for name, attributes, status in self.attempts if call.is_recording() else ():
            span = self.tracer.start_span(
                name, inside, self.client, attributes=attributes, start_time=now - 900
            )
            if status is not None:
                span.set_status(status)
            span.end(end_time=now)
        call.end(end_time=now)


@attrs.frozen
class Script:
    """What the observer asked of the SDK for one call: per attempt told, its histogram
    measurements (instrument, value, attributes); the call span and the attempt spans
    (name, attributes, failed); and how it made each histogram (keyword arguments)."""

    measures: list[list[tuple[str, float, dict[str, Any]]]]
    call: tuple[str, dict[str, Any], bool]
    attempts: list[tuple[str, dict[str, Any], bool]]
    instruments: dict[str, dict[str, Any]]


def capture(call: Callable[[list[Any]], Any]) -> Script:
    """Run one call (`call(observers)`) under an OpenTelemetryObserver of its own, with a
    tracer provider exporting to memory and a meter that writes down every measurement."""
    from opentelemetry.metrics import NoOpHistogram, NoOpMeter, NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from turnout_otel import OpenTelemetryObserver

    measures: list[list[tuple[str, float, dict[str, Any]]]] = []
    instruments: dict[str, dict[str, Any]] = {}

    class Histogram(NoOpHistogram):
        def __init__(self, name: str, *args: Any, **kw: Any) -> None:
            super().__init__(name, *args, **kw)
            self.instrument = name

        def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
            measures[-1].append((self.instrument, amount, dict(attributes or {})))

    class Meter(NoOpMeter):
        def create_histogram(self, name: str, *args: Any, **kw: Any) -> Any:
            assert not args, "the observer names its histograms' arguments"
            instruments[name] = kw
            return Histogram(name, **kw)

    class MeterProvider(NoOpMeterProvider):
        def get_meter(self, name: str, *args: Any, **kw: Any) -> Any:
            return Meter(name)

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=MeterProvider())

    class Marking:
        def on_attempt(self, event: turnout.AttemptEvent) -> None:
            measures.append([])
            observer.on_attempt(event)

        def on_call(self, event: turnout.CallEvent) -> None:
            observer.on_call(event)

    call([Marking()])
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)

    def told(span: Any) -> tuple[str, dict[str, Any], bool]:
        return span.name, dict(span.attributes or {}), span.status.status_code is StatusCode.ERROR

    (call_span,) = [span for span in spans if span.kind is SpanKind.INTERNAL]
    attempts = [told(span) for span in spans if span.kind is SpanKind.CLIENT]
    return Script(measures, told(call_span), attempts, instruments)


def sdk_calls(script: Script, count: int) -> None:
    """µs per SDK call of those the observer makes for one plain call, each with the very
    arguments it passed (`script`), and beside it the same call with no attributes: what
    the SDK costs per call, and how much of it the attribute sets are. In a tight loop
    (warm caches, so less than inside a router's call: the cells' floor column is that);
    the median of 9 runs of `count` (each below the span queue's 2,048, flushed between)."""
    from opentelemetry import trace
    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = trace.get_tracer("bench-sdk-calls")
    flush = getattr(trace.get_tracer_provider(), "force_flush", lambda: True)
    meter = get_meter("bench-sdk-calls")
    instruments = {
        name: meter.create_histogram(f"sdk.{name}", **made) for name, made in script.instruments.items()
    }
    now = time.time_ns()
    error = Status(StatusCode.ERROR)
    call_name, call_attributes, _ = script.call
    attempt_name, attempt_attributes, _ = script.attempts[0]
    parent = tracer.start_span(call_name, kind=SpanKind.INTERNAL, start_time=now)
    inside = trace.set_span_in_context(parent)

    def call_span(attributes: Any) -> Callable[[], None]:
        def run() -> None:
            span = tracer.start_span(call_name, kind=SpanKind.INTERNAL, attributes=attributes, start_time=now)
            span.end(end_time=now)

        return run

    def attempt_span(attributes: Any, failed: bool = False) -> Callable[[], None]:
        def run() -> None:
            span = tracer.start_span(attempt_name, inside, SpanKind.CLIENT, attributes, start_time=now)
            if failed:
                span.set_status(error)
            span.end(end_time=now)

        return run

    def record(name: str, value: float, attributes: Any) -> Callable[[], None]:
        histogram = instruments[name].record
        return lambda: histogram(value, attributes)

    def cost(run: Callable[[], None]) -> float:
        found = []
        for _ in range(9):
            flush()
            started = time.process_time()
            for _ in range(count):
                run()
            found.append((time.process_time() - started) / count * 1e6)
        return statistics.median(found)

    rows: list[tuple[str, Callable[[], None], Callable[[], None] | None]] = [
        (
            f"call span: `start_span` (INTERNAL, {len(call_attributes)} attributes) + `end`",
            call_span(call_attributes),
            call_span(None),
        ),
        ("`set_span_in_context(call span)`", lambda: _ignore(trace.set_span_in_context(parent)), None),
        (
            f"attempt span: `start_span` (CLIENT, child, {len(attempt_attributes)} attributes) + `end`",
            attempt_span(attempt_attributes),
            attempt_span(None),
        ),
        (
            "attempt span, failed: the same + `set_status(ERROR)`",
            attempt_span(attempt_attributes, True),
            attempt_span(None, True),
        ),
        *(
            (f"`{name}` `record` ({len(attributes)} attributes{_which(attributes)})",
             record(name, value, attributes), record(name, value, None))
            for name, value, attributes in script.measures[0]
        ),
    ]  # fmt: skip
    print("| SDK call (a plain call's, as the observer makes it) | µs | µs with no attributes |")
    print("|---|---|---|")
    total = bare_total = 0.0
    for label, run, bare in rows:
        run()
        spent = cost(run)
        bare_spent = cost(bare) if bare is not None else spent
        if "failed" not in label:
            total += spent
            bare_total += bare_spent
        print(f"| {label} | {spent:.1f} | {bare_spent:.1f} |" if bare else f"| {label} | {spent:.2f} | |")
    print(f"| **a plain call's, all told** | **{total:.1f}** | {bare_total:.1f} |")
    parent.end(end_time=now)


def _ignore(value: object) -> None:
    pass


def _which(attributes: dict[str, Any]) -> str:
    kind = attributes.get("gen_ai.token.type")
    return f", {kind}" if kind else ""


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


def sync_call(router: turnout.Router, stream: bool) -> Call:
    if not stream:
        return lambda: router.chat(MESSAGES).content

    def streamed() -> str:
        with router.stream(MESSAGES) as chunks:
            return "".join(chunk.delta for chunk in chunks)

    return streamed


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
    """One row: medians of each variant, the observer's ratio (its range over the rounds)
    and, with an SDK, the floor's: the same SDK work with no plugin code at all."""
    plain, otel = statistics.median(found["plain"]), statistics.median(found["otel"])
    ratios = [o / p for o, p in zip(found["otel"], found["plain"], strict=True)]
    ratio = statistics.median(ratios)
    verdict = "pass" if ratio <= TARGET else "MISS"
    spread = f"{min(ratios):.2f}x-{max(ratios):.2f}x"
    row = f"| {cell} | {plain:,.0f} | {otel:,.0f} | {otel - plain:+,.0f} | {ratio:.2f}x ({spread}) |"
    if "floor" in found:
        floor = statistics.median(found["floor"])
        floors = statistics.median(f / p for f, p in zip(found["floor"], found["plain"], strict=True))
        row += f" {floor - plain:+,.0f} ({floors:.2f}x) |"
    print(f"{row} {verdict} |", flush=True)
    return ratio <= TARGET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 9; quick 3)")
    parser.add_argument("--calls", type=int, help="calls per variant per round (default 400; quick 60)")
    parser.add_argument("--no-sdk", action="store_true", help="configure no SDK (the API's no-ops)")
    parser.add_argument(
        "--sample", type=float, metavar="RATIO", help="trace this share of calls (0.1: a tenth), not all"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the upstream and this process to CPUs"
    )
    parser.add_argument(
        "--sdk-calls",
        action="store_true",
        help="only the µs of each SDK call the observer makes for a plain call (a tight loop)",
    )
    args = parser.parse_args(argv)
    placement = Placement.choose(not args.no_pin)  # as bench/run.py: the upstream on a CPU of its own
    Placement.apply(0, placement.clients)
    rounds = args.rounds or (3 if args.quick else 9)
    count = args.calls or (60 if args.quick else 400)
    sdk = not args.no_sdk
    if sdk:
        configure_sdk(args.sample)
    from turnout_otel import OpenTelemetryObserver

    observer = OpenTelemetryObserver()
    plugins = loopback_plugins()
    # In one process: the cheapest call there is, so the largest share for the observer.
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json=json.loads(body())))

    def in_process(observers: list[Any]) -> turnout.Router:
        return turnout.Router(
            deployments("http://127.0.0.1:9", False), plugins=plugins, transport=mock, observers=observers
        )

    if args.sdk_calls:
        if not sdk or args.sample is not None:
            parser.error("--sdk-calls measures the SDK tracing every call: no --no-sdk, no --sample")
        print(f"SDK calls of turnout-otel, the SDK as the cells configure it; {placement.describe()}\n")
        sdk_calls(capture(lambda observers: once(in_process(observers), False)), args.calls or 1000)
        return
    setup = "SDK: BatchSpanProcessor + periodic metric reader, dropping" if sdk else "no SDK (API no-ops)"
    if sdk and args.sample is not None:
        setup += f", {args.sample:.0%} of calls traced"
    print(
        f"turnout-otel overhead, {setup}; "
        f"{rounds} rounds x {count} calls per variant (CPU µs per call); {placement.describe()}\n"
    )
    floor_head = " SDK floor (ratio) |" if sdk else ""
    print(
        f"| cell | without | with turnout-otel | difference | ratio (range) |{floor_head} target {TARGET}x |"
    )
    print("|---|---|---|---|---|" + ("---|" if sdk else "") + "---|")
    passed = []

    def sync_variants(make: Callable[[list[Any]], turnout.Router], stream: bool) -> dict[str, turnout.Router]:
        variants: dict[str, list[Any]] = {"plain": [], "otel": [observer]}
        if sdk:
            variants["floor"] = [Floor(capture(lambda observers: once(make(observers), stream)))]
        return {name: make(observers) for name, observers in variants.items()}

    routers = sync_variants(in_process, False)
    calls = {name: sync_call(router, False) for name, router in routers.items()}
    passed.append(
        report("in process (MockTransport), plain, sync", measure(calls, rounds, count * 4, run_sync))
    )

    upstream = Upstream(placement, max_seconds=1800)
    try:
        for label, stream, fallback in (
            ("loopback, plain, sync", False, False),
            ("loopback, streamed (10 chunks), sync", True, False),
            ("loopback, 503 -> fallback, sync", False, True),
        ):
            options = _keep_trying() if fallback else {}

            def over_loopback(
                observers: list[Any], fallback: bool = fallback, options: Any = options
            ) -> turnout.Router:
                return turnout.Router(
                    deployments(upstream.base_url, fallback), plugins=plugins, observers=observers, **options
                )

            routers = sync_variants(over_loopback, stream)
            calls = {name: sync_call(router, stream) for name, router in routers.items()}
            passed.append(report(label, measure(calls, rounds, count, run_sync)))
            for router in routers.values():
                router.close()
        found = async_cell(upstream.base_url, plugins, observer, sdk, rounds, count)
        passed.append(report("loopback, plain, async", found))
    finally:
        upstream.stop()
    print(f"\n{sum(passed)} of {len(passed)} cells within {TARGET}x")
    if sdk:
        print(
            "SDK floor: the same SDK calls as the observer's for that cell's call (spans, attributes, "
            "measurements), prebuilt and replayed inline (class Floor): the SDK's share, which no "
            "plugin can save."
        )


def once(router: turnout.Router, stream: bool) -> None:
    try:
        sync_call(router, stream)()
    finally:
        router.close()


def async_cell(
    base_url: str, plugins: Any, observer: Any, sdk: bool, rounds: int, count: int
) -> dict[str, list[float]]:
    def make(observers: list[Any]) -> turnout.AsyncRouter:
        return turnout.AsyncRouter(deployments(base_url, False), plugins=plugins, observers=observers)

    async def one(observers: list[Any]) -> None:
        router = make(observers)
        try:
            await router.chat(MESSAGES)
        finally:
            await router.aclose()

    variants: dict[str, list[Any]] = {"plain": [], "otel": [observer]}
    if sdk:
        variants["floor"] = [Floor(capture(lambda observers: asyncio.run(one(observers))))]

    async def cell() -> dict[str, list[float]]:
        routers = {name: make(observers) for name, observers in variants.items()}
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
