"""What a request needs a deployment to carry (turnout._provider.needed_features)."""

from __future__ import annotations

from typing import Any

import pytest

from turnout import ChatRequest
from turnout._provider import needed_features

TEXT = {"role": "user", "content": "hi"}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("messages", "params", "stream", "expected"),
    [
        ([TEXT], {}, False, []),
        ([TEXT], {}, True, []),
        ([TEXT], {"temperature": 0}, False, []),
        ([TEXT], {"tools": [{"type": "function"}]}, False, ["tools"]),
        ([TEXT], {"tools": [{"type": "function"}]}, True, ["tools", "tool_streaming"]),
        ([TEXT], {"tools": []}, False, []),  # an empty list asks for nothing
        ([TEXT], {"tool_choice": "none"}, False, ["tools"]),
        ([TEXT], {"functions": [{"name": "f"}]}, False, ["tools"]),
        ([TEXT], {"function_call": "auto"}, False, ["tools"]),
        ([TEXT, {"role": "tool", "tool_call_id": "c1", "content": "42"}], {}, False, ["tools"]),
        ([TEXT, {"role": "function", "name": "f", "content": "42"}], {}, False, ["tools"]),
        ([TEXT, {"role": "assistant", "content": None, "tool_calls": []}], {}, False, ["tools"]),
        ([TEXT, {"role": "assistant", "content": None, "function_call": {}}], {}, False, ["tools"]),
        ([TEXT, {"role": "assistant", "content": "x", "refusal": None}], {}, False, []),
        ([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], {}, False, []),
        ([{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}], {}, True, ["content_parts"]),
        ([TEXT, {"role": "user", "content": [IMAGE]}], {}, False, ["content_parts"]),
        ([TEXT], {"response_format": {"type": "json_object"}}, False, ["response_format"]),
        ([TEXT], {"response_format": None}, False, []),
        (
            [{"role": "tool", "tool_call_id": "c", "content": [IMAGE]}],
            {"response_format": {"type": "json_object"}},
            True,
            ["tools", "tool_streaming", "content_parts", "response_format"],
        ),
    ],
)
def test_needed_features(
    messages: list[Any], params: dict[str, Any], stream: bool, expected: list[str]
) -> None:
    assert needed_features(ChatRequest(messages, params), stream=stream) == expected
