"""The caller's mistakes and requests a gateway cannot carry, over real loopback HTTP:
both are raised before any request, never count against a deployment's health, and a
deployment that cannot carry a request is skipped without being sent anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import turnout
from turnout.fake import FakeGateways

from .chatkit import HOWS, IMAGE, PROVIDERS, WEATHER, Wire, call
from .conftest import KEYS, deployment

HI = [{"role": "user", "content": "hi"}]
TOOL_HISTORY = [
    *HI,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]

# (messages, keywords, the exception): each a mistake of the caller's.
MISTAKES: list[tuple[Any, dict[str, Any], type[Exception]]] = [
    ("hello", {}, TypeError),
    (b"hello", {}, TypeError),
    ({"role": "user", "content": "hi"}, {}, TypeError),
    (["hello"], {}, TypeError),
    (None, {}, TypeError),
    ([], {}, ValueError),
    ([{"content": "no role"}], {}, ValueError),
    ([{"role": 3, "content": "hi"}], {}, ValueError),
    ([{"role": "", "content": "hi"}], {}, ValueError),
    ([{"role": "user", "content": "hi", "name": 7}], {}, TypeError),
    (HI, {"timeout": "5"}, TypeError),
    (HI, {"timeout": -1}, ValueError),
    (HI, {"deadline": float("nan")}, ValueError),
    (HI, {"deadline": True}, TypeError),
    (HI, {"extra_headers": {"Bad Header": "x"}}, ValueError),
    (HI, {"extra_headers": {"x-ok": "a\r\nInjected: 1"}}, ValueError),
    (HI, {"extra_headers": {"x-n": 5}}, TypeError),
    (HI, {"extra_headers": "x-a: 1"}, TypeError),
    (HI, {"extra_body": "temperature=1"}, TypeError),
    (HI, {"metadata": ["trace"]}, TypeError),
]


def everyone(fake: FakeGateways) -> list[turnout.Deployment]:
    return [deployment(fake, provider) for provider in PROVIDERS]


def mistake_ids(case: tuple[Any, dict[str, Any], type[Exception]]) -> str:
    messages, kw, _ = case
    return f"{str(messages)[:20]}|{','.join(kw)}"


def misuse_sync(router: turnout.Router, how: str, messages: Any, **kw: Any) -> None:
    if how == "chat":
        router.chat(messages, **kw)
    else:
        with router.stream(messages, **kw) as stream:
            list(stream)


async def misuse_async(router: turnout.AsyncRouter, how: str, messages: Any, **kw: Any) -> None:
    if how == "achat":
        await router.chat(messages, **kw)
    else:
        async with router.stream(messages, **kw) as stream:
            async for _ in stream:
                pass


@pytest.mark.parametrize("case", MISTAKES, ids=mistake_ids)
@pytest.mark.parametrize("how", ["chat", "stream"])
def test_a_mistake_is_raised_before_any_request(wire: Wire, how: str, case: Any) -> None:
    messages, kw, expected = case
    with turnout.Router(everyone(wire.fake)) as router, pytest.raises(expected):
        misuse_sync(router, how, messages, **kw)
    assert wire.total() == 0
    assert wire.fake.counts() == dict.fromkeys(wire.fake.providers, 0)


@pytest.mark.parametrize("case", MISTAKES, ids=mistake_ids)
@pytest.mark.parametrize("how", ["achat", "astream"])
async def test_a_mistake_is_raised_before_any_request_async(wire: Wire, how: str, case: Any) -> None:
    messages, kw, expected = case
    async with turnout.AsyncRouter(everyone(wire.fake)) as router:
        with pytest.raises(expected):
            await misuse_async(router, how, messages, **kw)
    assert wire.total() == 0


def test_stream_true_to_chat_says_what_to_do(wire: Wire) -> None:
    with turnout.Router(everyone(wire.fake)) as router:
        with pytest.raises(ValueError, match=r"router\.stream"):
            router.chat(HI, stream=True)
        with pytest.raises(ValueError, match=r"router\.chat"):
            router.stream(HI, stream=False)
        with pytest.raises(TypeError, match=r"messages must be a list"):
            router.chat("hello")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"messages\[1\] needs a string 'role'"):
            router.chat([*HI, {"content": "x"}])
        # stream=False to chat, stream=True to stream: what they do anyway.
        assert router.chat(HI, stream=False).content == "echo: hi"
        with router.stream(HI, stream=True) as stream:
            assert "".join(c.delta for c in stream) == "echo: hi"
    # The router's own keyword is never forwarded as a parameter; the stream says stream.
    chat_body, stream_body = (json.loads(r.body) for r in wire.requests("meshapi"))
    assert "stream" not in chat_body
    assert stream_body["stream"] is True


def test_many_mistakes_never_touch_health(wire: Wire) -> None:
    """Five `stream=True` calls once opened a healthy deployment's breaker; now a hundred
    mistakes of every kind leave every deployment as it was, and the next call goes out."""
    with turnout.Router(everyone(wire.fake)) as router:
        before = router.health()
        for _ in range(5):
            for messages, kw, expected in MISTAKES:
                for how in ("chat", "stream"):
                    with pytest.raises(expected):
                        misuse_sync(router, how, messages, **kw)
            with pytest.raises(ValueError):
                router.chat(HI, stream=True)
        assert router.health() == before
        assert wire.total() == 0
        response = router.chat(HI)
    assert response.content == "echo: hi"
    assert [a.error for a in response.attempts] == [None]
    assert response.deployment == PROVIDERS[0]


async def test_many_mistakes_never_touch_health_async(wire: Wire) -> None:
    async with turnout.AsyncRouter(everyone(wire.fake)) as router:
        before = await router.health()
        for _ in range(5):
            for messages, kw, expected in MISTAKES:
                for how in ("achat", "astream"):
                    with pytest.raises(expected):
                        await misuse_async(router, how, messages, **kw)
        assert await router.health() == before
        assert wire.total() == 0
        response = await router.chat(HI)
    assert [a.error for a in response.attempts] == [None]


# -- capabilities ---------------------------------------------------------------------------


def modelroute_first(fake: FakeGateways) -> dict[str, Any]:
    return {
        "deployments": [deployment(fake, "modelroute"), deployment(fake, "mume")],
        "routes": {"chat": ["modelroute", "mume"]},
    }


@pytest.mark.parametrize("how", HOWS)
def test_a_deployment_that_cannot_carry_tools_is_skipped_unsent(wire: Wire, how: str) -> None:
    route = modelroute_first(wire.fake)
    # The control: without tools, ModelRoute (first) answers.
    plain = call(how, route["deployments"], HI, routes=route["routes"]).response
    assert plain.deployment == "modelroute"
    wire.exchanges["modelroute"].clear()
    wire.exchanges["mume"].clear()
    with_tools = call(how, route["deployments"], HI, routes=route["routes"], tools=[WEATHER]).response
    assert with_tools.deployment == "mume"
    assert [a.deployment for a in with_tools.attempts] == ["mume"]
    assert with_tools.tool_calls[0].name == "get_weather"
    assert wire.requests("modelroute") == []
    # A history of tool calls needs a gateway that carries them too, tools or not.
    after_tools = call(how, route["deployments"], TOOL_HISTORY, routes=route["routes"]).response
    assert after_tools.deployment == "mume"
    assert after_tools.content == "tool results: get_weather: sunny"
    assert wire.requests("modelroute") == []


@pytest.mark.parametrize("how", HOWS)
def test_images_and_response_format_go_to_modelroute(wire: Wire, how: str) -> None:
    route = modelroute_first(wire.fake)
    parts = [{"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}]
    response = call(
        how, route["deployments"], parts, routes=route["routes"], response_format={"type": "json_object"}
    ).response
    assert response.deployment == "modelroute"
    # Its output is text: the structured answer's JSON, the image part echoed in it.
    assert json.loads(response.content) == {"echo": "see [image_url]"}
    assert wire.requests("mume") == []


def unsupported(how: str, fake: FakeGateways, messages: Any, **kw: Any) -> turnout.BadRequestError:
    with pytest.raises(turnout.BadRequestError) as info:
        call(how, [deployment(fake, "modelroute", name="mr")], messages, **kw)
    return info.value


@pytest.mark.parametrize("how", HOWS)
def test_no_deployment_can_carry_it_unsupported_feature(wire: Wire, how: str) -> None:
    error = unsupported(how, wire.fake, HI, tools=[WEATHER], tool_choice="auto")
    streamed = how.endswith("stream")
    features = "tools, tool_streaming" if streamed else "tools"
    assert error.kind is turnout.ErrorKind.BAD_REQUEST
    assert error.code == "unsupported_feature"
    assert error.retryable is False
    # The message names the route, the features (sorted) and each deployment's lack.
    listed = "tool_streaming, tools" if streamed else "tools"
    wanted = f"no deployment of route 'default' can carry this request ({listed}): mr: {features}"
    assert error.message == wanted
    assert [(d.field, d.code, d.message) for d in error.details] == [("mr", "unsupported_feature", features)]
    assert error.attempts == ()
    assert wire.total() == 0
    # A tool history alone is a request for tools too.
    assert unsupported(how, wire.fake, TOOL_HISTORY).code == "unsupported_feature"
    assert wire.total() == 0


def test_unsupported_feature_never_touches_health(wire: Wire) -> None:
    with turnout.Router([deployment(wire.fake, "modelroute")]) as router:
        before = router.health()
        for _ in range(10):
            with pytest.raises(turnout.BadRequestError):
                router.chat(HI, tools=[WEATHER])
            with pytest.raises(turnout.BadRequestError):
                router.stream(HI, tools=[WEATHER])
        assert router.health() == before
        assert router.chat(HI).content == "echo: hi"
    assert len([r for r in wire.requests("modelroute") if r.method == "POST"]) == 1


class TextOnly(turnout.OpenAICompatible):
    """An OpenAI-compatible gateway whose API carries text and nothing else."""

    name = "textonly"
    capabilities: ClassVar[frozenset[str]] = frozenset()


@pytest.fixture
def text_first(fake: FakeGateways) -> Callable[..., tuple[turnout.ChatResponse | None, Exception | None]]:
    """A route [textonly (served by the mume emulator), meshapi]."""
    plugins = turnout.Plugins()
    plugins.add_provider(TextOnly())
    deployments = [
        turnout.Deployment("plain", "textonly", "m", api_key=KEYS["mume"], base_url=fake.base_url("mume")),
        deployment(fake, "meshapi"),
    ]

    def run(
        messages: Any, only: bool = False, **kw: Any
    ) -> tuple[turnout.ChatResponse | None, Exception | None]:
        async def go() -> turnout.ChatResponse:
            async with turnout.AsyncRouter(
                deployments[:1] if only else deployments, plugins=plugins
            ) as router:
                return await router.chat(messages, **kw)

        try:
            return asyncio.run(go()), None
        except turnout.BadRequestError as exc:
            return None, exc

    return run


def test_a_text_only_gateway_gets_text_and_nothing_else(wire: Wire, text_first: Any) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}]
    text, _ = text_first(HI)
    assert text is not None
    assert text.deployment == "plain"
    # Text parts alone are text.
    text_parts, _ = text_first([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert text_parts is not None
    assert text_parts.deployment == "plain"
    for messages, kw in (
        (parts, {}),
        (HI, {"response_format": {"type": "json_object"}}),
        (HI, {"tools": [WEATHER]}),
    ):
        answer, _ = text_first(messages, **kw)
        assert answer is not None
        assert answer.deployment == "meshapi"
    assert len(wire.requests("mume")) == 2
    _, error = text_first(parts, only=True, response_format={"type": "json_object"})
    assert isinstance(error, turnout.BadRequestError)
    assert error.code == "unsupported_feature"
    assert "plain: content_parts, response_format" in error.message
    assert len(wire.requests("mume")) == 2
