"""The spans: one INTERNAL span per call, a CLIENT span per attempt as its child, with the
GenAI semantic conventions' attributes and turnout's decision record; every test runs
with both routers. The observer is passed in code (as the plugin hook will pass it)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

import turnout
from tests.core.acme import AcmeEmulator
from tests.core.calls import HI, emulated, per_host
from tests.core.conftest import deployment
from turnout.emulation import Fault
from turnout.testing.server import EmulatorServer
from turnout_otel import OpenTelemetryObserver

from .conftest import ONE_RETRY, RETRY_THEN_FALLBACK, Telemetry, retried_then_fell_back

ANSWER = "echo: hello there world"


def by_kind(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The call's span and its attempts' spans, in the order they began."""
    [call] = [s for s in spans if s.kind is SpanKind.INTERNAL]
    attempts = sorted((s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    return call, attempts


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in (span.attributes or {}).items()}


def genai(deployment: str) -> dict[str, Any]:
    """What every attempt span on an acme deployment says."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "acme",
        "gen_ai.request.model": f"model-{deployment}",
        "turnout.deployment": deployment,
        "server.address": f"{deployment}.test",  # host and port only: never the path
        "server.port": 443,
    }


async def test_a_retry_and_a_fallback_are_attempt_spans_under_the_call_span(
    calls: Any, telemetry: Telemetry
) -> None:
    response = await retried_then_fell_back(calls)
    assert response.content == ANSWER
    call, attempts = by_kind(telemetry.spans())
    assert call.name == "turnout.chat default"
    assert call.parent is None
    assert call.status.status_code is StatusCode.UNSET
    assert attributes(call) == {
        "turnout.call_id": attributes(call)["turnout.call_id"],
        "turnout.route": "default",
        "turnout.attempts": 3,
        "turnout.deployment": "b",
    }
    assert str(attributes(call)["turnout.call_id"])
    assert [s.name for s in attempts] == ["chat model-a", "chat model-a", "chat model-b"]
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
        assert span.context.trace_id == call.context.trace_id
        assert (
            (call.start_time or 0) <= (span.start_time or -1) <= (span.end_time or -1) <= (call.end_time or 0)
        )
    first, second, third = attempts
    assert attributes(first) == {
        **genai("a"),
        "turnout.attempt": 1,
        "turnout.decision": "retry",
        "turnout.reason": "429, retry after 0.0 s",
        "error.type": "rate_limited",
    }
    assert attributes(second) == {
        **genai("a"),
        "turnout.attempt": 2,
        "turnout.decision": "fallback",
        "turnout.reason": "1 retries used",
        "turnout.waited": pytest.approx(0.001),
        "error.type": "unavailable",
    }
    assert attributes(third) == {
        **genai("b"),
        "turnout.attempt": 3,
        "turnout.decision": "done",
        "gen_ai.usage.input_tokens": response.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": response.usage.completion_tokens,
        # From the answer the done attempt carries.
        "gen_ai.response.model": "model-b",
        "gen_ai.response.id": response.raw["id"],
        "gen_ai.response.finish_reasons": ["stop"],
    }
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    # The retry waited between the first two: their spans do not overlap.
    assert (first.end_time or 0) <= (second.start_time or 0)


async def test_a_failed_call_has_status_error_and_the_kind(calls: Any, telemetry: Telemetry) -> None:
    script = per_host({"a": [Fault(error="invalid_field")]})
    error = await calls.chat(
        [deployment("a"), deployment("b")], emulated(script), observers=[OpenTelemetryObserver()]
    )
    assert isinstance(error, turnout.ValidationError)
    call, [attempt] = by_kind(telemetry.spans())
    assert call.status.status_code is StatusCode.ERROR
    assert attributes(call)["error.type"] == "validation"
    assert "turnout.deployment" not in attributes(call)
    assert attempt.status.status_code is StatusCode.ERROR
    assert attributes(attempt)["error.type"] == "validation"
    assert attributes(attempt)["turnout.decision"] == "give_up"
    assert attributes(attempt)["turnout.reason"] == "not retryable"


def test_a_call_that_never_reached_a_deployment_is_one_span_with_the_error_class(
    plugins: turnout.Plugins, telemetry: Telemetry
) -> None:
    breaker = turnout.BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    with turnout.Router(
        [deployment("a")],
        plugins=plugins,
        transport=emulated(per_host({"a": [Fault(error="overloaded")]})),
        retry_policy=turnout.RetryPolicy(max_retries=0),
        breaker=breaker,
        deadline=1.0,
        observers=[OpenTelemetryObserver()],
    ) as router:
        with pytest.raises(turnout.ServiceUnavailableError):
            router.chat(HI)  # opens the breaker
        telemetry.reset()
        with pytest.raises(turnout.NoHealthyDeploymentError):
            router.chat(HI)
    [call] = telemetry.spans()
    assert call.kind is SpanKind.INTERNAL
    assert call.status.status_code is StatusCode.ERROR
    assert attributes(call)["error.type"] == "NoHealthyDeploymentError"
    assert attributes(call)["turnout.attempts"] == 0


async def test_the_call_span_is_a_child_of_the_applications_span(calls: Any, telemetry: Telemetry) -> None:
    tracer = trace.get_tracer("the-application")
    with tracer.start_as_current_span("handle request") as outer:
        await calls.chat([deployment("a")], emulated(), observers=[OpenTelemetryObserver()])
    call, [attempt] = by_kind([s for s in telemetry.spans() if s.name != "handle request"])
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id
    assert attempt.context.trace_id == outer.get_span_context().trace_id


async def test_a_stream_says_so_and_when_its_first_chunk_came(calls: Any, telemetry: Telemetry) -> None:
    streamed = await calls.stream([deployment("a")], emulated(), observers=[OpenTelemetryObserver()])
    assert streamed.text == ANSWER
    _, [attempt] = by_kind(telemetry.spans())
    found = attributes(attempt)
    assert found["gen_ai.request.stream"] is True
    assert found["turnout.decision"] == "done"
    duration = ((attempt.end_time or 0) - (attempt.start_time or 0)) / 1e9
    assert 0 <= found["gen_ai.response.time_to_first_chunk"] <= duration


async def test_a_plain_call_has_no_stream_attributes(calls: Any, telemetry: Telemetry) -> None:
    await calls.chat([deployment("a")], emulated(), observers=[OpenTelemetryObserver()])
    _, [attempt] = by_kind(telemetry.spans())
    assert "gen_ai.request.stream" not in attributes(attempt)
    assert "gen_ai.response.time_to_first_chunk" not in attributes(attempt)


async def test_a_stream_closed_early_is_an_abandoned_attempt_not_an_error_counted_not_timed(
    calls: Any, telemetry: Telemetry
) -> None:
    router = calls._build([deployment("a")], emulated(), {"observers": [OpenTelemetryObserver()]})
    if calls.mode == "sync":
        with router, router.stream(HI) as stream:
            next(stream)
    else:
        async with router, router.stream(HI) as astream:
            await anext(astream)
    call, [attempt] = by_kind(telemetry.spans())
    assert attributes(attempt)["turnout.decision"] == "abandoned"
    assert attributes(attempt)["turnout.reason"] == "the caller closed the stream"
    assert "error.type" not in attributes(attempt)
    assert attempt.status.status_code is StatusCode.UNSET
    assert call.status.status_code is StatusCode.UNSET
    assert "gen_ai.response.time_to_first_chunk" in attributes(attempt)
    # It did not end on its own: counted, but not timed (nor its tokens).
    found = telemetry.metrics()
    assert "gen_ai.client.operation.duration" not in found
    assert "gen_ai.client.token.usage" not in found
    counted = telemetry.points_of(found["turnout.router.attempts"])
    assert [attrs["turnout.decision"] for attrs, _ in counted] == ["abandoned"]


def test_a_hedged_call_has_both_legs_under_its_span(plugins: turnout.Plugins, telemetry: Telemetry) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            await asyncio.sleep(30)
        body = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=body)

    async def main() -> None:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            {"r": {"deployments": ["a", "b"], "hedge_after": 0.02}},
            plugins=plugins,
            transport=httpx.MockTransport(handler),
            observers=[OpenTelemetryObserver()],
        ) as router:
            await router.chat(HI)

    asyncio.run(main())
    call, attempts = by_kind(telemetry.spans())
    assert call.name == "turnout.chat r"
    assert [(attributes(s)["turnout.deployment"], attributes(s)["turnout.decision"]) for s in attempts] == [
        ("a", "abandoned"),
        ("b", "done"),
    ]
    assert attributes(attempts[0])["turnout.reason"] == "lost the race"
    assert attributes(attempts[1])["turnout.waited"] == pytest.approx(0.02)
    assert {s.parent.span_id for s in attempts if s.parent} == {call.context.span_id}


async def test_no_message_content_and_no_key_in_any_span_by_default(
    calls: Any, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    script = per_host({"a": [Fault(error="overloaded")]})
    await calls.chat(
        [deployment("a"), deployment("b")], emulated(script), observers=[OpenTelemetryObserver()]
    )
    await calls.stream([deployment("a")], emulated(), observers=[OpenTelemetryObserver()])
    spans = telemetry.spans()
    assert len(spans) == 5
    text = repr([(s.name, s.attributes, s.events, s.status.description) for s in spans])
    for secret in ("hello there world", "echo:", "sk-acme-a-0123456789", "sk-acme-b-0123456789"):
        assert secret not in text
    assert not any(
        name.startswith(("gen_ai.input", "gen_ai.output")) for s in spans for name in s.attributes or {}
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_over_real_http_a_fallback_is_two_attempt_spans(
    mode: str, plugins: turnout.Plugins, telemetry: Telemetry
) -> None:
    """The routers' own transports over loopback sockets: the first server answers 503."""
    failing, answering = EmulatorServer(AcmeEmulator()).start(), EmulatorServer(AcmeEmulator()).start()
    failing.fault = Fault(error="overloaded")
    try:
        deployments = [
            deployment("a", base_url=failing.base_url),
            deployment("b", base_url=answering.base_url),
        ]
        kw = {"plugins": plugins, "retry_policy": turnout.RetryPolicy(max_retries=0)}
        observers = [OpenTelemetryObserver()]
        if mode == "sync":
            with turnout.Router(deployments, observers=observers, **kw) as router:
                router.chat(HI)
        else:

            async def main() -> None:
                async with turnout.AsyncRouter(deployments, observers=observers, **kw) as router:
                    await router.chat(HI)

            asyncio.run(main())
    finally:
        failing.close()
        answering.close()
    call, attempts = by_kind(telemetry.spans())
    assert [(s.name, attributes(s)["turnout.decision"], s.status.status_code) for s in attempts] == [
        ("chat model-a", "fallback", StatusCode.ERROR),
        ("chat model-b", "done", StatusCode.UNSET),
    ]
    assert attributes(attempts[0])["error.type"] == "unavailable"
    assert {s.parent.span_id for s in attempts if s.parent} == {call.context.span_id}


class Dropping(Sampler):
    """Samples nothing, and writes down which spans it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any
    ) -> SamplingResult:
        self.asked.append(name)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "Dropping"


async def test_a_call_sampled_out_makes_no_attempt_spans_and_is_still_measured(
    calls: Any, telemetry: Telemetry
) -> None:
    sampler = Dropping()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider)
    response = await calls.chat(
        [deployment("a"), deployment("b")],
        emulated(per_host(RETRY_THEN_FALLBACK)),
        retry_policy=ONE_RETRY,
        observers=[observer],
    )
    assert response.content == ANSWER
    assert sampler.asked == ["turnout.chat default"]  # the attempts' spans are never begun
    assert exporter.get_finished_spans() == ()
    durations = telemetry.points("gen_ai.client.operation.duration")
    assert sorted((a["gen_ai.request.model"], a.get("error.type"), v[0]) for a, v in durations) == [
        ("model-a", "rate_limited", 1),
        ("model-a", "unavailable", 1),
        ("model-b", None, 1),
    ]
