"""Mume through turnout's routers (sync and asyncio), on the emulator mounted as an
httpx transport: completions, streams, mid-stream error chunks, retries, fallbacks,
hostile bodies and the key's confinement."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import turnout
from turnout import ErrorKind, OpenAICompatible
from turnout.emulation import EmulatedRequest, Fault, mock_transport
from turnout_mume.emulator import MumeEmulator

from .helpers import BASE_URL, FAST, HI, KEY, MODEL, adrain, documented_kind, drain, mume_deployment, scripted

K = ErrorKind
ANSWER = "echo: hello there"
# Kinds Mume's policy repeats (twice) on the same deployment.
RETRIED = {K.TIMEOUT, K.RATE_LIMITED, K.SERVER_ERROR, K.UPSTREAM_ERROR, K.UNAVAILABLE, K.CONNECTION}


def kinds(attempts: Any) -> list[str | None]:
    return [a.error.kind.value if a.error else None for a in attempts]


ALL_ERRORS = [*MumeEmulator().error_names(), "408", "409", "422", "502", "504"]


# -- completions -------------------------------------------------------------


def test_chat(make_router: Callable[..., turnout.Router]) -> None:
    response = make_router().chat(HI)
    assert response.content == ANSWER
    assert response.finish_reason == "stop"
    assert response.usage == turnout.Usage(5, 3, 8, cached_tokens=0, reasoning_tokens=0)
    assert response.model == MODEL
    assert response.deployment == "mume"
    assert response.provider == "mume"
    assert response.request_id == "req_mume_000001"
    assert kinds(response.attempts) == [None]


async def test_async_chat(make_async_router: Callable[..., turnout.AsyncRouter]) -> None:
    response = await make_async_router().chat(HI, temperature=0.2)
    assert response.content == ANSWER
    assert response.provider == "mume"
    assert kinds(response.attempts) == [None]


def test_the_request_mume_receives(plugins: turnout.Plugins) -> None:
    seen: list[httpx.Request] = []
    inner = mock_transport({"mume.test": MumeEmulator()})

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    deployment = mume_deployment(options={"params": {"max_tokens": 64}, "headers": {"X-Title": "app"}})
    with turnout.Router([deployment], plugins=plugins, transport=httpx.MockTransport(handler)) as router:
        router.chat(HI, temperature=0.5)
        with router.stream(HI) as stream:
            assert "".join(c.delta for c in stream) == ANSWER
    plain, streamed = seen
    assert str(plain.url) == "https://mume.test/api/v1/chat/completions"
    assert plain.method == "POST"
    assert plain.headers["authorization"] == f"Bearer {KEY}"
    assert plain.headers["x-title"] == "app"
    body = json.loads(plain.content)
    assert body == {"model": MODEL, "messages": HI, "max_tokens": 64, "temperature": 0.5}
    assert json.loads(streamed.content)["stream"] is True
    assert streamed.headers["accept"] == "text/event-stream"


def test_default_base_url_is_mumes_public_one() -> None:
    assert turnout.Deployment("m", "mume", MODEL).base_url is None
    from turnout_mume.provider import Mume

    assert Mume().base_url(turnout.Deployment("m", "mume", MODEL)) == "https://mume.ai/api/v1"
    request = Mume().request(
        turnout.Deployment("m", "mume", MODEL, api_key=KEY), turnout.ChatRequest(HI), stream=False
    )
    assert request.url == "https://mume.ai/api/v1/chat/completions"


# -- every error through the router ------------------------------------------


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


@pytest.mark.parametrize("name", ALL_ERRORS)
async def test_every_error_is_raised_as_its_kind_async(
    make_async_router: Callable[..., turnout.AsyncRouter], name: str
) -> None:
    kind = documented_kind(name)
    with pytest.raises(turnout.ProviderError) as info:
        await make_async_router(Fault(error=name)).chat(HI)
    assert info.value.kind is kind
    assert len(info.value.attempts) == (3 if kind in RETRIED else 1)


def test_rate_limit_waits_retry_after_then_succeeds(make_router: Callable[..., turnout.Router]) -> None:
    router = make_router(scripted(Fault(error="rate_limit_exceeded", retry_after=0.01)))
    response = router.chat(HI)
    assert response.content == ANSWER
    assert kinds(response.attempts) == ["rate_limited", None]
    assert response.attempts[0].error is not None
    assert response.attempts[0].error.retry_after == 0.01
    assert response.attempts[1].waited == 0.01  # never less than the server asked


def test_a_deployment_without_a_key_is_refused(make_router: Callable[..., turnout.Router]) -> None:
    with pytest.raises(turnout.AuthenticationError) as info:
        make_router(deployments=[mume_deployment(api_key=None)]).chat(HI)
    assert info.value.status == 401
    assert len(info.value.attempts) == 1


def test_409_is_not_repeated_and_does_not_fall_back(make_router: Callable[..., turnout.Router]) -> None:
    router = make_router(
        Fault(error="409"),
        deployments=[mume_deployment("first"), mume_deployment("second", model="anthropic/claude-sonnet-4")],
    )
    with pytest.raises(turnout.BadRequestError) as info:
        router.chat(HI)
    assert info.value.status == 409
    assert [a.deployment for a in info.value.attempts] == ["first"]


def test_credits_exhausted_falls_back_to_another_deployment(
    make_router: Callable[..., turnout.Router],
) -> None:
    router = make_router(
        scripted(Fault(error="402")),
        deployments=[mume_deployment("first"), mume_deployment("second", model="anthropic/claude-sonnet-4")],
    )
    response = router.chat(HI)
    assert response.deployment == "second"
    assert kinds(response.attempts) == ["insufficient_credits", None]


def test_html_from_a_proxy_is_retried_like_its_status(make_router: Callable[..., turnout.Router]) -> None:
    response = make_router(scripted(Fault(html=502), Fault(html=503))).chat(HI)
    assert kinds(response.attempts) == ["upstream_error", "unavailable", None]


# -- streams -----------------------------------------------------------------


def test_stream(make_router: Callable[..., turnout.Router]) -> None:
    with make_router().stream(HI) as stream:
        deltas = [chunk.delta for chunk in stream]
    assert "".join(deltas) == ANSWER
    assert deltas[:2] == ["echo: ", "hello "]
    assert stream.response is not None
    assert stream.response.finish_reason == "stop"
    assert stream.response.deployment == "mume"


async def test_async_stream(make_async_router: Callable[..., turnout.AsyncRouter]) -> None:
    async with make_async_router().stream(HI) as stream:
        deltas = [chunk.delta async for chunk in stream]
    assert "".join(deltas) == ANSWER
    assert stream.response is not None
    assert stream.response.finish_reason == "stop"


MID_STREAM = [
    ("rate_limit_exceeded", turnout.RateLimitError, 429),
    ("context_length_exceeded", turnout.ContextLengthError, 400),
    ("503", turnout.ServiceUnavailableError, 503),
    ("402", turnout.InsufficientCreditsError, 402),
]


@pytest.mark.parametrize(("name", "cls", "status"), MID_STREAM)
def test_mid_stream_error_keeps_partial_text_and_reqid(
    make_router: Callable[..., turnout.Router], name: str, cls: type, status: int
) -> None:
    router = make_router(Fault(stream_error=name, stream_error_after=2))
    received: list[str] = []
    with router.stream(HI) as stream, pytest.raises(cls) as info:
        drain(stream, received)
    err = info.value
    assert received == ["echo: ", "hello "]
    assert err.partial_text == "echo: hello "
    assert err.request_id == "req_mume_000001"  # the frame's reqId
    assert err.status == status
    assert err.deployment == "mume"
    assert len(err.attempts) == 1  # a chunk reached the caller: never repeated


@pytest.mark.parametrize(("name", "cls", "status"), MID_STREAM)
async def test_mid_stream_error_keeps_partial_text_and_reqid_async(
    make_async_router: Callable[..., turnout.AsyncRouter], name: str, cls: type, status: int
) -> None:
    router = make_async_router(Fault(stream_error=name, stream_error_after=2))
    received: list[str] = []
    with pytest.raises(cls) as info:
        await adrain(router, received)
    err = info.value
    assert "".join(received) == err.partial_text == "echo: hello "
    assert err.request_id == "req_mume_000001"
    assert err.status == status
    assert len(err.attempts) == 1


def test_error_frame_before_any_text_is_retried_transparently(
    make_router: Callable[..., turnout.Router],
) -> None:
    router = make_router(scripted(Fault(stream_error="503", stream_error_after=0)))
    with router.stream(HI) as stream:
        text = "".join(chunk.delta for chunk in stream)
    assert text == ANSWER
    assert kinds(stream.attempts) == ["unavailable", None]
    assert stream.attempts[0].error is not None
    assert stream.attempts[0].error.request_id == "req_mume_000001"


async def test_error_frame_before_any_text_falls_back_async(
    make_async_router: Callable[..., turnout.AsyncRouter],
) -> None:
    router = make_async_router(
        scripted(Fault(stream_error="invalid_api_key", stream_error_after=0)),
        deployments=[mume_deployment("first"), mume_deployment("second")],
    )
    async with router.stream(HI) as stream:
        text = "".join([chunk.delta async for chunk in stream])
    assert text == ANSWER
    assert stream.deployment == "second"
    assert kinds(stream.attempts) == ["authentication", None]


@pytest.mark.parametrize("after", [1, 3])
def test_dropped_stream_is_interrupted_with_partial_text(
    make_router: Callable[..., turnout.Router], after: int
) -> None:
    received: list[str] = []
    with (
        make_router(Fault(drop_after=after)).stream(HI) as stream,
        pytest.raises(turnout.StreamInterruptedError) as info,
    ):
        drain(stream, received)
    assert info.value.partial_text == "".join(received)
    assert len(received) == after


async def test_dropped_stream_async(make_async_router: Callable[..., turnout.AsyncRouter]) -> None:
    with pytest.raises(turnout.StreamInterruptedError) as info:
        await adrain(make_async_router(Fault(drop_after=2)), [])
    assert info.value.partial_text == "echo: hello "


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


# -- hostile bodies through the router ----------------------------------------


def fixed(status: int, content: bytes, content_type: str = "application/json") -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(status, headers={"content-type": content_type}, content=content)
    )


@pytest.mark.parametrize(
    ("status", "content", "content_type", "kind"),
    [
        (200, b"<html><title>Login</title></html>", "text/html", K.PARSE_ERROR),
        (200, b"", "application/json", K.PARSE_ERROR),
        (200, bytes(range(256)), "application/octet-stream", K.PARSE_ERROR),
        (200, b'[{"choices": []}]', "application/json", K.PARSE_ERROR),
        (
            200,
            b'{"error": {"message": "late", "code": "rate_limit_exceeded"}}',
            "application/json",
            K.RATE_LIMITED,
        ),
        (503, b"", "text/plain", K.UNAVAILABLE),
        (500, bytes(range(256)) * 4, "application/octet-stream", K.SERVER_ERROR),
        (429, b'["not", "an", "envelope"]', "application/json", K.RATE_LIMITED),
        (401, b"x" * (5 * 1024 * 1024), "text/plain", K.AUTHENTICATION),
        (
            402,
            b'{"error": {"message": "' + b"y" * (5 * 1024 * 1024) + b'"}}',
            "application/json",
            K.INSUFFICIENT_CREDITS,
        ),
    ],
)
def test_hostile_bodies(
    make_router: Callable[..., turnout.Router],
    status: int,
    content: bytes,
    content_type: str,
    kind: ErrorKind,
) -> None:
    router = make_router(transport=fixed(status, content, content_type))
    with pytest.raises(turnout.ProviderError) as info:
        router.chat(HI)
    assert info.value.kind is kind
    assert len(info.value.message) <= 500


async def test_hostile_stream_body_async(make_async_router: Callable[..., turnout.AsyncRouter]) -> None:
    router = make_async_router(transport=fixed(200, b"<html>maintenance</html>", "text/html"))
    with pytest.raises(turnout.ResponseParseError):
        await adrain(router, [])


def test_a_stream_answered_with_a_whole_completion_is_one_chunk(
    make_router: Callable[..., turnout.Router],
) -> None:
    body = json.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "all at once"},
                    "finish_reason": "stop",
                }
            ]
        }
    ).encode()
    with make_router(transport=fixed(200, body)).stream(HI) as stream:
        assert [c.delta for c in stream] == ["all at once"]


# -- the key -----------------------------------------------------------------


def echoing_the_key(request: httpx.Request) -> httpx.Response:
    sent = request.headers["authorization"].removeprefix("Bearer ")
    body = {
        "error": {
            "message": f"Incorrect API key provided: {sent}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": None,
        }
    }
    return httpx.Response(401, json=body)


def test_the_key_never_appears_in_errors_or_reprs(make_router: Callable[..., turnout.Router]) -> None:
    deployment = mume_deployment()
    router = make_router(transport=httpx.MockTransport(echoing_the_key), deployments=[deployment])
    with pytest.raises(turnout.AuthenticationError) as info:
        router.chat(HI)
    err = info.value
    texts = [str(err), repr(err), err.message, repr(err.attempts), repr(deployment), str(deployment.api_key)]
    texts += [repr(router.deployments), repr(info.value.__dict__)]
    assert all(KEY not in text for text in texts)
    assert "***" in err.message
    from turnout_mume.provider import Mume

    request = Mume().request(deployment, turnout.ChatRequest(HI), stream=True)
    assert KEY not in repr(request)
    assert request.headers["authorization"] == f"Bearer {KEY}"  # ...but it is sent


async def test_the_key_never_appears_in_errors_async(
    make_async_router: Callable[..., turnout.AsyncRouter],
) -> None:
    router = make_async_router(transport=httpx.MockTransport(echoing_the_key))
    with pytest.raises(turnout.AuthenticationError) as info:
        await router.chat(HI)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


# -- Mume as a fallback (the docs' example) -------------------------------------


class OtherGateway(OpenAICompatible):
    """Stands in for another gateway (any OpenAI-compatible one) in front of Mume."""

    name = "othergw"
    default_base_url = "https://other.test/v1"


def by_path(faults: dict[str, Fault | None]) -> Callable[[EmulatedRequest], Fault | None]:
    def choose(request: EmulatedRequest) -> Fault | None:
        return next((f for prefix, f in faults.items() if request.path.startswith(prefix)), None)

    return choose


def by_model(faults: dict[str, Fault]) -> Callable[[EmulatedRequest], Fault | None]:
    def choose(request: EmulatedRequest) -> Fault | None:
        payload = request.json()
        return faults.get(payload.get("model")) if isinstance(payload, dict) else None

    return choose


CONFIG: dict[str, Any] = {
    "deadline": 60.0,
    "deployments": [
        {"name": "primary", "provider": "othergw", "model": "gpt-4.1-mini", "api_key": "env:OTHER_KEY"},
        {
            "name": "mume-gpt",
            "provider": "mume",
            "model": "openai/gpt-4.1-mini",
            "api_key": "env:MUME_API_KEY",
            "base_url": BASE_URL,
        },
        {
            "name": "mume-claude",
            "provider": "mume",
            "model": "anthropic/claude-sonnet-4",
            "api_key": "env:MUME_API_KEY",
            "base_url": BASE_URL,
        },
    ],
    "routes": {
        "chat": {"deployments": ["primary"], "fallbacks": ["mume"]},
        "mume": {"deployments": ["mume-gpt", "mume-claude"]},
    },
}


@pytest.fixture
def fallback_plugins(plugins: turnout.Plugins, monkeypatch: pytest.MonkeyPatch) -> turnout.Plugins:
    monkeypatch.setenv("OTHER_KEY", "sk-other-abcdef123456")
    monkeypatch.setenv("MUME_API_KEY", KEY)
    plugins.add_provider(OtherGateway())
    return plugins


def fallback_router(plugins: turnout.Plugins, faults: Any) -> turnout.Router:
    emulator = MumeEmulator()
    transport = mock_transport({"other.test": emulator, "mume.test": emulator}, faults)
    return turnout.Router.from_config(CONFIG, plugins=plugins, transport=transport, retry_policy=FAST)


def test_mume_takes_over_when_the_other_gateway_is_down(fallback_plugins: turnout.Plugins) -> None:
    router = fallback_router(fallback_plugins, by_path({"/v1/": Fault(error="503")}))
    response = router.chat(HI, model="chat")
    assert response.deployment == "mume-gpt"
    assert response.provider == "mume"
    assert [a.deployment for a in response.attempts] == ["primary"] * 3 + ["mume-gpt"]


def test_mume_falls_back_across_models(fallback_plugins: turnout.Plugins) -> None:
    faults = {
        "gpt-4.1-mini": Fault(error="401"),
        "openai/gpt-4.1-mini": Fault(error="model_not_found"),
    }
    response = fallback_router(fallback_plugins, by_model(faults)).chat(HI, model="chat")
    assert response.deployment == "mume-claude"
    assert kinds(response.attempts) == ["authentication", "model_not_found", None]


async def test_mume_falls_back_across_models_while_streaming(fallback_plugins: turnout.Plugins) -> None:
    emulator = MumeEmulator()
    faults = by_model({"gpt-4.1-mini": Fault(error="401"), "openai/gpt-4.1-mini": Fault(error="503")})
    transport = mock_transport({"other.test": emulator, "mume.test": emulator}, faults)
    async with (
        turnout.AsyncRouter.from_config(
            CONFIG, plugins=fallback_plugins, transport=transport, retry_policy=FAST
        ) as router,
        router.stream(HI, model="chat") as stream,
    ):
        text = "".join([c.delta async for c in stream])
    assert text == ANSWER
    assert stream.deployment == "mume-claude"
    assert kinds(stream.attempts) == ["authentication", "unavailable", "unavailable", "unavailable", None]


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
