"""What is SaaS-LiteLLM's own through the routers, over the emulator: one call is one job
(create-and-call), a retry is a new one, per-endpoint timeouts, its stream frame shapes
(OpenAI, Anthropic, Gemini; `{"error": ...}` frames; a clean close as a normal end) and
its job answer to a stream request.

The router's behaviour (retries, fallbacks, streams, hostile bodies, keys) is tested once,
over a generic provider, in tests/core/test_router_*.py and tests/core/test_secrets.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import Fault, mock_transport

from .conftest import HI, HOST, KEY, TEAM, Recording, deployment, jobs, paths


def kinds(attempts: Sequence[turnout.Attempt]) -> list[str | None]:
    return [a.error.kind.value if a.error else None for a in attempts]


def chat_sync(deps, transport, **params) -> Any:
    with turnout.Router(deps, transport=transport) as router:
        try:
            return router.chat(HI, **params)
        except turnout.ProviderError as error:
            return error


def chat_async(deps, transport, **params) -> Any:
    async def main() -> Any:
        async with turnout.AsyncRouter(deps, transport=transport) as router:
            try:
                return await router.chat(HI, **params)
            except turnout.ProviderError as error:
                return error

    return asyncio.run(main())


def stream_sync(deps, transport) -> tuple[list[turnout.ChatChunk], Any]:
    chunks: list[turnout.ChatChunk] = []
    with turnout.Router(deps, transport=transport) as router, router.stream(HI) as stream:
        try:
            for chunk in stream:
                chunks.append(chunk)
        except turnout.ProviderError as error:
            return chunks, error
        return chunks, stream.response


def stream_async(deps, transport) -> tuple[list[turnout.ChatChunk], Any]:
    async def main() -> tuple[list[turnout.ChatChunk], Any]:
        chunks: list[turnout.ChatChunk] = []
        async with (
            turnout.AsyncRouter(deps, transport=transport) as router,
            router.stream(HI) as stream,
        ):
            try:
                async for chunk in stream:
                    chunks.append(chunk)
            except turnout.ProviderError as error:
                return chunks, error
            return chunks, stream.response

    return asyncio.run(main())


CHAT = pytest.mark.parametrize("chat", [chat_sync, chat_async], ids=["sync", "async"])
STREAM = pytest.mark.parametrize("stream", [stream_sync, stream_async], ids=["sync", "async"])


@CHAT
def test_one_call_is_one_job(chat, emulator, script):
    transport = mock_transport({HOST: emulator}, script)
    response = chat([deployment()], transport, temperature=0.3, max_tokens=50, stop="END")
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == "echo: hello there world"
    assert response.finish_reason == "stop"
    assert response.provider == "litellm"
    assert response.deployment == "lite"
    # tokens_used only (5 prompt + 4 words, as the emulator counts): the parts are unknown.
    assert response.usage == turnout.Usage(None, None, 9)
    assert response.model == "ChatAgent"
    assert response.request_id in emulator.jobs
    assert emulator.job(response.request_id).status == "COMPLETED"
    assert paths(script) == ["create-and-call"]
    (sent,) = script.requests
    assert sent.bearer() == KEY
    assert sent.json() == {
        "team_id": TEAM,
        "job_type": "turnout",
        "model": "ChatAgent",
        "messages": HI,
        "temperature": 0.3,
        "max_tokens": 50,
        "stop": ["END"],
    }


@CHAT
def test_a_retried_call_is_a_new_create_and_call(chat, emulator):
    # The server's own crash is retried (a wrapped upstream failure is not:
    # test_wrapped_failures.py).
    script = jobs({"create-and-call": [Fault(error="plain_500")] * 2})
    response = chat([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(response, turnout.ChatResponse)
    assert kinds(response.attempts) == ["server_error", "server_error", None]
    assert paths(script) == ["create-and-call"] * 3


@CHAT
def test_per_endpoint_timeout_on_the_wire(chat, emulator, script):
    recording = Recording(mock_transport({HOST: emulator}, script))
    chat([deployment()], recording)
    assert recording.seen == [("/api/jobs/create-and-call", 60.0)]


def test_stream_timeout_on_the_wire(emulator, script):
    recording = Recording(mock_transport({HOST: emulator}, script))
    stream_sync([deployment()], recording)
    assert recording.seen == [("/api/jobs/create-and-call-stream", 120.0)]


# -- streams -----------------------------------------------------------------------


@STREAM
@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5", "gemini/flash"])
def test_streams_in_every_frame_shape(stream, emulator, script, model):
    chunks, response = stream([deployment(model=model)], mock_transport({HOST: emulator}, script))
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == "echo: hello there world"
    assert "".join(c.delta for c in chunks) == "echo: hello there world"
    assert response.finish_reason == "stop"
    assert paths(script) == ["create-and-call-stream"]
    (job,) = emulator.jobs.values()
    assert job.status == "COMPLETED"


def frames_transport(*frames: bytes, content_type: str = "text/event-stream") -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=b"".join(frames))

    return httpx.MockTransport(handler)


def data(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {text}\n\n".encode()


def openai(text: str, finish: str | None = None) -> bytes:
    return data({"choices": [{"delta": {"content": text} if text else {}, "finish_reason": finish}]})


@STREAM
def test_clean_close_without_done_or_finish_reason_is_a_normal_end(stream):
    transport = frames_transport(b": keepalive\n\n", openai("a"), openai("b"))
    _chunks, response = stream([deployment()], transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == "ab"
    assert response.finish_reason is None


@STREAM
def test_empty_stream_is_an_empty_answer(stream):
    chunks, response = stream([deployment()], frames_transport(b": keepalive\n\n"))
    assert chunks == []
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == ""


@STREAM
def test_an_error_frame_after_text_has_no_status_and_fails_the_job(stream, emulator):
    script = jobs({"create-and-call-stream": [Fault(stream_error="upstream_503", stream_error_after=2)]})
    _chunks, error = stream([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert error.status is None
    (job,) = emulator.jobs.values()
    assert job.status == "FAILED"


@STREAM
@pytest.mark.parametrize(
    ("frame_error", "kind"),
    [
        ("upstream_429", "rate_limited"),
        ("upstream_cut", "upstream_error"),
        ("anthropic_overloaded", "unavailable"),
    ],
)
def test_error_frame_before_any_text_is_not_repeated(stream, emulator, frame_error, kind):
    # The call may have run (and been charged): never sent to the same deployment again
    # (the router falls back when it can: test_stream_errors.py).
    script = jobs({"create-and-call-stream": [Fault(stream_error=frame_error)]})
    _chunks, error = stream([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, turnout.ProviderError)
    assert kinds(error.attempts) == [kind]
    assert paths(script) == ["create-and-call-stream"]


@STREAM
def test_error_frame_with_an_object(stream):
    transport = frames_transport(
        openai("a"), data({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})
    )
    _chunks, error = stream([deployment()], transport)
    assert isinstance(error, turnout.RateLimitError)
    assert error.partial_text == "a"
    assert error.message == "Rate limit reached"


@STREAM
def test_whole_json_answer_to_a_stream_is_one_chunk(stream):
    body = {
        "job_id": "j1",
        "status": "completed",
        "response": {"content": "all at once", "finish_reason": "stop"},
        "metadata": {"tokens_used": 3},
    }
    transport = frames_transport(json.dumps(body).encode(), content_type="application/json")
    chunks, response = stream([deployment()], transport)
    assert [c.delta for c in chunks] == ["all at once"]
    assert response.content == "all at once"
