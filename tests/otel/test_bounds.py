"""What the observer keeps between events stays bounded, and its caches never change
what it records: calls whose end never comes are dropped (and said so), and a gateway
that answers with a new model name every time still gets exact measurements."""

from __future__ import annotations

import logging

import pytest

import turnout
from turnout_otel import OpenTelemetryObserver
from turnout_otel.observer import Bounded

from .conftest import Telemetry


def attempt(call_id: str, *, answered_by: str | None = None) -> turnout.AttemptEvent:
    response = None if answered_by is None else turnout.ChatResponse("hi", "stop", model=answered_by)
    return turnout.AttemptEvent(
        call_id, "default", "a", "acme", "model-a", 1, None, 0.01, 0.0, "done", "",
        response=response, server_address="a.test", server_port=443,
    )  # fmt: skip


def ended(call_id: str) -> turnout.CallEvent:
    return turnout.CallEvent(call_id, "default", "a", (), None, 0.02, None, False)


def test_a_call_whose_end_never_comes_is_dropped_and_said(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    observer = OpenTelemetryObserver(max_pending=2)
    with caplog.at_level(logging.WARNING, "turnout.otel"):
        for call_id in ("one", "two", "three"):
            observer.on_attempt(attempt(call_id))
    assert [r.getMessage() for r in caplog.records] == [
        "turnout-otel: call one never ended; its attempt spans are dropped"
    ]
    for call_id in ("one", "two", "three"):
        observer.on_call(ended(call_id))
    spans = telemetry.spans()
    children = {
        str(dict(call.attributes or {})["turnout.call_id"]): sum(s.parent == call.context for s in spans)
        for call in spans
        if call.name == "turnout.chat default"
    }
    assert children == {"one": 0, "two": 1, "three": 1}


def test_every_answering_model_is_measured_exactly_past_the_caches_bound(telemetry: Telemetry) -> None:
    observer = OpenTelemetryObserver()
    models = [f"model-{i}" for i in range(150)]  # more than a site keeps (64)
    for i, model in enumerate([*models, *models]):
        observer.on_attempt(attempt(f"c{i}", answered_by=model))
        observer.on_call(ended(f"c{i}"))
    points = telemetry.points("gen_ai.client.operation.duration")
    assert sorted(str(attributes["gen_ai.response.model"]) for attributes, _ in points) == sorted(models)
    for attributes, (count, _) in points:
        assert count == 2
        assert attributes == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme",
            "gen_ai.request.model": "model-a",
            "server.address": "a.test",
            "server.port": 443,
            "gen_ai.response.model": attributes["gen_ai.response.model"],
        }
    answered = [
        dict(s.attributes or {})["gen_ai.response.model"]
        for s in telemetry.spans()
        if s.name == "chat model-a"
    ]
    assert answered == [*models, *models]


def test_a_bounded_cache_forgets_everything_when_full() -> None:
    cache = Bounded[str, int](2)
    assert cache.put("a", 1) == 1
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b")) == (1, 2)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, None, 3)
