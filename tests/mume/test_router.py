"""What is Mume's own through turnout's routers (sync and asyncio), on the emulator mounted
as an httpx transport: every error of its table raised as its kind and repeated as its
policy says, the `reqId` of its error chunks, and a `[retry]` table over its policy.

The router's behaviour (retries, fallbacks, streams, hostile bodies, keys) is tested once,
over a generic provider, in tests/core/test_router_*.py and tests/core/test_secrets.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import turnout
from turnout import ErrorKind
from turnout.emulation import Fault, mock_transport
from turnout_mume.emulator import MumeEmulator

from .helpers import BASE_URL, HI, KEY, MODEL, adrain, documented_kind, drain

K = ErrorKind
# Kinds Mume's policy repeats (twice) on the same deployment.
RETRIED = {K.TIMEOUT, K.RATE_LIMITED, K.SERVER_ERROR, K.UPSTREAM_ERROR, K.UNAVAILABLE, K.CONNECTION}


def kinds(attempts: Any) -> list[str | None]:
    return [a.error.kind.value if a.error else None for a in attempts]


ALL_ERRORS = [*MumeEmulator().error_names(), "408", "409", "422", "502", "504"]


# -- the default base URL (the codec) ---------------------------------------------


def test_default_base_url_is_mumes_public_one() -> None:
    assert turnout.Deployment("m", "mume", MODEL).base_url is None
    from turnout_mume.provider import Mume

    assert Mume().base_url(turnout.Deployment("m", "mume", MODEL)) == "https://mume.ai/api/v1"
    request = Mume().request(
        turnout.Deployment("m", "mume", MODEL, api_key=KEY), turnout.ChatRequest(HI), stream=False
    )
    assert request.url == "https://mume.ai/api/v1/chat/completions"


# -- every error of Mume's table, repeated as Mume's policy says ---------------------


@pytest.mark.parametrize("name", ALL_ERRORS)
def test_every_error_is_raised_as_its_kind(make_router: Callable[..., turnout.Router], name: str) -> None:
    kind = documented_kind(name)
    with pytest.raises(turnout.ProviderError) as info:
        make_router(Fault(error=name)).chat(HI)
    err = info.value
    assert type(err) is turnout.KIND_RULES[kind].exception
    assert err.deployment == "mume"
    assert err.provider == "mume"
    # Mume's policy: what it retries is tried three times, the rest once.
    assert len(err.attempts) == (3 if kind in RETRIED else 1)
    assert all(a.error is not None and a.error.kind is kind for a in err.attempts)


def sse_transport(frames: list[bytes], headers: dict[str, str] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        all_headers = {"content-type": "text/event-stream", **(headers or {})}
        return httpx.Response(200, headers=all_headers, content=b"".join(frames))

    return httpx.MockTransport(handler)


def chunk(text: str) -> bytes:
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def test_reqid_wins_over_the_streams_header(make_router: Callable[..., turnout.Router]) -> None:
    frames = [
        chunk("Hel"),
        chunk("lo"),
        b'data: {"error": {"message": "Provider returned error", "code": 502}, "reqId": "mume-frame-9"}\n\n',
    ]
    router = make_router(transport=sse_transport(frames, {"x-request-id": "header-id"}))
    received: list[str] = []
    with router.stream(HI) as stream, pytest.raises(turnout.UpstreamError) as info:
        drain(stream, received)
    assert received == ["Hel", "lo"]
    assert info.value.request_id == "mume-frame-9"
    assert info.value.partial_text == "Hello"
    assert info.value.status == 502


async def test_reqid_wins_over_the_streams_header_async(
    make_async_router: Callable[..., turnout.AsyncRouter],
) -> None:
    frames = [chunk("Hi"), b'data: {"error": {"message": "boom"}, "reqId": "mume-frame-10"}\n\n']
    router = make_async_router(transport=sse_transport(frames, {"x-request-id": "header-id"}))
    with pytest.raises(turnout.UpstreamError) as info:
        await adrain(router, [])
    assert info.value.request_id == "mume-frame-10"
    assert info.value.partial_text == "Hi"
    assert info.value.status is None


def test_a_null_error_field_in_chunks_is_not_an_error(make_router: Callable[..., turnout.Router]) -> None:
    frames = [
        b'data: {"choices": [{"index": 0, "delta": {"content": "ok"}}], "error": null}\n\n',
        b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "error": null}\n\n',
        b"data: [DONE]\n\n",
    ]
    with make_router(transport=sse_transport(frames)).stream(HI) as stream:
        assert "".join(c.delta for c in stream) == "ok"


def test_a_retry_table_adjusts_mumes_policy(
    plugins: turnout.Plugins, emulator: MumeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUME_API_KEY", KEY)
    config = {
        "deployments": [
            {
                "name": "mume",
                "provider": "mume",
                "model": MODEL,
                "api_key": "env:MUME_API_KEY",
                "base_url": BASE_URL,
                "retry": {"max_retries": 1, "base": 0.001, "cap": 0.001},
            }
        ]
    }

    def attempts(name: str, cls: type[turnout.ProviderError]) -> int:
        transport = mock_transport({"mume.test": emulator}, Fault(error=name))
        with (
            turnout.Router.from_config(config, plugins=plugins, transport=transport) as router,
            pytest.raises(cls) as info,
        ):
            router.chat(HI)
        return len(info.value.attempts)

    assert attempts("503", turnout.ServiceUnavailableError) == 2  # one retry, as the table says
    assert attempts("409", turnout.BadRequestError) == 1  # the kinds retried are still Mume's
