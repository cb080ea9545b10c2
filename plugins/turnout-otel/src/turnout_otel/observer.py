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
`AsyncRouter`), so it does little: what depends only on where an attempt went
(a `Site`: the span's name, its attributes, the measurements' attribute sets)
is made once and shared (never mutated: the SDK may keep them). Nearly all the
cost left is the SDK's own work per span and per measurement (it copies,
cleans and, for metrics, hashes every attribute each time, whatever mapping it
is given): `bench/otel_overhead.py` measures that floor beside the observer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

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
_CACHE_MAX: Final = 1024  # sites, route names, breaker attributes: their keys are bounded by configuration
_SITE_MAX: Final = 64  # a site's attribute sets by the model that answered and the error's kind
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
        # Attempts told, by call, until the call's end: (event, its site, when it was told, ns).
        self._pending: dict[str, list[tuple[turnout.AttemptEvent, Site, int]]] = {}
        self._max_pending = max_pending
        self._sites = Bounded[tuple[Any, ...], Site]()
        self._call_names = Bounded[str, str]()
        self._breakers = Bounded[tuple[str, ...], dict[str, Any]]()

    # -- the observer protocol ---------------------------------------------------------

    def on_attempt(self, event: turnout.AttemptEvent) -> None:
        key = (event.deployment, event.provider, event.model, event.server_address, event.server_port)
        site = self._sites.get(key) or self._sites.put(key, Site(*key))
        pending = self._pending
        told = pending.get(event.call_id)
        if told is None:
            told = pending[event.call_id] = []
            if len(pending) > self._max_pending:
                self._forget_oldest()
        told.append((event, site, time.time_ns()))
        kind = None if event.error is None else event.error.kind.value
        self._attempts.add((event.decision, event.deployment, event.provider, kind))
        if event.decision == "abandoned":  # cut short, not ended: counted, never timed
            return
        response = event.response
        model = (response.model or None) if response is not None else None
        measures = site.measures.get((model, kind)) or site.measure(model, kind)
        self._duration.record(event.elapsed, measures[0])
        usage = event.usage
        if usage is not None:
            if usage.prompt_tokens is not None:
                self._tokens.record(usage.prompt_tokens, measures[1])
            if usage.completion_tokens is not None:
                self._tokens.record(usage.completion_tokens, measures[2])

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
        failed = None if event.error is None else error_type(event.error)
        if failed is not None:
            attributes[n.ERROR_TYPE] = failed
        route = event.route
        name = self._call_names.get(route) or self._call_names.put(route, n.CALL_SPAN.format(route=route))
        call = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes, start_time=start)
        if failed is not None:
            call.set_status(_ERROR)
        # A call span not recorded (no SDK, or sampled out): its attempts' would not be either.
        if told and call.is_recording():
            inside = trace.set_span_in_context(call)
            shared = self._shared(event)
            first_chunk = (
                None if event.time_to_first_chunk is None else start + event.time_to_first_chunk * _NS
            )
            last = told[-1][0]
            for attempt, site, at in told:
                # When it was sent, as the router says (a hedged leg is told after its race).
                if attempt.started is not None:
                    began = int(attempt.started * _NS)
                    at = began + int(attempt.elapsed * _NS)
                else:
                    began = at - int(attempt.elapsed * _NS)
                span_attributes = self._attempt_attributes(attempt, site, shared)
                if first_chunk is not None and attempt is last:
                    span_attributes[n.TIME_TO_FIRST_CHUNK] = max(first_chunk - began, 0) / _NS
                span = self._tracer.start_span(
                    site.name, inside, SpanKind.CLIENT, span_attributes, start_time=began
                )
                if attempt.error is not None:
                    span.set_status(_ERROR)
                span.end(end_time=at)
        call.end(end_time=end)

    def on_breaker(self, event: turnout.BreakerEvent) -> None:
        key = (event.deployment, event.provider, event.old, event.new)
        attributes = self._breakers.get(key) or self._breakers.put(key, _breaker_measure(*key))
        self._transitions.add(1, attributes)

    # -- attributes -----------------------------------------------------------------------

    def _attempt_attributes(
        self, attempt: turnout.AttemptEvent, site: Site, shared: Mapping[str, Any]
    ) -> dict[str, Any]:
        attributes = {**site.span, **shared, n.ATTEMPT: attempt.number, n.DECISION: attempt.decision}
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
        response = attempt.response
        if response is not None:
            _answer_attributes(attributes, response, self.capture_content)
        return attributes

    def _shared(self, event: turnout.CallEvent) -> Mapping[str, Any]:
        """What every attempt span of a call carries: the stream flag, the request's
        parameters, and (when captured) its messages."""
        shared: dict[str, Any] = {n.REQUEST_STREAM: True} if event.stream else {}
        request = event.request
        if request is not None:
            for param, value in request.params.items():
                found = n.REQUEST_PARAMS.get(param)
                if found is not None and _fits(value, found[1]):
                    shared[found[0]] = [value] if isinstance(value, str) else value
            if self.capture_content:
                shared[n.INPUT_MESSAGES] = input_messages(request.messages)
        return shared

    def _forget_oldest(self) -> None:
        """A call whose end was never told (it cannot happen through a router; a bound
        all the same): its attempts are dropped, and that is said."""
        try:
            oldest = next(iter(self._pending))
        except (StopIteration, RuntimeError):  # emptied, or changed by another thread
            return
        if self._pending.pop(oldest, None) is not None:
            log.warning("turnout-otel: call %s never ended; its attempt spans are dropped", oldest)


class Site:
    """Where attempts went: one deployment of one provider, its model, its server. What
    their spans and measurements repeat is made here once: the attempt span's name, the
    span's attributes that depend on the site alone, and the measurements' attribute sets
    by what else they hold (the model that answered, the error's kind). The SDK copies
    and cleans what it is given, so passing the same mapping again costs it no more; it
    saves the observer building it. Never mutated once made (the SDK may keep them)."""

    __slots__ = ("_operation", "measures", "name", "span")

    def __init__(
        self, deployment: str, provider: str, model: str, address: str | None, port: int | None
    ) -> None:
        address = address or None
        self.name = n.ATTEMPT_SPAN.format(model=model)
        self._operation = _with_server(
            {n.OPERATION_NAME: n.CHAT, n.PROVIDER_NAME: provider, n.REQUEST_MODEL: model}, address, port
        )
        self.span = _with_server(
            {
                n.OPERATION_NAME: n.CHAT,
                n.PROVIDER_NAME: provider,
                n.REQUEST_MODEL: model,
                n.DEPLOYMENT: deployment,
            },
            address,
            port,
        )
        # The measurements' attribute sets by (the model that answered, the error's kind),
        # looked up once per attempt. Keyed by what the gateway answers: bounded, so a
        # hostile one cannot grow it.
        self.measures = Bounded[tuple[str | None, str | None], Measures](_SITE_MAX)

    def measure(self, response_model: str | None, kind: str | None) -> Measures:
        """`gen_ai.client.operation.duration`'s attributes, and
        `gen_ai.client.token.usage`'s (input, output), made and kept."""
        answered = dict(self._operation)
        if response_model:
            answered[n.RESPONSE_MODEL] = response_model
        duration = answered if kind is None else {**answered, n.ERROR_TYPE: kind}
        tokens = ({**answered, n.TOKEN_TYPE: "input"}, {**answered, n.TOKEN_TYPE: "output"})
        return self.measures.put((response_model, kind), (duration, *tokens))


# A site's measurement attribute sets: operation duration; token usage, input and output.
Measures = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Bounded(dict[_K, _V]):
    """A cache that forgets everything when full: its keys come from configuration
    (bounded) or from what gateways answer (not), so it must not grow without end.
    A dict, so that a hit (every event looks up several) is the dict's own `get`;
    only `put` is Python."""

    __slots__ = ("_most",)

    def __init__(self, most: int = _CACHE_MAX) -> None:
        super().__init__()
        self._most = most

    def put(self, key: _K, value: _V) -> _V:
        if len(self) >= self._most:
            self.clear()
        self[key] = value
        return value


def _answer_attributes(attributes: dict[str, Any], response: turnout.ChatResponse, content: bool) -> None:
    if response.model:
        attributes[n.RESPONSE_MODEL] = response.model
    raw = response.raw  # a dict as parsed (the ABC check only for what a provider made otherwise)
    raw_id = raw.get("id") if type(raw) is dict or isinstance(raw, Mapping) else None
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


def _breaker_measure(deployment: str, provider: str, old: str, new: str) -> dict[str, Any]:
    return {n.DEPLOYMENT: deployment, n.PROVIDER_NAME: provider, n.BREAKER_FROM: old, n.BREAKER_TO: new}


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
