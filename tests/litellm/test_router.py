"""Router calls end to end over the emulator: one call is one job (create-and-call)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import Fault, mock_transport
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import BASE, HI, HOST, KEY, TEAM, Recording, Script, deployment


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
    assert response.usage == turnout.Usage(0, 0, 9)  # 5 prompt + 4 words, as the emulator counts
    assert response.model == "ChatAgent"
    assert response.request_id in emulator.jobs
    assert emulator.job(response.request_id).status == "completed"
    assert script.paths() == ["create-and-call"]
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
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(error="429"), "rate_limited"),
        (Fault(error="upstream_429"), "rate_limited"),
        (Fault(error="500"), "server_error"),
        (Fault(error="plain_500"), "server_error"),
        (Fault(error="503"), "unavailable"),
        (Fault(error="upstream_502"), "upstream_error"),
    ],
)
def test_retryable_failures_are_retried_then_succeed(chat, emulator, fault, kind):
    script = Script({"create-and-call": [fault, fault]})
    response = chat([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(response, turnout.ChatResponse)
    assert kinds(response.attempts) == [kind, kind, None]
    assert script.paths() == ["create-and-call"] * 3


@CHAT
def test_three_attempts_at_most(chat, emulator):
    script = Script({"create-and-call": [Fault(error="upstream_429")] * 5})
    error = chat([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, turnout.RateLimitError)
    assert error.status == 500
    assert kinds(error.attempts) == ["rate_limited"] * 3


@CHAT
@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("credits", turnout.InsufficientCreditsError),
        ("team_suspended", turnout.PermissionDeniedError),
        ("401", turnout.AuthenticationError),
        ("validation_v2", turnout.ValidationError),
        ("400", turnout.BadRequestError),
        ("404", turnout.NotFoundError),
    ],
)
def test_client_errors_are_not_retried(chat, emulator, name, cls):
    script = Script({"create-and-call": [Fault(error=name)]})
    error = chat([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, cls)
    assert len(error.attempts) == 1
    assert script.paths() == ["create-and-call"]


@CHAT
def test_insufficient_credits_falls_back_to_the_next_deployment(chat):
    poor, rich = LiteLLMEmulator(credits=0), LiteLLMEmulator()
    transport = mock_transport({"poor.test": poor, "rich.test": rich})
    deps = [
        deployment("poor", base_url="https://poor.test/api"),
        deployment("rich", base_url="https://rich.test/api"),
    ]
    response = chat(deps, transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "rich"
    assert kinds(response.attempts) == ["insufficient_credits", None]
    assert rich.credits_remaining == 999


@CHAT
def test_validation_does_not_fall_back(chat, emulator):
    other = LiteLLMEmulator()
    transport = mock_transport({HOST: emulator, "other.test": other}, Fault(error="validation_v1"))
    deps = [deployment("a"), deployment("b", base_url="https://other.test/api")]
    error = chat(deps, transport)
    assert isinstance(error, turnout.ValidationError)
    assert error.details[0].field == "body.messages"
    assert [a.deployment for a in error.attempts] == ["a"]


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
    assert script.paths() == ["create-and-call-stream"]
    (job,) = emulator.jobs.values()
    assert job.status == "completed"


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
def test_keepalive_comments_are_ignored(stream):
    transport = frames_transport(
        b": keepalive\n\n",
        openai("a"),
        b": keepalive\n\n",
        b": another comment\n\n",
        openai("b"),
        data("[DONE]"),
    )
    chunks, response = stream([deployment()], transport)
    assert [c.delta for c in chunks] == ["a", "b"]
    assert response.content == "ab"


@STREAM
def test_done_ends_the_stream_even_if_more_follows(stream):
    transport = frames_transport(openai("a"), data("[DONE]"), openai("never"))
    _chunks, response = stream([deployment()], transport)
    assert response.content == "a"


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
def test_mid_stream_error_frame_after_text_is_raised_with_partial_text(stream, emulator):
    script = Script({"create-and-call-stream": [Fault(stream_error="upstream_503", stream_error_after=2)]})
    chunks, error = stream([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert error.status is None
    assert error.partial_text == "echo: hello "
    assert [c.delta for c in chunks] == ["echo: ", "hello "]
    assert len(error.attempts) == 1  # committed: no retry, no fallback
    (job,) = emulator.jobs.values()
    assert job.status == "failed"


@STREAM
@pytest.mark.parametrize(
    ("frame_error", "kind"),
    [("upstream_429", "rate_limited"), ("text", "upstream_error"), ("anthropic_overloaded", "unavailable")],
)
def test_error_frame_before_any_text_is_retried(stream, emulator, frame_error, kind):
    script = Script({"create-and-call-stream": [Fault(stream_error=frame_error)]})
    _chunks, response = stream([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == "echo: hello there world"
    assert kinds(response.attempts) == [kind, None]


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
def test_broken_transfer_is_stream_interrupted(stream, emulator):
    script = Script({"create-and-call-stream": [Fault(drop_after=2)]})
    _chunks, error = stream([deployment()], mock_transport({HOST: emulator}, script))
    assert isinstance(error, turnout.StreamInterruptedError)
    assert error.partial_text == "echo: hello "


@STREAM
def test_broken_transfer_before_any_text_falls_back(stream):
    broken = LiteLLMEmulator()
    good = LiteLLMEmulator()

    def faults(request):
        return Fault(drop_after=0) if request.headers.get("host") == "broken.test" else None

    transport = mock_transport({"broken.test": broken, "good.test": good}, faults)
    deps = [
        deployment("broken", base_url="https://broken.test/api"),
        deployment("good", base_url="https://good.test/api", model="anthropic/claude"),
    ]
    _chunks, response = stream(deps, transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "good"
    assert kinds(response.attempts) == ["stream_interrupted", None]


@STREAM
def test_refused_stream_is_normalized_from_its_body(stream, emulator):
    chunks, error = stream([deployment()], mock_transport({HOST: emulator}, Fault(error="credits")))
    assert isinstance(error, turnout.InsufficientCreditsError)
    assert error.status == 403
    assert chunks == []


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


@STREAM
def test_non_event_body_to_a_stream_is_a_parse_error(stream):
    transport = frames_transport(b"<html>proxy page</html>", content_type="text/html")
    _chunks, error = stream([deployment(retry_policy=turnout.RetryPolicy(max_retries=0))], transport)
    assert isinstance(error, turnout.ResponseParseError)


@STREAM
def test_a_frame_that_is_not_json_is_a_parse_error(stream):
    transport = frames_transport(openai("a"), b"data: {broken\n\n")
    _chunks, error = stream([deployment()], transport)
    assert isinstance(error, turnout.ResponseParseError)
    assert error.partial_text == "a"


# -- hostile bodies through the router ------------------------------------------------


def body_transport(status: int, body: bytes, content_type: str = "application/json") -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return httpx.MockTransport(handler)


NO_RETRY = turnout.RetryPolicy(max_retries=0)


@CHAT
@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, b"<html><title>502 Bad Gateway</title></html>", turnout.UpstreamError),
        (500, b"", turnout.InternalServerError),
        (500, b"\x89PNG\r\n\x1a\n\x00\x00binary", turnout.InternalServerError),
        (500, b'[{"detail": "a list"}]', turnout.InternalServerError),
        (500, b"x" * (5 * 1024 * 1024), turnout.InternalServerError),
        (200, b"x" * (5 * 1024 * 1024), turnout.ResponseParseError),
        (200, b"<html>login page</html>", turnout.ResponseParseError),
        (200, b"", turnout.ResponseParseError),
        (200, b"[]", turnout.ResponseParseError),
        (302, b"", turnout.UpstreamError),
    ],
    ids=[
        "html-502",
        "empty-500",
        "binary-500",
        "list-500",
        "5mb-500",
        "5mb-200",
        "html-200",
        "empty-200",
        "list-200",
        "redirect-302",
    ],
)
def test_hostile_bodies_through_the_router(chat, status, body, cls):
    error = chat([deployment(retry_policy=NO_RETRY)], body_transport(status, body))
    assert isinstance(error, cls)
    assert len(error.message) <= 500


# -- keys ------------------------------------------------------------------------------


def test_key_never_in_repr_or_str():
    dep = deployment()
    assert KEY not in repr(dep)
    assert KEY not in str(dep)

    def echo_key(request: httpx.Request) -> httpx.Response:
        # A gateway that quotes the key it rejected.
        auth = request.headers["authorization"]
        return httpx.Response(401, json={"detail": f"Invalid API key: {auth}"})

    error = chat_sync([dep], httpx.MockTransport(echo_key))
    assert isinstance(error, turnout.AuthenticationError)
    for text in (str(error), repr(error), repr(error.attempts), error.message):
        assert KEY not in text


def test_key_goes_only_to_its_own_base_url():
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        if request.url.host == "a.test":
            return httpx.Response(503, json={"detail": "down"})
        return httpx.Response(
            200, json={"job_id": "j", "response": {"content": "ok", "finish_reason": "stop"}, "metadata": {}}
        )

    deps = [
        deployment("a", base_url="https://a.test/api", api_key="sk-key-for-a-000000", retry_policy=NO_RETRY),
        deployment("b", base_url="https://b.test/api", api_key="sk-key-for-b-000000"),
    ]
    response = chat_sync(deps, httpx.MockTransport(handler))
    assert response.content == "ok"
    assert seen == {"a.test": "Bearer sk-key-for-a-000000", "b.test": "Bearer sk-key-for-b-000000"}


def test_base_url_path_is_kept():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"job_id": "j", "response": {"content": "ok"}, "metadata": {}})

    chat_sync([deployment(base_url=BASE + "/")], httpx.MockTransport(handler))
    assert seen == [f"{BASE}/jobs/create-and-call"]
