"""The OpenAI-compatible stream codec (turnout._openai): chunks named by the stream's
request id, tool-call pieces read or refused, and a subclass's own `chunk_from` honoured
(the built-in reading is a fast path that must not bypass an override)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

import turnout
from turnout import ChatChunk, ChatRequest, ToolCallDelta
from turnout.emulation import sse

from .acme import Acme

DEPLOYMENT = turnout.Deployment("a", "acme", "m", api_key="k", base_url="https://acme.test/v1")
REQUEST = ChatRequest([{"role": "user", "content": "hi"}])


def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "m-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **top,
    }


def stream(
    provider: turnout.OpenAICompatible, events: list[Any], headers: Mapping[str, str] | None = None
) -> list[ChatChunk]:
    body = b"".join(sse(e) for e in events) + b"data: [DONE]\n\n"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream", **(headers or {})}, content=body
        )

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        return list(turnout.stream_flow(provider.stream(DEPLOYMENT, REQUEST), client))


TOOL_EVENTS = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ],
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    chunk({}, "tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
]


def test_chunks_are_named_by_the_streams_request_id_header() -> None:
    chunks = stream(Acme(), TOOL_EVENTS, {"x-request-id": "req_9"})
    assert [c.request_id for c in chunks] == ["req_9"] * 4
    assert [c.model for c in chunks] == ["m-1"] * 4
    assert [p for c in chunks for p in c.tool_calls] == [
        ToolCallDelta(0, "call_1", "f", ""),
        ToolCallDelta(0, None, None, '{"a":'),
        ToolCallDelta(0, None, None, "1}"),
    ]
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].usage == turnout.Usage(3, 4, 7)


def test_without_the_header_each_chunk_keeps_its_own_id() -> None:
    chunks = stream(Acme(), TOOL_EVENTS)
    assert {c.request_id for c in chunks} == {"chatcmpl-1"}


def test_a_role_only_chunk_and_keep_alive_objects_carry_nothing() -> None:
    events = [
        chunk({"role": "assistant", "content": ""}),
        {"object": "keep-alive"},
        chunk({"content": "hi"}, "stop"),
    ]
    assert [(c.delta, c.finish_reason) for c in stream(Acme(), events)] == [("hi", "stop")]


@pytest.mark.parametrize(
    "bad",
    [
        {"tool_calls": {"index": 0}},
        {"tool_calls": ["call"]},
        {"tool_calls": [{"index": -1, "function": {"arguments": "x"}}]},
        {"tool_calls": [{"index": True, "function": {"arguments": "x"}}]},
        {"tool_calls": [{"index": 2**63, "function": {"arguments": "x"}}]},
        {"tool_calls": [{"index": 2**64, "function": {"arguments": "x"}}]},  # a float from orjson
        {"tool_calls": [{"index": 10**400, "function": {"arguments": "x"}}]},
        {"tool_calls": [{"index": 0, "function": "f"}]},
        {"tool_calls": [{"index": 0, "id": 7, "function": {"name": "f"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]},
    ],
)
def test_malformed_tool_call_pieces_are_a_parse_error(bad: dict[str, Any]) -> None:
    with pytest.raises(turnout.ResponseParseError, match="a stream event is malformed"):
        stream(Acme(), [chunk({"content": "a"}), chunk(bad)])


def test_the_codec_reads_any_mapping_not_only_dicts() -> None:
    """Parsed JSON is dicts, and the hot path checks for them first; a provider handing
    `chunk_from` other mappings (a read-only view) gets the same reading."""
    from types import MappingProxyType

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return MappingProxyType({k: frozen(v) for k, v in value.items()})
        if isinstance(value, list):
            return [frozen(v) for v in value]
        return value

    for event in TOOL_EVENTS:
        assert Acme().chunk_from(frozen(event)) == Acme().chunk_from(event)


class OwnChunks(Acme):
    """A gateway whose chunks are `{"text": ...}`, read by its own `chunk_from`."""

    def chunk_from(self, payload: Mapping[str, Any]) -> ChatChunk | None:
        if "text" in payload:
            return ChatChunk(payload["text"], payload.get("done"), request_id="own")
        return super().chunk_from(payload)


def test_a_subclass_chunk_from_is_honoured_and_its_chunks_named_by_the_header() -> None:
    events = [{"text": "a "}, chunk({"content": "b"}), {"text": "c", "done": "end_turn"}]
    with_header = stream(OwnChunks(), events, {"x-request-id": "req_h"})
    assert [(c.delta, c.request_id) for c in with_header] == [("a ", "req_h"), ("b", "req_h"), ("c", "req_h")]
    assert with_header[-1].finish_reason == "end_turn"
    without = stream(OwnChunks(), events)
    assert [c.request_id for c in without] == ["own", "chatcmpl-1", "own"]


def test_a_stream_event_that_is_not_an_object_is_a_parse_error() -> None:
    for event in (["a list"], "a string", 3, None):
        with pytest.raises(turnout.ResponseParseError, match="not a JSON object"):
            stream(Acme(), [json.dumps(event)])  # sent as the JSON text itself
