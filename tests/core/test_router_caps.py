"""A router's caps reach every read: `max_body`, `max_event` and `max_stream` as
configured (not the defaults), for `Router` and `AsyncRouter`. Unit tests over
httpx's MockTransport: the reads themselves are tested over sockets elsewhere."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import turnout
from turnout import Plugins
from turnout._reading import Event

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 200 + b'"}}]}\n\n'
DONE = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
MESSAGE = {"role": "assistant", "content": "y" * 500}
COMPLETION = json.dumps({"choices": [{"index": 0, "message": MESSAGE, "finish_reason": "stop"}]}).encode()


def answer(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=EVENT * 10 + DONE)
    return httpx.Response(200, headers={"content-type": "application/json"}, content=COMPLETION)


def router(plugins: Plugins, **caps: Any) -> turnout.Router:
    deployment = turnout.Deployment("a", "acme", "m", api_key="sk-test", base_url="http://acme.test/v1")
    return turnout.Router([deployment], plugins=plugins, transport=httpx.MockTransport(answer), **caps)


def read(r: turnout.Router) -> str:
    with r.stream([{"role": "user", "content": "hi"}]) as chunks:
        return "".join(chunk.delta for chunk in chunks)


def test_the_defaults_read_it_all(plugins: Plugins) -> None:
    with router(plugins) as r:
        assert read(r) == "x" * 2000
        assert r.chat([{"role": "user", "content": "hi"}]).content == "y" * 500


@pytest.mark.parametrize(
    ("caps", "what"),
    [({"max_event": 150}, "a stream event"), ({"max_stream": 1000}, "the stream")],
)
def test_a_routers_stream_caps_are_the_ones_it_was_given(
    plugins: Plugins, caps: dict[str, int], what: str
) -> None:
    with router(plugins, **caps) as r, pytest.raises(turnout.ResponseParseError) as raised:
        read(r)
    assert f"{what} is larger than {next(iter(caps.values()))} bytes" in str(raised.value)


def test_a_routers_body_cap_is_the_one_it_was_given(plugins: Plugins) -> None:
    with router(plugins, max_body=300) as r, pytest.raises(turnout.ResponseParseError) as raised:
        r.chat([{"role": "user", "content": "hi"}])
    assert "larger than allowed" in str(raised.value)


async def test_an_async_routers_caps_are_the_ones_it_was_given(plugins: Plugins) -> None:
    deployment = turnout.Deployment("a", "acme", "m", api_key="sk-test", base_url="http://acme.test/v1")

    async def async_answer(request: httpx.Request) -> httpx.Response:
        return answer(request)

    async def read_all(r: turnout.AsyncRouter) -> None:
        async with r.stream([{"role": "user", "content": "hi"}]) as chunks:
            async for _ in chunks:
                pass

    async with turnout.AsyncRouter(
        [deployment], plugins=plugins, transport=httpx.MockTransport(async_answer), max_event=150
    ) as r:
        with pytest.raises(turnout.ResponseParseError) as raised:
            await read_all(r)
    assert "a stream event is larger than 150 bytes" in str(raised.value)


def test_events_are_built_with_every_field() -> None:
    # The SSE decoder builds events as plain tuples of four (for speed): a field added
    # to Event must be added there too.
    assert Event._fields == ("data", "event", "id", "retry")


class _OddChunks(turnout.OpenAICompatible):
    """A plugin whose codec hands back a chunk the stream cannot keep (its delta is
    not text): a plugin's bug, met while the stream records the chunk."""

    name = "odd"
    default_base_url = "http://odd.test/v1"

    def chunk_from(self, payload: Any) -> turnout.ChatChunk | None:
        return turnout.ChatChunk(123)  # type: ignore[arg-type]


def test_a_chunk_the_stream_cannot_keep_ends_the_call_and_gives_its_place_back() -> None:
    plugins = Plugins(entry_points=False)
    plugins.add_provider(_OddChunks())
    deployment = turnout.Deployment("a", "odd", "m", api_key="sk-test")
    with turnout.Router([deployment], plugins=plugins, transport=httpx.MockTransport(answer)) as r:
        stream = r.stream([{"role": "user", "content": "hi"}])
        with pytest.raises(TypeError):
            next(stream)
        # Not left holding the deployment until the stream is collected.
        assert r.health()["a"].inflight == 0
        assert [a.decision for a in stream.attempts] == ["abandoned"]
