"""The router keeps working with httpx's private helpers gone: it sends through
transports' public `handle_request` / `handle_async_request` only.

httpx's `Client._transport_for_url` (which the router once called) and the
other private methods of the clients are removed for the test, and real calls
go over loopback HTTP, sync and async, plain and streamed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import turnout
from turnout.testing.server import EmulatorServer

from .acme import AcmeEmulator
from .conftest import deployment

HI = [{"role": "user", "content": "hello there world"}]


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    served = EmulatorServer(AcmeEmulator(), api_prefix="/v1").start()
    yield served
    served.close()


@pytest.fixture
def no_httpx_privates(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (httpx.Client, httpx.AsyncClient):
        for name in [n for n in vars(cls) if n.startswith("_") and not n.startswith("__")]:
            monkeypatch.delattr(cls, name)
    assert not hasattr(httpx.Client, "_transport_for_url")


def test_sync_calls_and_streams(plugins, server, no_httpx_privates) -> None:
    with turnout.Router([deployment("a", base_url=server.base_url)], plugins=plugins) as router:
        assert router.chat(HI).content == "echo: hello there world"
        with router.stream(HI) as stream:
            assert "".join(chunk.delta for chunk in stream) == "echo: hello there world"
    assert len(server.requests) == 2


async def test_async_calls_and_streams(plugins, server, no_httpx_privates) -> None:
    async with turnout.AsyncRouter([deployment("a", base_url=server.base_url)], plugins=plugins) as router:
        assert (await router.chat(HI)).content == "echo: hello there world"
        async with router.stream(HI) as stream:
            assert "".join([chunk.delta async for chunk in stream]) == "echo: hello there world"
    assert len(server.requests) == 2


def test_the_fixture_really_removes_them(no_httpx_privates) -> None:
    """The check itself: a client's private lookup is gone, so using it would fail."""
    with pytest.raises(AttributeError):
        httpx.Client()._transport_for_url(httpx.URL("http://127.0.0.1/"))
