"""Issue 20, defects 4 and 5: what an answer says. `Router.chat` gave an Anthropic-backed
alias's `end_turn` as it came (`Router.stream` mapped it to `stop`); Anthropic streams
lost their input tokens (`Usage(0, 5, 5)` for `(11, 5, 16)`); and an answer with only
`tokens_used` reported 0 prompt and 0 completion tokens, which are unknown."""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout import Usage
from turnout.emulation import Fault
from turnout_litellm.emulator import LiteLLMEmulator

from .recorded import (
    ANTHROPIC_ANSWER,
    ANTHROPIC_OVERLOADED,
    ANTHROPIC_STREAM,
    CALL_ANSWER,
    CHATS,
    JSON,
    SESSIONS,
    SSE,
    STREAMS,
    Recorded,
    decisions,
    job_answers,
    lite,
    loopback,
)

BASE = "https://lite.test/api"


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_chat_gives_finish_reasons_in_openais_words(call: Any) -> None:
    transport = Recorded({"create-and-call": [(200, JSON, ANTHROPIC_ANSWER)]})
    response = call([lite("claude", BASE, "claude-fast")], transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.finish_reason == "stop"
    assert response.content == "Hello there!"
    # Only a total is reported: the parts are unknown, not zero.
    assert response.usage == Usage(None, None, 16)
    assert response.raw["response"]["finish_reason"] == "end_turn"  # as the server sent it


@pytest.mark.parametrize("call", SESSIONS.values(), ids=list(SESSIONS))
def test_a_job_call_reports_its_total_only(call: Any) -> None:
    transport = Recorded(job_answers(llm_call=[(200, JSON, CALL_ANSWER)]))
    _session, response = call(lite("lite", BASE), transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.usage == Usage(None, None, 27)
    assert response.request_id == "c41e0f7a-93b2-4d58-a6e1-2f7b8c9d0e1a"


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_an_anthropic_stream_keeps_its_input_tokens(stream: Any) -> None:
    transport = Recorded({"create-and-call-stream": [(200, SSE, ANTHROPIC_STREAM)]})
    chunks, response = stream([lite("claude", BASE, "claude-fast")], transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == "Hello there!"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(11, 5, 16, 0)
    # message_start's usage rides on the first text chunk: no chunk without content.
    assert [c.delta for c in chunks] == ["Hello", " there!", ""]
    assert chunks[0].usage == Usage(11, None, None, 0)
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_an_upstream_failing_after_message_start_still_falls_back(stream: Any) -> None:
    # The input tokens did not commit the stream to its deployment: nothing reached the caller.
    transport = Recorded(
        {"create-and-call-stream": [(200, SSE, ANTHROPIC_OVERLOADED), (200, SSE, ANTHROPIC_STREAM)]}
    )
    deps = [lite("claude", "https://one.test/api", "claude-fast"), lite("other", BASE, "claude-fast")]
    chunks, response = stream(deps, transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "other"
    assert decisions(response.attempts) == [("unavailable", "fallback"), (None, "done")]
    assert response.usage == Usage(11, 5, 16, 0)  # the answering deployment's count only
    assert "".join(c.delta for c in chunks) == "Hello there!"


@pytest.mark.parametrize("model", ["claude-fast", "gemini/flash", "gpt-4o-mini"])
@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_over_the_emulator_chat_and_stream_agree(call: Any, model: str) -> None:
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        dep = lite("lite", fake.base_url("litellm"), model)
        answered = call([dep])
        stream = STREAMS["Router" if call is CHATS["Router"] else "AsyncRouter"]
        _chunks, streamed = stream([dep])
    assert answered.finish_reason == streamed.finish_reason == "stop"
    assert answered.content == streamed.content == "echo: hello there world"
    assert answered.usage == Usage(None, None, 9)  # 5 prompt tokens and 4 words, as the emulator counts
    if model != "gpt-4o-mini":  # OpenAI streams report no usage unless asked to
        assert (streamed.usage.prompt_tokens, streamed.usage.completion_tokens) == (5, 4)
        assert streamed.usage.total_tokens == 9


def test_the_provider_model_of_a_stream_is_the_upstreams():
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        _chunks, streamed = STREAMS["Router"]([lite("lite", fake.base_url("litellm"))])
    assert streamed.model == "gpt-4o-mini-2024-07-18"


def test_an_error_frame_after_message_start_over_the_emulator():
    primary, backup = LiteLLMEmulator(), LiteLLMEmulator()
    with loopback(litellm=primary, backup=backup) as fake:
        fake.script("litellm", Fault(stream_error="anthropic_overloaded", stream_error_after=0))
        deps = [lite("lite", fake.base_url("litellm"), "claude-fast"), lite("b", fake.base_url("backup"))]
        _chunks, response = STREAMS["Router"](deps)
    assert response.deployment == "b"
    assert decisions(response.attempts) == [("unavailable", "fallback"), (None, "done")]
