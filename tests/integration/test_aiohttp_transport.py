"""AsyncRouter on httpx-aiohttp's transport (the `turnout[aiohttp]` extra), over real loopback HTTP.

The transport changes how bytes move, not what the router decides: every
failure must still arrive as a normalized ProviderError, never as an
aiohttp exception.
"""

from __future__ import annotations

import socket

import pytest

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .conftest import deployment

httpx_aiohttp = pytest.importorskip("httpx_aiohttp")

WORDS = [{"role": "user", "content": "one two three four"}]


async def consume(r: turnout.AsyncRouter, received: list[str]) -> None:
    async with r.stream(WORDS) as stream:
        async for chunk in stream:
            received.append(chunk.delta)


def router(deployments: list[turnout.Deployment]) -> turnout.AsyncRouter:
    return turnout.AsyncRouter(deployments, transport=httpx_aiohttp.AiohttpTransport())


async def test_chat_and_a_429_then_success(fake: FakeGateways) -> None:
    fake.script("meshapi", Fault(error="rate_limited", retry_after=0.01))
    async with router([deployment(fake, "meshapi")]) as r:
        response = await r.chat(WORDS)
    assert response.content == "echo: one two three four"
    assert [a.error.kind if a.error else None for a in response.attempts] == ["rate_limited", None]


async def test_a_stream_and_a_dropped_stream(fake: FakeGateways) -> None:
    async with router([deployment(fake, "mume")]) as r:
        async with r.stream(WORDS) as stream:
            text = "".join([chunk.delta async for chunk in stream])
        assert text == "echo: one two three four"
        fake.script("mume", Fault(drop_after=2))
        received: list[str] = []
        with pytest.raises(turnout.StreamInterruptedError) as caught:
            await consume(r, received)
    assert caught.value.partial_text == "".join(received) == "echo: one "


async def test_an_html_502_falls_back(fake: FakeGateways) -> None:
    fake.script("mythicdot", Fault(html=502))
    async with router([deployment(fake, "mythicdot"), deployment(fake, "meshapi")]) as r:
        response = await r.chat(WORDS)
    assert response.deployment == "meshapi"
    assert response.attempts[0].error is not None
    assert response.attempts[0].error.kind == "upstream_error"


async def test_a_refused_connection_is_connection_as_on_httpx(fake: FakeGateways) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    dead = turnout.Deployment(
        "dead", "meshapi", "m", api_key="rsk_test_0123456789", base_url=f"http://127.0.0.1:{port}"
    )
    async with router([dead]) as r:
        with pytest.raises(turnout.ProviderError) as caught:
            await r.chat(WORDS, deadline=5.0)
    # httpx-aiohttp raises httpx.ConnectTimeout for a refused connection; its cause (aiohttp's
    # ClientConnectorError) says what happened, and the kind is the one plain httpx gets.
    assert (caught.value.kind, caught.value.code, caught.value.maybe_processed) == (
        "connection",
        "ConnectError",
        False,
    )
    assert "Connect call failed" in caught.value.message
