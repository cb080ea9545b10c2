"""Every field of the answer, over real loopback HTTP, for every provider, Router and
AsyncRouter, chat and stream, checked against the reply the gateway actually sent:
content, tool calls (streamed in pieces and assembled), refusal, the message ready to
append, usage (None for what is not reported), raw, headers, the finish reason in
OpenAI's words, request id and model after a stream; and the tool-calling loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout import ToolCall, ToolCallDelta, Usage
from turnout._emulated_answers import REFUSAL

from .chatkit import CLOCK, HOWS, IMAGE, OPENAI_LIKE, PROVIDERS, WEATHER, Outcome, Wire, call, sse_payloads
from .conftest import MODELS, deployment

ASK = [{"role": "user", "content": "Paris"}]
STREAMS = ("stream", "astream")


def usage_of(wire_usage: dict[str, Any]) -> Usage:
    return Usage(
        wire_usage["prompt_tokens"],
        wire_usage["completion_tokens"],
        wire_usage["total_tokens"],
        wire_usage["prompt_tokens_details"]["cached_tokens"],
        wire_usage["completion_tokens_details"]["reasoning_tokens"],
    )


def streamed_pieces(outcome: Outcome) -> list[ToolCallDelta]:
    return [piece for chunk in outcome.chunks for piece in chunk.tool_calls]


def wire_pieces(wire: Wire, provider: str) -> list[ToolCallDelta]:
    found = []
    for event in sse_payloads(wire.answer(provider)):
        for piece in (event["choices"] or [{}])[0].get("delta", {}).get("tool_calls", []):
            function = piece.get("function", {})
            found.append(
                ToolCallDelta(
                    piece["index"], piece.get("id"), function.get("name"), function.get("arguments") or ""
                )
            )
    return found


def tool_calls_of(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
    )


def assert_who(outcome: Outcome, provider: str) -> None:
    response = outcome.response
    assert (response.deployment, response.provider, response.model) == (provider, provider, MODELS[provider])
    assert [a.error for a in response.attempts] == [None]
    assert [a.deployment for a in response.attempts] == [provider]


# -- tool calls ------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_tool_calls_and_every_field_of_the_answer(wire: Wire, provider: str, how: str) -> None:
    streamed = how in STREAMS
    extra = {"stream_options": {"include_usage": True}} if streamed else {}
    outcome = call(how, [deployment(wire.fake, provider)], ASK, tools=[WEATHER, CLOCK], **extra)
    response = outcome.response
    reply = wire.answer(provider)
    assert_who(outcome, provider)
    # What any reader of the answer can count on, whatever the gateway's ids.
    assert response.content == ""
    assert response.refusal is None
    assert response.finish_reason == "tool_calls"
    assert [c.name for c in response.tool_calls] == ["get_weather", "get_time"]
    assert [json.loads(c.arguments) for c in response.tool_calls] == [
        {"city": "Paris", "unit": "c"},
        {"tz": "Paris"},
    ]
    assert len({c.id for c in response.tool_calls}) == 2
    assert all(c.id.startswith("call_") for c in response.tool_calls)
    assert response.request_id == reply.header("x-request-id")
    assert response.headers["x-request-id"] == reply.header("x-request-id")
    if not streamed:
        raw = json.loads(reply.body)
        assert response.raw == raw
        assert response.message == raw["choices"][0]["message"]
        assert response.tool_calls == tool_calls_of(raw["choices"][0]["message"])
        assert response.usage == usage_of(raw["usage"])
        assert response.headers["content-type"] == "application/json"
        return
    # A stream: the pieces as they came (id and name first, arguments in several pieces),
    # and the whole answer assembled from them.
    pieces = streamed_pieces(outcome)
    assert pieces == wire_pieces(wire, provider)
    assert len(pieces) > 4
    assert [(p.index, p.name) for p in pieces if p.id is not None] == [(0, "get_weather"), (1, "get_time")]
    assert all(p.name is None for p in pieces if p.id is None)
    for index, call_made in enumerate(response.tool_calls):
        assert "".join(p.arguments for p in pieces if p.index == index) == call_made.arguments
        assert sum(1 for p in pieces if p.index == index and p.arguments) >= 2
    assert response.message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in response.tool_calls
        ],
    }
    (usage_event,) = [e for e in sse_payloads(reply) if e.get("usage")]
    assert response.usage == usage_of(usage_event["usage"])
    assert response.usage is not None
    assert response.usage.total_tokens is not None
    assert response.raw is None
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [c.finish_reason for c in outcome.chunks if c.finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_the_tool_calling_loop(wire: Wire, provider: str, how: str) -> None:
    """Append `resp.message` and the tool results, call again: the model answers from them."""
    dep = deployment(wire.fake, provider)
    first = call(how, [dep], ASK, tools=[WEATHER, CLOCK]).response
    results = {"get_weather": '{"temp": 21}', "get_time": "09:41"}
    history = [
        *ASK,
        dict(first.message),
        *({"role": "tool", "tool_call_id": c.id, "content": results[c.name]} for c in first.tool_calls),
    ]
    second = call(how, [dep], history, tools=[WEATHER, CLOCK]).response
    assert second.content == 'tool results: get_weather: {"temp": 21}; get_time: 09:41'
    assert second.finish_reason == "stop"
    assert second.tool_calls == ()
    # The assistant message went back exactly as it came.
    bodies = [json.loads(request.body) for request in wire.requests(provider)]
    assert bodies[1]["messages"][1] == first.message


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_a_named_tool_choice_gets_one_call(wire: Wire, provider: str, how: str) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    response = call(
        how, [deployment(wire.fake, provider)], ASK, tools=[WEATHER, CLOCK], tool_choice=choice
    ).response
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [("get_time", {"tz": "Paris"})]
    assert response.finish_reason == "tool_calls"


# -- text answers ------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_a_refusal(wire: Wire, provider: str, how: str) -> None:
    outcome = call(how, [deployment(wire.fake, provider)], [{"role": "user", "content": "refuse: a"}])
    response = outcome.response
    assert (response.content, response.refusal, response.finish_reason) == ("", REFUSAL, "stop")
    assert response.message["refusal"] == REFUSAL
    assert response.message["content"] is None
    if how in STREAMS:
        assert "".join(c.refusal or "" for c in outcome.chunks) == REFUSAL
        assert all(c.delta == "" for c in outcome.chunks)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_a_cut_answer_finishes_with_length(wire: Wire, provider: str, how: str) -> None:
    words = [{"role": "user", "content": "one two three four"}]
    response = call(how, [deployment(wire.fake, provider)], words, max_tokens=2).response
    assert (response.content, response.finish_reason) == ("echo: one ", "length")


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_structured_output(wire: Wire, provider: str, how: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    form = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}
    response = call(how, [deployment(wire.fake, provider)], ASK, response_format=form).response
    assert json.loads(response.content) == {"city": "Paris", "population": 1}
    assert response.finish_reason == "stop"
    assert wire.body(provider)["response_format"] == form


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_image_reaches_the_model(wire: Wire, provider: str, how: str) -> None:
    parts = [{"type": "text", "text": "What is in this picture?"}, IMAGE]
    outcome = call(how, [deployment(wire.fake, provider)], [{"role": "user", "content": parts}])
    assert outcome.response.content == "echo: What is in this picture? [image_url]"
    assert_who(outcome, provider)


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_a_stream_without_usage_reports_none_and_keeps_its_ids(wire: Wire, provider: str, how: str) -> None:
    outcome = call(how, [deployment(wire.fake, provider)], [{"role": "user", "content": "a b c"}])
    response = outcome.response
    reply = wire.answer(provider)
    assert all("usage" not in event for event in sse_payloads(reply))
    assert response.usage is None
    assert response.content == "".join(c.delta for c in outcome.chunks) == "echo: a b c"
    assert response.request_id == reply.header("x-request-id")
    assert all(c.request_id == response.request_id for c in outcome.chunks)
    assert response.model == MODELS[provider]
    assert response.message == {"role": "assistant", "content": "echo: a b c"}
    assert response.finish_reason == "stop"


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_usage_details_as_reported(wire: Wire, provider: str, how: str) -> None:
    """Reasoning and cached tokens come through when the gateway reports them."""
    extra = {"stream_options": {"include_usage": True}} if how in STREAMS else {}
    dep = deployment(wire.fake, provider)
    key = f"cache-{provider}-{how}"
    call(how, [dep], ASK, prompt_cache_key=key, **extra)
    response = call(how, [dep], ASK, prompt_cache_key=key, reasoning_effort="high", **extra).response
    assert response.usage is not None
    assert response.usage.cached_tokens == response.usage.prompt_tokens == 4
    assert response.usage.reasoning_tokens == 16
    assert response.usage.completion_tokens == 2 + 16


@pytest.mark.parametrize("how", HOWS)
def test_modelroute_answers_in_full(wire: Wire, how: str) -> None:
    """ModelRoute's result carries text and token counts, nothing else: the rest is None."""
    outcome = call(how, [deployment(wire.fake, "modelroute")], [{"role": "user", "content": "a b"}])
    response = outcome.response
    result = json.loads(wire.answer("modelroute").body)
    assert_who(outcome, "modelroute")
    assert response.content == "echo: a b"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(5, 3, 8, None, None)
    assert response.request_id == result["id"]
    assert response.message == {"role": "assistant", "content": "echo: a b"}
    assert (response.tool_calls, response.refusal) == ((), None)
    if how in STREAMS:
        assert [c.delta for c in outcome.chunks] == ["echo: a b"]
    else:
        assert response.raw == result
        assert response.headers["x-request-id"] == wire.answer("modelroute").header("x-request-id")


def test_a_stream_of_tool_calls_falls_back_before_its_first_chunk(wire: Wire) -> None:
    """A stream cut before anything reached the caller moves to the next deployment, and
    the tool calls assembled are the second gateway's alone."""
    from turnout.emulation import Fault

    wire.fake.script("mume", Fault(drop_after=0))
    deployments = [
        deployment(wire.fake, "mume", retry_policy=turnout.RetryPolicy(max_retries=0)),
        deployment(wire.fake, "mythicdot"),
    ]
    outcome = call("stream", deployments, ASK, tools=[WEATHER])
    response = outcome.response
    assert [a.deployment for a in response.attempts] == ["mume", "mythicdot"]
    assert response.provider == "mythicdot"
    (made,) = response.tool_calls
    assert made.id.startswith("call_req_mythicdot_")
    assert json.loads(made.arguments) == {"city": "Paris", "unit": "c"}
