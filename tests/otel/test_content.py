"""Message content: never on a span unless the user opts in, and then in the GenAI
conventions' JSON shapes (messages of `parts`), with no image or file data."""

from __future__ import annotations

import json

import pytest

import turnout
from turnout_otel import OpenTelemetryObserver
from turnout_otel.content import CAPTURE_ENV, capture_from_env, input_messages, output_messages

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
}


@pytest.mark.parametrize(
    ("value", "on"),
    [
        (None, False),
        ("", False),
        ("false", False),
        ("NO_CONTENT", False),
        ("true", True),
        ("SPAN_ONLY", True),
    ],
)
def test_the_environment_opts_in(value: str | None, on: bool) -> None:
    assert capture_from_env({} if value is None else {CAPTURE_ENV: value}) is on


@pytest.mark.parametrize("value", ["event_only", "SPAN_AND_EVENT", "maybe"])
def test_a_value_it_cannot_honour_is_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(
        ValueError, match=rf"{CAPTURE_ENV}='{value}': turnout-otel records content on spans only"
    ):
        capture_from_env({CAPTURE_ENV: value})


def test_the_constructor_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "true")
    assert OpenTelemetryObserver().capture_content is True
    assert OpenTelemetryObserver(capture_content=False).capture_content is False
    monkeypatch.setenv(CAPTURE_ENV, "maybe")
    with pytest.raises(ValueError, match=CAPTURE_ENV):
        OpenTelemetryObserver()


def test_input_messages_in_the_conventions_shape() -> None:
    messages = [
        turnout.Message("system", "Be brief."),
        turnout.Message(
            "user",
            [
                {"type": "text", "text": "What is in it?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
            name="ann",
        ),
        turnout.Message("assistant", None, extra={"tool_calls": [TOOL_CALL]}),
        turnout.Message("tool", "12 C", extra={"tool_call_id": "call_1"}),
    ]
    assert json.loads(input_messages(messages)) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {
            "role": "user",
            "name": "ann",
            "parts": [{"type": "text", "content": "What is in it?"}, {"type": "image_url"}],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Oslo"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "12 C"}]},
    ]
    assert "AAAA" not in input_messages(messages)


def test_output_messages_in_the_conventions_shape() -> None:
    response = turnout.ChatResponse(
        "Let me look.",
        "tool_calls",
        tool_calls=(turnout.ToolCall("call_1", "weather", "not json"),),
    )
    assert json.loads(output_messages(response)) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me look."},
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": "not json"},
            ],
            "finish_reason": "tool_calls",
        }
    ]
