"""The observer that turns a router's events into OpenTelemetry spans and metrics.

Per call an INTERNAL span; per attempt a CLIENT span, its child, with the
GenAI semantic conventions' attributes; the two GenAI client metrics plus
turnout's attempt and breaker counters. It uses the global tracer and meter
providers unless given others, and never sets them: with no SDK configured,
everything it makes is a no-op.

Why the spans are made when the call ends: a router tells an attempt once its
decision is made, and the call once it is over, never when either begins. So
each attempt is kept (its event and when it came) until the call's event, and
then the call span is started at `now - elapsed` and the attempt spans inside
it at their own `end - elapsed`, with exact timestamps. Metrics need no call:
they are recorded as each attempt is told.

It is called synchronously on the caller's thread (on the event loop for
`AsyncRouter`), so it does little: attribute dicts that depend only on the
deployment are made once and shared (never mutated: the SDK may keep them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

import turnout

from . import names as n
from .content import capture_from_env, input_messages, output_messages

__all__ = ["OpenTelemetryObserver"]

SCOPE: Final = "turnout_otel"
log = logging.getLogger("turnout.otel")
_ERROR: Final = Status(StatusCode.ERROR)
_NS: Final = 1_000_000_000
_CACHE_MAX: Final = 1024  # attribute dicts kept per kind; the keys are bounded by configuration
_METRIC: Final = {metric.name: metric for metric in n.METRICS}


def error_type(error: BaseException | None) -> str | None:
    """`error.type`: a ProviderError's kind; another TurnoutError's class name."""
    if error is None:
        return None
    return error.kind.value if isinstance(error, turnout.ProviderError) else type(error).__name__


class OpenTelemetryObserver:
    """Spans and metrics for every call of the routers it observes (see the module's
    docstring). `capture_content`: record messages and answers on the attempt spans
    (default: the `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` variable, else
    off). `tracer_provider` / `meter_provider`: other than the global ones."""

    def __init__(
        self,
        *,
        capture_content: bool | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        max_pending: int = 10_000,
    ) -> None:
        from . import __version__

        self.capture_content = capture_from_env() if capture_content is None else capture_content
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._duration = meter.create_histogram(
            n.OPERATION_DURATION,
            unit="s",
            description=_METRIC[n.OPERATION_DURATION].description,
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            n.TOKEN_USAGE,
            unit="{token}",
            description=_METRIC[n.TOKEN_USAGE].description,
            explicit_bucket_boundaries_advisory=n.TOKEN_BUCKETS,
        )
        # Attempts are counted here and reported when the SDK collects (an asynchronous
        # counter): an attempt costs a dict update instead of one more SDK measurement.
        self._attempts = tally_for(meter_provider)
        meter.create_observable_counter(
            n.ROUTER_ATTEMPTS,
            [self._attempts.observe],
            unit="{attempt}",
            description=_METRIC[n.ROUTER_ATTEMPTS].description,
        )
        self._transitions = meter.create_counter(
            n.BREAKER_TRANSITIONS,
            unit="{transition}",
            description=_METRIC[n.BREAKER_TRANSITIONS].description,
        )
        # Attempts told, by call, until the call's end: (event, when it was told, ns).
        self._pending: dict[str, list[tuple[turnout.AttemptEvent, int]]] = {}
        self._max_pending = max_pending
        self._spans: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._measures: dict[tuple[Any, ...], dict[str, Any]] = {}

    # -- the observer protocol ---------------------------------------------------------

    def on_attempt(self, event: turnout.AttemptEvent) -> None:
        pending = self._pending
        pending.setdefault(event.call_id, []).append((event, time.time_ns()))
        if len(pending) > self._max_pending:
            self._forget_oldest()
        kind = None if event.error is None else event.error.kind.value
        self._attempts.add((event.decision, event.deployment, event.provider, kind))
        if event.decision == "abandoned":  # cut short, not ended: counted, never timed
            return
        address, port = _server(event)
        response = _response(event)
        model = None if response is None else response.model
        self._duration.record(
            event.elapsed,
            self._measure((n.OPERATION_DURATION, event.provider, event.model, address, port, model, kind)),
        )
        usage = event.usage
        if usage is not None:
            for tokens, which in ((usage.prompt_tokens, "input"), (usage.completion_tokens, "output")):
                if tokens is not None:
                    key = (n.TOKEN_USAGE, event.provider, event.model, address, port, model, which)
                    self._tokens.record(tokens, self._measure(key))

    def on_call(self, event: turnout.CallEvent) -> None:
        told = self._pending.pop(event.call_id, ())
        end = time.time_ns()
        start = end - int(event.elapsed * _NS)
        attributes: dict[str, Any] = {
            n.CALL_ID: event.call_id,
            n.ROUTE: event.route,
            n.ATTEMPTS: len(event.attempts),
        }
        if event.deployment is not None:
            attributes[n.DEPLOYMENT] = event.deployment
        failed = error_type(event.error)
        if failed is not None:
            attributes[n.ERROR_TYPE] = failed
        call = self._tracer.start_span(
            n.CALL_SPAN.format(route=event.route),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start,
        )
        if failed is not None:
            call.set_status(_ERROR)
        # A call span not recorded (no SDK, or sampled out): its attempts' would not be either.
        if told and call.is_recording():
            inside = trace.set_span_in_context(call)
            request = _request(event)
            shared = self._shared(event, request)
            first_chunk = (
                None if event.time_to_first_chunk is None else start + event.time_to_first_chunk * _NS
            )
            last = told[-1][0]
            for attempt, at in told:
                began = at - int(attempt.elapsed * _NS)
                span_attributes = self._attempt_attributes(attempt, shared)
                if first_chunk is not None and attempt is last:
                    span_attributes[n.TIME_TO_FIRST_CHUNK] = max(first_chunk - began, 0) / _NS
                span = self._tracer.start_span(
                    n.ATTEMPT_SPAN.format(model=attempt.model),
                    context=inside,
                    kind=SpanKind.CLIENT,
                    attributes=span_attributes,
                    start_time=began,
                )
                if attempt.error is not None:
                    span.set_status(_ERROR)
                span.end(end_time=at)
        call.end(end_time=end)

    def on_breaker(self, event: turnout.BreakerEvent) -> None:
        key = (n.BREAKER_TRANSITIONS, event.deployment, event.provider, event.old, event.new)
        self._transitions.add(1, self._measure(key))

    # -- attributes -----------------------------------------------------------------------

    def _attempt_attributes(self, attempt: turnout.AttemptEvent, shared: Mapping[str, Any]) -> dict[str, Any]:
        key = (attempt.deployment, attempt.provider, attempt.model, *_server(attempt))
        base = self._spans.get(key)
        if base is None:
            base = self._spans[key] = self._span_base(*key)
        attributes = {**base, **shared, n.ATTEMPT: attempt.number, n.DECISION: attempt.decision}
        if attempt.reason:
            attributes[n.REASON] = attempt.reason
        if attempt.waited > 0:
            attributes[n.WAITED] = attempt.waited
        if attempt.error is not None:
            attributes[n.ERROR_TYPE] = attempt.error.kind.value
        usage = attempt.usage
        if usage is not None:
            if usage.prompt_tokens is not None:
                attributes[n.INPUT_TOKENS] = usage.prompt_tokens
            if usage.completion_tokens is not None:
                attributes[n.OUTPUT_TOKENS] = usage.completion_tokens
        response = _response(attempt)
        if response is not None:
            _answer_attributes(attributes, response, self.capture_content)
        return attributes

    def _span_base(
        self, deployment: str, provider: str, model: str, address: str | None, port: int | None
    ) -> dict[str, Any]:
        if len(self._spans) >= _CACHE_MAX:
            self._spans.clear()
        base = {
            n.OPERATION_NAME: n.CHAT,
            n.PROVIDER_NAME: provider,
            n.REQUEST_MODEL: model,
            n.DEPLOYMENT: deployment,
        }
        return _with_server(base, address, port)

    def _shared(self, event: turnout.CallEvent, request: turnout.ChatRequest | None) -> Mapping[str, Any]:
        """What every attempt span of a call carries: the stream flag, the request's
        parameters, and (when captured) its messages."""
        shared: dict[str, Any] = {n.REQUEST_STREAM: True} if event.stream else {}
        if request is not None:
            for param, value in request.params.items():
                found = n.REQUEST_PARAMS.get(param)
                if found is not None and _fits(value, found[1]):
                    shared[found[0]] = [value] if isinstance(value, str) else value
            if self.capture_content:
                shared[n.INPUT_MESSAGES] = input_messages(request.messages)
        return shared

    def _measure(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """A metric's attributes, made once per distinct key (the instrument's name first)."""
        found = self._measures.get(key)
        if found is None:
            if len(self._measures) >= _CACHE_MAX:
                self._measures.clear()
            found = self._measures[key] = _MEASURES[key[0]](*key[1:])
        return found

    def _forget_oldest(self) -> None:
        """A call whose end was never told (it cannot happen through a router; a bound
        all the same): its attempts are dropped, and that is said."""
        try:
            oldest = next(iter(self._pending))
        except (StopIteration, RuntimeError):  # emptied, or changed by another thread
            return
        if self._pending.pop(oldest, None) is not None:
            log.warning("turnout-otel: call %s never ended; its attempt spans are dropped", oldest)


def _answer_attributes(attributes: dict[str, Any], response: turnout.ChatResponse, content: bool) -> None:
    if response.model:
        attributes[n.RESPONSE_MODEL] = response.model
    raw_id = response.raw.get("id") if isinstance(response.raw, Mapping) else None
    response_id = raw_id if isinstance(raw_id, str) else response.request_id
    if response_id:
        attributes[n.RESPONSE_ID] = response_id
    if response.finish_reason is not None:
        attributes[n.FINISH_REASONS] = [response.finish_reason]
    if content:
        attributes[n.OUTPUT_MESSAGES] = output_messages(response)


def _fits(value: Any, kinds: type | tuple[type, ...]) -> bool:
    """A parameter worth recording as its attribute: of its type (a bool is no number),
    a stop list of strings only."""
    if isinstance(value, bool) or not isinstance(value, kinds):
        return False
    return all(isinstance(item, str) for item in value) if isinstance(value, list | tuple) else True


def _with_server(attributes: dict[str, Any], address: str | None, port: int | None) -> dict[str, Any]:
    if address is not None:
        attributes[n.SERVER_ADDRESS] = address
        if port is not None:
            attributes[n.SERVER_PORT] = port
    return attributes


def _attempts_measure(decision: str, deployment: str, provider: str, kind: str | None) -> dict[str, Any]:
    found = {n.DECISION: decision, n.DEPLOYMENT: deployment, n.PROVIDER_NAME: provider}
    if kind is not None:
        found[n.ERROR_TYPE] = kind
    return found


def _duration_measure(
    provider: str,
    model: str,
    address: str | None,
    port: int | None,
    response_model: str | None,
    kind: str | None,
) -> dict[str, Any]:
    found = _with_server(
        {n.OPERATION_NAME: n.CHAT, n.PROVIDER_NAME: provider, n.REQUEST_MODEL: model}, address, port
    )
    if response_model:
        found[n.RESPONSE_MODEL] = response_model
    if kind is not None:
        found[n.ERROR_TYPE] = kind
    return found


def _tokens_measure(
    provider: str, model: str, address: str | None, port: int | None, response_model: str | None, which: str
) -> dict[str, Any]:
    found = _duration_measure(provider, model, address, port, response_model, None)
    found[n.TOKEN_TYPE] = which
    return found


def _breaker_measure(deployment: str, provider: str, old: str, new: str) -> dict[str, Any]:
    return {n.DEPLOYMENT: deployment, n.PROVIDER_NAME: provider, n.BREAKER_FROM: old, n.BREAKER_TO: new}


_MEASURES: Final[Mapping[str, Any]] = {
    n.OPERATION_DURATION: _duration_measure,
    n.TOKEN_USAGE: _tokens_measure,
    n.BREAKER_TRANSITIONS: _breaker_measure,
}


class Tally:
    """Attempts counted by their attributes, reported to `turnout.router.attempts` when
    the SDK collects. One per meter provider, shared by every observer that uses it: the
    SDK keeps the first callback of an instrument registered twice, so a second
    observer's counts must reach it through the same tally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str | None], list[Any]] = {}

    def add(self, key: tuple[str, str, str, str | None]) -> None:
        with self._lock:
            found = self._counts.get(key)
            if found is None:
                self._counts[key] = [_attempts_measure(*key), 1]
            else:
                found[1] += 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(count, attributes) for attributes, count in self._counts.values()]


_TALLIES: dict[object, Tally] = {}  # by meter provider; None: the global one
_TALLIES_LOCK = threading.Lock()


def tally_for(meter_provider: metrics.MeterProvider | None) -> Tally:
    with _TALLIES_LOCK:
        found = _TALLIES.get(meter_provider)
        if found is None:
            found = _TALLIES[meter_provider] = Tally()
        return found


# -- what the events do not carry yet ----------------------------------------------------
# Read by name so they take effect the moment the core's events carry them:
# AttemptEvent.response (the answer of a "done" attempt), AttemptEvent.server_address
# and .server_port (the host and port the attempt was sent to), CallEvent.request.


def _response(event: turnout.AttemptEvent) -> turnout.ChatResponse | None:
    found = getattr(event, "response", None)
    return found if isinstance(found, turnout.ChatResponse) else None


def _server(event: turnout.AttemptEvent) -> tuple[str | None, int | None]:
    address = getattr(event, "server_address", None)
    port = getattr(event, "server_port", None)
    return (address if isinstance(address, str) and address else None), (
        port if isinstance(port, int) else None
    )


def _request(event: turnout.CallEvent) -> turnout.ChatRequest | None:
    found = getattr(event, "request", None)
    return found if isinstance(found, turnout.ChatRequest) else None
