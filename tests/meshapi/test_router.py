"""MeshAPI through turnout.Router and turnout.AsyncRouter, on the emulator.

Every test runs with both routers (`mode`): they must make the same decisions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

import turnout
from turnout import ChatChunk, ChatResponse, Deployment
from turnout.emulation import Fault, mock_transport
from turnout_meshapi.emulator import MeshAPIEmulator

from .helpers import DOCUMENTED, HI, KEY, MODEL, Script, deployment, transport


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def chat(
    mode: str, deployments: Sequence[Deployment], tx: httpx.MockTransport, **kw: Any
) -> ChatResponse | turnout.ProviderError:
    """One chat call; the response, or the error the router raised."""
    try:
        if mode == "sync":
            with turnout.Router(deployments, transport=tx, **kw) as router:
                return router.chat(HI)
        async with turnout.AsyncRouter(deployments, transport=tx, **kw) as arouter:
            return await arouter.chat(HI)
    except turnout.ProviderError as error:
        return error


async def stream(
    mode: str, deployments: Sequence[Deployment], tx: httpx.MockTransport
) -> tuple[list[ChatChunk], turnout.ProviderError | None, Any]:
    """One streamed call: the chunks received, the error raised from the iterator (if
    any) and the stream object (for .response / .attempts)."""
    chunks: list[ChatChunk] = []
    if mode == "sync":
        with turnout.Router(deployments, transport=tx) as router, router.stream(HI) as sync_stream:
            try:
                for chunk in sync_stream:
                    chunks.append(chunk)
            except turnout.ProviderError as error:
                return chunks, error, sync_stream
            return chunks, None, sync_stream
    async with (
        turnout.AsyncRouter(deployments, transport=tx) as arouter,
        arouter.stream(HI) as async_stream,
    ):
        try:
            async for chunk in async_stream:
                chunks.append(chunk)
        except turnout.ProviderError as error:
            return chunks, error, async_stream
        return chunks, None, async_stream


def outcome(attempts: Sequence[turnout.Attempt]) -> list[tuple[str, str | None]]:
    return [(a.deployment, a.error.kind.value if a.error else None) for a in attempts]


# -- working gateway -------------------------------------------------------------


async def test_chat(mode: str) -> None:
    script = Script()
    response = await chat(mode, [deployment()], transport(script))
    assert isinstance(response, ChatResponse)
    assert response.content == "echo: hi"
    assert response.finish_reason == "stop"
    assert response.provider == "meshapi"
    assert response.deployment == "mesh"
    assert response.request_id == "req_meshapi_000001"
    assert response.usage is not None
    assert response.usage.total_tokens > 0
    (sent,) = script.seen
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(sent.body)
    assert body["model"] == MODEL
    assert body["messages"] == HI
    assert "stream" not in body


async def test_the_default_base_url_is_meshapis(mode: str) -> None:
    script = Script()
    tx = mock_transport({"api.meshapi.ai": MeshAPIEmulator()}, script)
    dep = turnout.Deployment("mesh", "meshapi", MODEL, api_key=KEY)
    response = await chat(mode, [dep], tx)
    assert isinstance(response, ChatResponse)
    assert script.hosts() == ["api.meshapi.ai"]
    assert script.seen[0].path == "/v1/chat/completions"


async def test_stream(mode: str) -> None:
    script = Script()
    chunks, error, result = await stream(mode, [deployment()], transport(script))
    assert error is None
    assert "".join(c.delta for c in chunks) == "echo: hi"
    assert chunks[-1].finish_reason == "stop"
    assert result.response is not None
    assert result.response.content == "echo: hi"
    assert json.loads(script.seen[0].body)["stream"] is True
    assert script.seen[0].headers["accept"] == "text/event-stream"


async def test_a_missing_key_is_unauthorized(mode: str) -> None:
    result = await chat(mode, [deployment(api_key=None)], transport(Script()))
    assert isinstance(result, turnout.AuthenticationError)
    assert result.code == "unauthorized"


# -- retries and fallbacks (non-streaming) ----------------------------------------


async def test_a_429_is_retried_after_its_retry_after(mode: str) -> None:
    script = Script({"mesh.test": [Fault(error="rate_limit_exceeded", retry_after=0.003)]})
    response = await chat(mode, [deployment()], transport(script))
    assert isinstance(response, ChatResponse)
    assert outcome(response.attempts) == [("mesh", "rate_limited"), ("mesh", None)]
    assert response.attempts[1].waited == 0.003  # the server's hint, above the (ms) backoff
    first = response.attempts[0].error
    assert first is not None
    assert first.retry_after == 0.003
    assert first.request_id is not None


@pytest.mark.parametrize("fault", [Fault(html=502), Fault(html=503), Fault(error="504")])
async def test_gateway_statuses_are_retried(mode: str, fault: Fault) -> None:
    script = Script({"mesh.test": [fault, fault]})
    response = await chat(mode, [deployment()], transport(script))
    assert isinstance(response, ChatResponse)
    assert [a.deployment for a in response.attempts] == ["mesh"] * 3
    assert response.attempts[-1].error is None


async def test_retries_stop_after_three(mode: str) -> None:
    script = Script({"mesh.test": [Fault(html=503)] * 10})
    error = await chat(mode, [deployment()], transport(script))
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert len(error.attempts) == 4
    assert len(script.seen) == 4


@pytest.mark.parametrize("code", ["upstream_error", "gateway_timeout", "internal_error"])
async def test_a_500_is_not_retried_but_falls_back(mode: str, code: str) -> None:
    script = Script({"mesh.test": [Fault(error=code)]})
    alone = await chat(mode, [deployment()], transport(script))
    assert isinstance(alone, turnout.ProviderError)
    assert (alone.kind, alone.status, alone.code) == (DOCUMENTED[code][1], 500, code)
    assert len(alone.attempts) == 1

    script = Script({"mesh.test": [Fault(error=code)]})
    response = await chat(mode, [deployment(), deployment("backup")], transport(script))
    assert isinstance(response, ChatResponse)
    assert outcome(response.attempts) == [("mesh", DOCUMENTED[code][1]), ("backup", None)]


@pytest.mark.parametrize("code", ["unauthorized", "forbidden", "spend_limit_exceeded", "model_not_found"])
async def test_account_and_model_errors_fall_back_at_once(mode: str, code: str) -> None:
    script = Script({"mesh.test": [Fault(error=code)]})
    response = await chat(mode, [deployment(), deployment("backup")], transport(script))
    assert isinstance(response, ChatResponse)
    assert outcome(response.attempts) == [("mesh", DOCUMENTED[code][1]), ("backup", None)]
    assert script.hosts() == ["mesh.test", "backup.test"]


@pytest.mark.parametrize("code", ["validation_error", "unprocessable_entity", "not_found"])
async def test_request_errors_neither_retry_nor_fall_back(mode: str, code: str) -> None:
    script = Script({"mesh.test": [Fault(error=code)]})
    error = await chat(mode, [deployment(), deployment("backup")], transport(script))
    assert isinstance(error, turnout.ProviderError)
    assert error.kind == DOCUMENTED[code][1]
    assert script.hosts() == ["mesh.test"]
    if code != "not_found":
        assert error.details  # the emulator's field errors came through


async def test_a_malformed_completion_is_a_parse_error(mode: str) -> None:
    script = Script({"mesh.test": [Fault(malformed=True)]})
    response = await chat(mode, [deployment(), deployment("backup")], transport(script))
    assert isinstance(response, ChatResponse)
    assert outcome(response.attempts) == [("mesh", "parse_error"), ("backup", None)]


async def test_a_deeply_nested_body_is_a_parse_error(mode: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=b"[" * 100_000)

    error = await chat(mode, [deployment()], httpx.MockTransport(handler))
    assert isinstance(error, turnout.ResponseParseError)


# -- streams ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    ["rate_limit_exceeded", "upstream_error", "internal_error", "spend_limit_exceeded", "gateway_timeout"],
)
async def test_a_mid_stream_error_frame_raises_from_the_iterator(mode: str, code: str) -> None:
    script = Script({"mesh.test": [Fault(stream_error=code, stream_error_after=1)]})
    chunks, error, result = await stream(mode, [deployment(), deployment("backup")], transport(script))
    assert [c.delta for c in chunks] == ["echo: "]
    assert error is not None
    assert error.kind == DOCUMENTED[code][1]
    assert error.code == code
    assert error.status == DOCUMENTED[code][0]
    assert error.partial_text == "echo: "
    assert error.deployment == "mesh"
    assert error.request_id == "req_meshapi_000001"
    assert script.hosts() == ["mesh.test"]  # text reached the caller: no fallback
    assert outcome(result.attempts) == [("mesh", DOCUMENTED[code][1])]


async def test_a_mid_stream_frame_by_kind(mode: str) -> None:
    script = Script({"mesh.test": [Fault(stream_error="rate_limited", stream_error_after=1)]})
    _, error, _ = await stream(mode, [deployment()], transport(script))
    assert isinstance(error, turnout.RateLimitError)
    assert error.code == "rate_limit_exceeded"


async def test_an_error_frame_before_any_text_falls_back_without_retrying(mode: str) -> None:
    script = Script({"mesh.test": [Fault(stream_error="rate_limit_exceeded", stream_error_after=0)]})
    chunks, error, result = await stream(mode, [deployment(), deployment("backup")], transport(script))
    assert error is None
    assert "".join(c.delta for c in chunks) == "echo: hi"
    assert outcome(result.attempts) == [("mesh", "rate_limited"), ("backup", None)]
    assert script.hosts() == ["mesh.test", "backup.test"]


async def test_a_dropped_stream_is_stream_interrupted(mode: str) -> None:
    script = Script({"mesh.test": [Fault(drop_after=1)]})
    chunks, error, _ = await stream(mode, [deployment(), deployment("backup")], transport(script))
    assert [c.delta for c in chunks] == ["echo: "]
    assert isinstance(error, turnout.StreamInterruptedError)
    assert error.partial_text == "echo: "
    assert script.hosts() == ["mesh.test"]


async def test_a_stream_dropped_before_any_text_falls_back(mode: str) -> None:
    script = Script({"mesh.test": [Fault(drop_after=0)]})
    chunks, error, result = await stream(mode, [deployment(), deployment("backup")], transport(script))
    assert error is None
    assert "".join(c.delta for c in chunks) == "echo: hi"
    assert outcome(result.attempts) == [("mesh", "stream_interrupted"), ("backup", None)]


async def test_a_stream_is_never_retried(mode: str) -> None:
    script = Script({"mesh.test": [Fault(error="rate_limit_exceeded", retry_after=0.001), None]})
    chunks, error, _ = await stream(mode, [deployment()], transport(script))
    assert chunks == []
    assert isinstance(error, turnout.RateLimitError)
    assert error.status == 429
    assert len(error.attempts) == 1
    assert len(script.seen) == 1


async def test_a_stream_that_ends_without_done_is_interrupted(mode: str) -> None:
    frame = b'data: {"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": null}]}\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frame)

    chunks, error, _ = await stream(mode, [deployment()], httpx.MockTransport(handler))
    assert [c.delta for c in chunks] == ["half"]
    assert isinstance(error, turnout.StreamInterruptedError)
    assert error.partial_text == "half"


# -- the key ------------------------------------------------------------------------


async def test_the_key_never_shows(mode: str) -> None:
    script = Script(
        {"mesh.test": [Fault(error="unauthorized")], "backup.test": [Fault(error="internal_error")]}
    )
    deps = [deployment(), deployment("backup")]
    error = await chat(mode, deps, transport(script))
    assert isinstance(error, turnout.ProviderError)
    assert [r.headers["authorization"] for r in script.seen] == [f"Bearer {KEY}", f"Bearer {deps[1].key()}"]
    texts = [repr(error), str(error), repr(error.attempts), str(error.attempts)]
    texts += [repr(d) for d in deps] + [str(d) for d in deps]
    texts += [repr(a) + str(a) + repr(a.error) + str(a.error) for a in error.attempts]
    for secret in (KEY, deps[1].key()):
        assert secret is not None
        assert all(secret not in text for text in texts)


async def test_a_key_echoed_by_the_gateway_is_redacted(mode: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        body = {"error": {"code": "unauthorized", "message": f"Invalid API key: {key}"}}
        return httpx.Response(401, json=body, headers={"x-request-id": "req_echo"})

    error = await chat(mode, [deployment()], httpx.MockTransport(handler))
    assert isinstance(error, turnout.AuthenticationError)
    assert error.message.startswith("Invalid API key")
    for text in (repr(error), str(error), error.message, repr(error.attempts)):
        assert KEY not in text


async def test_the_plugins_policy_applies_by_default(mode: str) -> None:
    # turnout's generic policy would repeat a server_error; MeshAPI's never repeats a 500.
    script = Script({"mesh.test": [Fault(error="internal_error")]})
    error = await chat(mode, [deployment(retry_policy=None)], transport(script))
    assert isinstance(error, turnout.InternalServerError)
    assert len(script.seen) == 1
    assert len(error.attempts) == 1
