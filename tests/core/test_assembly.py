"""A streamed answer put back together (turnout._assembly): what `stream.response` holds."""

from __future__ import annotations

from turnout import ChatChunk, ToolCall, ToolCallDelta, Usage
from turnout._assembly import Assembly, Text, merge_usage


def assembled(*chunks: ChatChunk) -> Assembly:
    answer = Assembly()
    for chunk in chunks:
        answer.add(chunk)
    return answer


def test_text_ids_and_the_finish_reason() -> None:
    answer = assembled(
        ChatChunk("Hel", request_id="r1", model="m1"),
        ChatChunk("lo", request_id="r2", model="m2"),
        ChatChunk("", "stop"),
    )
    response = answer.response({"x-request-id": "r1"})
    assert (response.content, response.finish_reason) == ("Hello", "stop")
    # The first id and model win: every chunk of one stream carries the same.
    assert (response.request_id, response.model) == ("r1", "m1")
    assert response.message == {"role": "assistant", "content": "Hello"}
    assert response.headers == {"x-request-id": "r1"}
    assert (response.tool_calls, response.refusal, response.usage) == ((), None, None)


def test_tool_calls_from_their_pieces_by_index() -> None:
    answer = assembled(
        ChatChunk("", tool_calls=(ToolCallDelta(0, "call_a", "get_weather"),)),
        ChatChunk("", tool_calls=(ToolCallDelta(0, arguments='{"ci'),)),
        # The second call starts while the first is still arriving (some gateways interleave).
        ChatChunk("", tool_calls=(ToolCallDelta(1, "call_b", "get_time", "{"),)),
        ChatChunk(
            "", tool_calls=(ToolCallDelta(0, arguments='ty":"Paris"}'), ToolCallDelta(1, arguments="}"))
        ),
        ChatChunk("", "tool_calls"),
    )
    response = answer.response()
    assert response.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city":"Paris"}'),
        ToolCall("call_b", "get_time", "{}"),
    )
    assert response.content == ""
    assert response.finish_reason == "tool_calls"
    assert response.message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def test_a_later_piece_never_renames_a_call() -> None:
    answer = assembled(
        ChatChunk("", tool_calls=(ToolCallDelta(3, "call_x", "first"),)),
        ChatChunk("", tool_calls=(ToolCallDelta(3, "call_y", "second", "{}"),)),
    )
    assert answer.tool_calls() == (ToolCall("call_x", "first", "{}"),)


def test_text_beside_tool_calls_is_kept() -> None:
    answer = assembled(
        ChatChunk("Let me look. "),
        ChatChunk("", tool_calls=(ToolCallDelta(0, "c", "search", "{}"),), finish_reason="tool_calls"),
    )
    message = answer.response().message
    assert message["content"] == "Let me look. "
    assert message["tool_calls"][0]["function"]["name"] == "search"


def test_a_refusal_is_a_null_content_as_in_a_whole_answer() -> None:
    response = assembled(ChatChunk("", refusal="I can't "), ChatChunk("", "stop", refusal="help.")).response()
    assert (response.content, response.refusal) == ("", "I can't help.")
    assert response.message == {"role": "assistant", "content": None, "refusal": "I can't help."}


def test_an_empty_answer_is_an_empty_content() -> None:
    assert assembled(ChatChunk("", "stop")).response().message == {"role": "assistant", "content": ""}


def test_usage_in_parts() -> None:
    # Anthropic reports input tokens first and output tokens last.
    answer = assembled(
        ChatChunk("a", usage=Usage(prompt_tokens=10, cached_tokens=4)),
        ChatChunk("", "stop", usage=Usage(completion_tokens=3, total_tokens=None, reasoning_tokens=1)),
    )
    assert answer.response().usage == Usage(10, 3, 13, 4, 1)


def test_merge_usage() -> None:
    assert merge_usage(None, None) is None
    assert merge_usage(Usage(1, 2, 3), None) == Usage(1, 2, 3)
    assert merge_usage(None, Usage(1, 2, 3)) == Usage(1, 2, 3)
    # A later report wins; a total smaller than its parts is recomputed.
    assert merge_usage(Usage(5, 1, 6), Usage(5, 7, 12)) == Usage(5, 7, 12)
    assert merge_usage(Usage(5, None, None), Usage(None, 7, 7)) == Usage(5, 7, 12)
    # Counts nobody reported stay None.
    assert merge_usage(Usage(5), Usage(None, None, None, None, 2)) == Usage(5, None, None, None, 2)


def test_the_text_is_one_string_however_it_arrives() -> None:
    # Small pieces, pieces past the joining size, a piece that is not ASCII, and the
    # text asked for part-way (a stream's `text` while it runs).
    pieces = ["tok "] * 5000 + ["x" * 70_000, "é", "y" * 200_000] + ["z"] * 3
    text, so_far = Text(), []
    for number, piece in enumerate(pieces, 1):
        text.add(piece)
        if number in (1, 4999, 5001, 5003):
            so_far.append(str(text))
    assert so_far == ["tok ", "tok " * 4999, "tok " * 5000 + "x" * 70_000, "".join(pieces[:5003])]
    whole = str(text)
    assert whole == "".join(pieces)
    # Asked again, the same string: the whole text is never joined (held) twice.
    assert str(text) is whole
