"""Tool calls and structured output as the official OpenAI SDK reads them, from the Mume
emulator over real loopback HTTP, and turnout's reading of the very same replies.

The SDK is the reference for what an OpenAI-compatible answer means: if it parses the
emulator's tool calls (whole, and streamed in pieces) into its own types, the emulator
speaks the format, and turnout must read the same calls out of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import turnout
from tests.chat_tools import CLOCK, WEATHER
from turnout import HTTPResponse, ToolCall
from turnout.testing.server import EmulatorServer
from turnout_mume.emulator import MumeEmulator

from .helpers import FAST, KEY, MODEL, MUME

openai = pytest.importorskip("openai")

ASK = [{"role": "user", "content": "Oslo"}]
CALLS = [("get_weather", {"city": "Oslo", "unit": "c"}), ("get_time", {"tz": "Oslo"})]


class GetWeather(BaseModel):
    city: str
    unit: Literal["c", "f"]


class Forecast(BaseModel):
    city: str
    temperature: float
    sunny: bool


@pytest.fixture
def second_server() -> Iterator[EmulatorServer]:
    """Another fresh emulator: its first answer is the same as the first server's first."""
    server = EmulatorServer(MumeEmulator()).start()
    try:
        yield server
    finally:
        server.close()


def sdk(server: EmulatorServer) -> Any:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def router(server: EmulatorServer, plugins: turnout.Plugins) -> turnout.Router:
    deployment = turnout.Deployment(
        "mume", "mume", MODEL, api_key=KEY, base_url=server.base_url, retry_policy=FAST
    )
    return turnout.Router([deployment], plugins=plugins)


def sdk_calls(tool_calls: Any) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in tool_calls]


def ours(calls: tuple[ToolCall, ...]) -> list[tuple[str, str, str]]:
    return [(c.id, c.name, c.arguments) for c in calls]


def test_the_sdk_parses_tool_calls_and_turnout_reads_the_same(mume_server: EmulatorServer) -> None:
    with sdk(mume_server) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ASK, tools=[WEATHER, CLOCK]
        )
    completion = raw.parse()
    choice = completion.choices[0]
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.refusal is None
    for made in choice.message.tool_calls:
        assert isinstance(made, openai.types.chat.ChatCompletionMessageFunctionToolCall)
        assert made.type == "function"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == CALLS
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    # turnout's codec, on the bytes the SDK parsed.
    response = MUME.parse_completion(HTTPResponse(raw.status_code, dict(raw.headers), raw.content))
    assert ours(response.tool_calls) == sdk_calls(choice.message.tool_calls)
    assert response.finish_reason == choice.finish_reason
    assert response.request_id == raw.headers["x-request-id"]
    assert response.usage == turnout.Usage(
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
        completion.usage.prompt_tokens_details.cached_tokens,
        completion.usage.completion_tokens_details.reasoning_tokens,
    )


def test_the_sdk_parses_streamed_tool_calls_and_turnout_assembles_the_same(
    mume_server: EmulatorServer, second_server: EmulatorServer, plugins: turnout.Plugins
) -> None:
    pieces: list[Any] = []
    with (
        sdk(mume_server) as client,
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, CLOCK], stream=True
        ) as stream,
    ):
        for chunk in stream:
            assert isinstance(chunk, openai.types.chat.ChatCompletionChunk)
            if chunk.choices and chunk.choices[0].delta.tool_calls:
                pieces.extend(chunk.choices[0].delta.tool_calls)
    # The SDK's own types for the pieces: an id and a name first, then arguments.
    assert all(isinstance(p, openai.types.chat.chat_completion_chunk.ChoiceDeltaToolCall) for p in pieces)
    heads = [p for p in pieces if p.id is not None]
    assert [(p.index, p.function.name, p.function.arguments) for p in heads] == [
        (0, "get_weather", ""),
        (1, "get_time", ""),
    ]
    assert len(pieces) > 2 * len(heads)
    assembled = {i: "".join(p.function.arguments or "" for p in pieces if p.index == i) for i in (0, 1)}
    assert [json.loads(assembled[i]) for i in (0, 1)] == [args for _, args in CALLS]

    # The same first answer from a fresh emulator, through turnout: the same calls, exactly.
    with (
        router(second_server, plugins) as ours_router,
        ours_router.stream(ASK, tools=[WEATHER, CLOCK]) as ours_stream,
    ):
        chunks = list(ours_stream)
    assert ours_stream.response is not None
    expected = [(heads[i].id, heads[i].function.name, assembled[i]) for i in (0, 1)]
    assert ours(ours_stream.response.tool_calls) == expected
    assert [(d.index, d.id, d.name, d.arguments) for c in chunks for d in c.tool_calls] == [
        (p.index, p.id, p.function.name if p.function else None, p.function.arguments or "") for p in pieces
    ]


def test_the_sdks_stream_helper_accumulates_the_same_calls(
    mume_server: EmulatorServer, second_server: EmulatorServer, plugins: turnout.Plugins
) -> None:
    with (
        sdk(mume_server) as client,
        client.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER, CLOCK]) as stream,
    ):
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(e.name, json.loads(e.arguments)) for e in done] == CALLS
    with (
        router(second_server, plugins) as ours_router,
        ours_router.stream(ASK, tools=[WEATHER, CLOCK]) as ours_stream,
    ):
        list(ours_stream)
    assert ours_stream.response is not None
    assert ours(ours_stream.response.tool_calls) == sdk_calls(message.tool_calls)


def test_the_sdk_parses_pydantic_tool_arguments(mume_server: EmulatorServer) -> None:
    with sdk(mume_server) as client:
        completion = client.chat.completions.parse(
            model=MODEL, messages=ASK, tools=[openai.pydantic_function_tool(GetWeather)]
        )
    (made,) = completion.choices[0].message.tool_calls
    assert made.function.name == "GetWeather"
    assert made.function.parsed_arguments == GetWeather(city="Oslo", unit="c")


def test_the_sdk_parses_structured_output_and_turnout_carries_it(
    mume_server: EmulatorServer, plugins: turnout.Plugins
) -> None:
    with sdk(mume_server) as client:
        completion = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Forecast)
    assert completion.choices[0].message.parsed == Forecast(city="Oslo", temperature=1.5, sunny=True)
    # The same schema, sent through turnout as the SDK sent it.
    sent = json.loads(mume_server.requests[-1].body)["response_format"]
    assert sent["type"] == "json_schema"
    with router(mume_server, plugins) as ours_router:
        response = ours_router.chat(ASK, response_format=sent)
    assert Forecast.model_validate_json(response.content) == Forecast(
        city="Oslo", temperature=1.5, sunny=True
    )
    assert json.loads(mume_server.requests[-1].body)["response_format"] == sent


def test_the_sdk_and_turnout_continue_each_others_tool_loop(
    mume_server: EmulatorServer, plugins: turnout.Plugins
) -> None:
    """turnout's `resp.message` is what the SDK sends back, and the other way round."""
    with router(mume_server, plugins) as ours_router:
        first = ours_router.chat(ASK, tools=[WEATHER])
    history: list[Any] = [
        *ASK,
        dict(first.message),
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "-3 C"},
    ]
    with sdk(mume_server) as client:
        answer = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
        assert answer.choices[0].message.content == "tool results: get_weather: -3 C"
        again = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
    message = again.choices[0].message
    sdk_history = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "-4 C"},
    ]
    with router(mume_server, plugins) as ours_router:
        response = ours_router.chat(sdk_history, tools=[WEATHER])
    assert response.content == "tool results: get_weather: -4 C"
