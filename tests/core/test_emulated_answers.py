"""The emulated model's answers (turnout._emulated_answers) and how OpenAIEmulator writes
them: the rules its docstring documents, one test each, so that the loopback tests of
every provider can rely on them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from turnout._emulated_answers import (
    ARGUMENT_PIECE,
    REASONING_TOKENS,
    REFUSAL,
    Invalid,
    answer,
    example_value,
    last_text,
)
from turnout.emulation import EmulatedRequest, Fault

from .acme import AcmeEmulator

USER = {"role": "user", "content": "Paris today"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"properties": {"tz": {}}}}}
SEARCH = {"type": "function", "function": {"name": "search"}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def body(*messages: Any, **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages) or [USER], **params}


def post(payload: Any, emulator: AcmeEmulator | None = None, fault: Fault | None = None) -> Any:
    request = EmulatedRequest("POST", "/v1/chat/completions", {}, json.dumps(payload).encode())
    return (emulator or AcmeEmulator()).handle(request, fault)


def events(reply: Any) -> list[Any]:
    found = []
    for chunk in reply.chunks:
        data = chunk.decode().removeprefix("data: ").strip()
        found.append(data if data == "[DONE]" else json.loads(data))
    return found


# -- the rules -------------------------------------------------------------------


def test_the_echo_is_the_last_messages_text() -> None:
    reply = answer(body({"role": "system", "content": "be brief"}, USER), "r1")
    assert reply.content == "echo: Paris today"
    assert reply.finish_reason == "stop"
    assert reply.tool_calls == ()
    assert reply.refusal is None


def test_content_parts_are_echoed_with_their_types() -> None:
    parts = [{"type": "text", "text": "what is this?"}, IMAGE, {"type": "input_audio", "input_audio": {}}]
    reply = answer(body({"role": "user", "content": parts}), "r1")
    assert reply.content == "echo: what is this? [image_url] [input_audio]"
    assert last_text([{"role": "user", "content": parts}]) == "what is this? [image_url] [input_audio]"


def test_tools_are_called_one_per_declared_tool_at_most_two() -> None:
    reply = answer(body(tools=[WEATHER, TIME, SEARCH]), "r7")
    assert reply.content is None
    assert reply.finish_reason == "tool_calls"
    assert [(c.id, c.name) for c in reply.tool_calls] == [
        ("call_r7_0", "get_weather"),
        ("call_r7_1", "get_time"),
    ]
    assert json.loads(reply.tool_calls[0].arguments) == {"city": "Paris today", "unit": "celsius", "days": 1}
    assert reply.tool_calls[0].arguments == '{"city":"Paris today","unit":"celsius","days":1}'
    # A property without a type is null; a function without parameters gets {}.
    assert json.loads(reply.tool_calls[1].arguments) == {"tz": None}
    assert answer(body(tools=[SEARCH]), "r").tool_calls[0].arguments == "{}"


def test_tool_choice_and_parallel_tool_calls_narrow_the_calls() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    assert [c.name for c in answer(body(tools=[WEATHER, TIME], tool_choice=named), "r").tool_calls] == [
        "get_time"
    ]
    single = answer(body(tools=[WEATHER, TIME], parallel_tool_calls=False), "r")
    assert [c.name for c in single.tool_calls] == ["get_weather"]
    assert answer(body(tools=[WEATHER], tool_choice="required"), "r").finish_reason == "tool_calls"
    text = answer(body(tools=[WEATHER], tool_choice="none"), "r")
    assert (text.content, text.tool_calls) == ("echo: Paris today", ())


def test_the_conversation_continues_after_tool_results() -> None:
    calls = answer(body(tools=[WEATHER, TIME]), "r1")
    history = [
        USER,
        calls.message(),
        {"role": "tool", "tool_call_id": "call_r1_1", "content": "09:00"},
        {"role": "tool", "tool_call_id": "call_r1_0", "content": [{"type": "text", "text": "21 C"}]},
    ]
    reply = answer(body(*history, tools=[WEATHER, TIME]), "r2")
    assert reply.content == "tool results: get_time: 09:00; get_weather: 21 C"
    assert reply.finish_reason == "stop"
    assert reply.tool_calls == ()


def test_a_refusal() -> None:
    reply = answer(body({"role": "user", "content": "refuse: anything"}), "r")
    assert (reply.content, reply.refusal, reply.finish_reason) == (None, REFUSAL, "stop")
    assert reply.message() == {"role": "assistant", "content": None, "refusal": REFUSAL}


def test_structured_output() -> None:
    assert answer(body(response_format={"type": "json_object"}), "r").content == '{"echo":"Paris today"}'
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temperature": {"type": "number"},
            "sunny": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": ["null", "string"]}},
            "kind": {"const": "forecast"},
        },
    }
    form = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema, "strict": True}}
    reply = answer(body(response_format=form), "r")
    assert json.loads(reply.content or "") == {
        "city": "Paris today",
        "temperature": 1.5,
        "sunny": True,
        "tags": ["Paris today"],
        "kind": "forecast",
    }
    assert answer(body(response_format={"type": "text"}), "r").content == "echo: Paris today"


def test_max_tokens_and_stop_cut_the_echo() -> None:
    long = {"role": "user", "content": "one two three four five"}
    cut = answer(body(long, max_tokens=3), "r")
    assert (cut.content, cut.finish_reason) == ("echo: one two ", "length")
    newer = answer(body(long, max_completion_tokens=2, max_tokens=50), "r")
    assert (newer.content, newer.finish_reason) == ("echo: one ", "length")
    stopped = answer(body(long, stop=["four", "zzz"]), "r")
    assert (stopped.content, stopped.finish_reason) == ("echo: one two three ", "stop")


def test_usage_with_its_details() -> None:
    messages = [{"role": "system", "content": "be brief"}, USER]
    usage = answer(body(*messages), "r").usage
    # 3 per message + 4 words; "echo: Paris today" streams in 3 pieces.
    assert usage["prompt_tokens"] == 10
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == 13
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    thinking = answer(body(*messages, reasoning_effort="low"), "r", cached=True).usage
    assert thinking["completion_tokens"] == 3 + REASONING_TOKENS
    assert thinking["completion_tokens_details"]["reasoning_tokens"] == REASONING_TOKENS
    assert thinking["prompt_tokens_details"]["cached_tokens"] == 10


@pytest.mark.parametrize(
    ("messages", "params", "param"),
    [
        ([{"role": "wizard", "content": "x"}], {}, "messages[0].role"),
        (["hello"], {}, "messages[0]"),
        ([{"role": "user", "content": [{"text": "no type"}]}], {}, "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "text"}]}], {}, "messages[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], {}, "messages[0].content[0].image_url.url"),
        ([{"role": "tool", "tool_call_id": "call_x", "content": "1"}], {}, "messages[0].tool_call_id"),
        ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}], {}, "messages[0].tool_calls"),
        ([USER], {"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ([USER], {"tools": "get_weather"}, "tools"),
        ([USER], {"tools": [WEATHER], "tool_choice": {"function": {"name": "nope"}}}, "tool_choice"),
        ([USER], {"response_format": {"type": "yaml"}}, "response_format.type"),
        (
            [USER],
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
    ],
)
def test_what_openai_refuses_is_refused(messages: list[Any], params: dict[str, Any], param: str) -> None:
    with pytest.raises(Invalid) as info:
        answer(body(*messages, **params), "r")
    assert info.value.param == param


def test_example_values() -> None:
    assert example_value({"enum": ["a", "b"]}, "t") == "a"
    assert example_value({"type": "array"}, "t") == []
    assert example_value({"type": "object"}, "t") == {}
    assert example_value({"properties": {"n": {"type": "integer"}}}, "t") == {"n": 1}
    assert example_value("not a schema", "t") is None


# -- how OpenAIEmulator writes them ---------------------------------------------------


def test_a_tool_call_completion_on_the_wire() -> None:
    reply = post(body(tools=[WEATHER]))
    assert reply.status == 200
    completion = json.loads(reply.body)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_req_acme_000001_0",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city":"Paris today","unit":"celsius","days":1}',
                },
            }
        ],
    }
    assert completion["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_a_streamed_tool_call_comes_in_pieces_as_openai_sends_it() -> None:
    reply = post(body(tools=[WEATHER, TIME], stream=True))
    found = events(reply)
    assert found[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in found[:-2]]
    finish = found[-2]["choices"][0]
    assert (finish["delta"], finish["finish_reason"]) == ({}, "tool_calls")
    # The first piece of each call: its index, id, type and name, and empty arguments.
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_req_acme_000001_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
    }
    arguments: dict[int, str] = {0: "", 1: ""}
    heads = []
    for delta in deltas:
        (piece,) = delta["tool_calls"]
        if "id" in piece:
            heads.append((piece["index"], piece["id"], piece["function"]["name"]))
        else:
            assert set(piece) == {"index", "function"}
            assert 0 < len(piece["function"]["arguments"]) <= ARGUMENT_PIECE
        arguments[piece["index"]] += piece["function"]["arguments"]
    assert heads == [(0, "call_req_acme_000001_0", "get_weather"), (1, "call_req_acme_000001_1", "get_time")]
    assert json.loads(arguments[0]) == {"city": "Paris today", "unit": "celsius", "days": 1}
    assert json.loads(arguments[1]) == {"tz": None}
    # Several argument pieces per call; the second call starts after the first ends.
    assert len(deltas) == 2 + -(-len(arguments[0]) // ARGUMENT_PIECE) + -(
        -len(arguments[1]) // ARGUMENT_PIECE
    )


def test_a_stream_reports_usage_last_when_asked() -> None:
    plain = events(post(body(stream=True)))
    assert all("usage" not in e for e in plain[:-1])
    found = events(post(body(stream=True, stream_options={"include_usage": True})))
    last = found[-2]
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 3
    assert found[-3]["choices"][0]["finish_reason"] == "stop"


def test_a_streamed_refusal() -> None:
    found = events(post(body({"role": "user", "content": "refuse: it"}, stream=True)))
    pieces = [e["choices"][0]["delta"].get("refusal") for e in found[:-2]]
    assert "".join(pieces) == REFUSAL
    assert found[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_faults_apply_to_tool_call_streams() -> None:
    reply = post(body(tools=[WEATHER], stream=True), fault=Fault(stream_error="oops", stream_error_after=2))
    found = events(reply)
    assert len(found) == 3
    assert found[-1]["error"]["code"] == "oops"
    cut = post(body(tools=[WEATHER], stream=True), fault=Fault(drop_after=2))
    assert cut.drop_after == 2


def test_the_prompt_cache_key_is_remembered_per_emulator() -> None:
    emulator = AcmeEmulator()
    first = json.loads(post(body(prompt_cache_key="k1"), emulator).body)["usage"]
    second = json.loads(post(body(prompt_cache_key="k1"), emulator).body)["usage"]
    other = json.loads(post(body(prompt_cache_key="k2"), emulator).body)["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == second["prompt_tokens"] == 5
    assert other["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_request_openai_refuses_gets_the_gateways_400_saying_why() -> None:
    reply = post(body({"role": "tool", "tool_call_id": "call_nowhere", "content": "1"}))
    assert reply.status == 400
    error = json.loads(reply.body)["error"]
    assert error["code"] == "bad_request"
    assert "must be a response to a preceding message with 'tool_calls'" in error["message"]
    assert error["param"] == "messages[0].tool_call_id"
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-request-id") == "req_acme_000001"
