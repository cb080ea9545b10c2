"""AsyncRouter's own transport (turnout._async_transport) over real loopback HTTP.

The pool changed, not what a failure means: each failure row runs on the new
default and on httpx's `AsyncHTTPTransport` (the default before it) and must
come out the same, kind, code and `maybe_processed` alike. Then what a pool
owes its users: connections reused, a stream cancelled mid-body gives its
room back, the limit holds, a wait past the pool timeout is a timeout that
sent nothing, `aclose()` closes every connection, proxies from the
environment still apply, and the user's own transport, mounts or client win.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import turnout
from turnout._async_transport import AsyncTransport
from turnout._transport import transport_error

from .upstream import CHUNKS, CONTENT, Upstream, until, upstream

HI = [{"role": "user", "content": "hi"}]
KEY = "sk-loop-0123456789"


class Loop(turnout.OpenAICompatible):
    name = "loop"
    default_base_url = "http://127.0.0.1"


PLUGINS = turnout.Plugins(entry_points=False)
PLUGINS.add_provider(Loop())
ONCE = turnout.RetryPolicy(max_retries=0)


def router(*urls: str, **kw: Any) -> turnout.AsyncRouter:
    deployments = [
        turnout.Deployment(
            name=f"d{i}", provider="loop", model="m", api_key=KEY, base_url=url, retry_policy=ONCE
        )
        for i, url in enumerate(urls)
    ]
    return turnout.AsyncRouter(deployments, plugins=PLUGINS, **kw)


@pytest.fixture
async def server() -> AsyncIterator[Upstream]:
    async with upstream() as found:
        yield found


def refused_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


def aiohttp() -> dict[str, Any]:
    httpx_aiohttp = pytest.importorskip("httpx_aiohttp")
    return {"transport": httpx_aiohttp.AiohttpTransport()}


# The transport before (httpx's own), now (the default), and httpx-aiohttp's (the
# `aiohttp` extra, `turnout serve`'s default): the same failures must come out the same.
TRANSPORTS: dict[str, Callable[[], dict[str, Any]]] = {
    "httpx": lambda: {"transport": httpx.AsyncHTTPTransport()},
    "default": dict,
    "aiohttp": aiohttp,
}
BOTH = pytest.mark.parametrize("transport", list(TRANSPORTS))


def test_the_default_is_the_pool_and_a_proxy_gets_httpx_transport() -> None:
    assert isinstance(turnout.AsyncRouter._transport(), AsyncTransport)
    assert isinstance(turnout.AsyncRouter._transport("http://127.0.0.1:3128"), httpx.AsyncHTTPTransport)


# -- failures, normalized as before -------------------------------------------------


async def consume(r: turnout.AsyncRouter, received: list[str], **kw: Any) -> None:
    async with r.stream(HI, **kw) as stream:
        async for chunk in stream:
            received.append(chunk.delta)


async def failure(r: turnout.AsyncRouter, **kw: Any) -> turnout.ProviderError:
    async with r:
        with pytest.raises(turnout.ProviderError) as caught:
            await r.chat(HI, **kw)
    return caught.value


@BOTH
async def test_a_refused_connection_is_connection_and_was_never_sent(transport: str) -> None:
    error = await failure(router(refused_url(), **TRANSPORTS[transport]()), deadline=5.0)
    assert (error.kind, error.code, error.maybe_processed, error.retryable) == (
        "connection",
        "ConnectError",
        False,
        True,
    )


@BOTH
async def test_a_server_that_hangs_up_without_answering_may_have_processed_the_request(
    server: Upstream, transport: str
) -> None:
    error = await failure(router(server.url("hangup"), **TRANSPORTS[transport]()), deadline=5.0)
    assert (error.kind, error.code, error.maybe_processed) == ("connection", "RemoteProtocolError", True)


@BOTH
async def test_a_reset_mid_body_is_connection_that_may_have_been_processed(
    server: Upstream, transport: str
) -> None:
    error = await failure(router(server.url("reset"), **TRANSPORTS[transport]()), deadline=5.0)
    assert (error.kind, error.code, error.maybe_processed) == ("connection", "ReadError", True)


@BOTH
async def test_a_reset_mid_stream_is_stream_interrupted(server: Upstream, transport: str) -> None:
    received: list[str] = []
    async with router(server.url("reset"), **TRANSPORTS[transport]()) as r:
        with pytest.raises(turnout.ProviderError) as caught:
            await consume(r, received, deadline=5.0)
    assert received == []
    assert (caught.value.kind, caught.value.code, caught.value.maybe_processed) == (
        "stream_interrupted",
        "ReadError",
        True,
    )


@BOTH
async def test_a_head_dripped_byte_by_byte_ends_at_the_deadline(server: Upstream, transport: str) -> None:
    # Each byte comes well within the read timeout: only the call's deadline ends it.
    error = await failure(router(server.url("drip"), **TRANSPORTS[transport]()), deadline=0.5, timeout=5.0)
    assert error.kind == "timeout"
    assert "deadline" in error.message


@BOTH
async def test_a_read_timeout_is_a_timeout_that_may_have_been_processed(
    server: Upstream, transport: str
) -> None:
    error = await failure(router(server.url("hold"), **TRANSPORTS[transport]()), deadline=5.0, timeout=0.2)
    assert (error.kind, error.code, error.maybe_processed) == ("timeout", "ReadTimeout", True)


@BOTH
async def test_a_stream_that_stalls_after_its_first_chunk_times_out_with_the_partial_text(
    server: Upstream, transport: str
) -> None:
    received: list[str] = []
    async with router(server.url("stall"), **TRANSPORTS[transport]()) as r:
        with pytest.raises(turnout.ProviderError) as caught:
            await consume(r, received, deadline=5.0, timeout=0.3)
    assert received == [CHUNKS[0]]
    error = caught.value
    assert (error.kind, error.code, error.partial_text) == ("timeout", "ReadTimeout", CHUNKS[0])


# -- the pool -------------------------------------------------------------------------


async def test_calls_and_streams_reuse_one_connection(server: Upstream) -> None:
    async with router(server.url("ok")) as r:
        for _ in range(3):
            assert (await r.chat(HI)).content == CONTENT
            async with r.stream(HI) as stream:
                assert "".join([chunk.delta async for chunk in stream]) == "".join(CHUNKS)
    assert server.accepted == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: Upstream) -> None:
    pool = AsyncTransport()
    async with router(server.url("close"), transport=pool) as r:
        for _ in range(3):
            assert (await r.chat(HI)).content == CONTENT
            assert await until(lambda: server.open == 0)  # the server hung up after answering
    assert server.accepted == 3


async def test_cancelling_a_task_mid_stream_gives_its_connection_back(server: Upstream) -> None:
    pool = AsyncTransport(max_connections=1)
    first = asyncio.Event()

    class Signal(list[str]):
        def append(self, delta: str) -> None:
            first.set()

    async with router(server.url("stall"), transport=pool) as r:
        task = asyncio.create_task(consume(r, Signal()))
        await first.wait()
        assert pool.connections == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.connections == 0
        assert await until(lambda: server.open == 0)  # closed, not left half read
        # The only connection's room is free again: the next request gets it.
        timeout = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
        request = httpx.Request("POST", f"{server.url('ok')}/x", json={}, extensions={"timeout": timeout})
        response = await pool.handle_async_request(request)
        assert CONTENT in (await response.aread()).decode()
        await response.aclose()


async def test_the_connection_limit_holds_and_waiters_are_served(server: Upstream) -> None:
    pool = AsyncTransport(max_connections=2)
    async with router(server.url("hold"), transport=pool) as r:
        calls = [asyncio.create_task(r.chat(HI, deadline=10.0)) for _ in range(6)]
        assert await until(lambda: len(server.targets) == 2)
        await asyncio.sleep(0.1)  # room for a third connection to open, if the limit let it
        assert (server.open, pool.connections, len(server.targets)) == (2, 2, 2)
        server.release.set()
        answers = await asyncio.gather(*calls)
    assert [a.content for a in answers] == [CONTENT] * 6
    assert server.max_open == 2
    assert len(server.targets) == 6


async def test_a_wait_past_the_pool_timeout_is_a_timeout_that_sent_nothing(server: Upstream) -> None:
    pool = AsyncTransport(max_connections=1)
    async with httpx.AsyncClient(transport=pool) as client:
        held = asyncio.create_task(client.post(f"{server.url('hold')}/x", json={}))
        assert await until(lambda: len(server.targets) == 1)
        with pytest.raises(httpx.PoolTimeout) as caught:
            await client.post(f"{server.url('ok')}/x", json={}, timeout=httpx.Timeout(5.0, pool=0.1))
        server.release.set()
        assert (await held).status_code == 200
    error = transport_error(caught.value, streaming=False)
    assert (error.kind, error.maybe_processed) == ("timeout", False)
    assert len(server.targets) == 1


async def test_a_full_pool_closes_an_idle_connection_to_serve_another_origin() -> None:
    pool = AsyncTransport(max_connections=1)
    async with upstream() as a, upstream() as b, router(a.url("ok"), transport=pool) as ra:
        rb = router(b.url("ok"), transport=pool)
        assert (await ra.chat(HI)).content == (await rb.chat(HI, timeout=2.0)).content == CONTENT
        assert await until(lambda: a.open == 0)
        assert (a.accepted, b.accepted, pool.connections) == (1, 1, 1)


async def test_aclose_closes_every_connection(server: Upstream) -> None:
    r = router(server.url("ok"))
    answers = await asyncio.gather(*(r.chat(HI) for _ in range(3)))
    assert [a.content for a in answers] == [CONTENT] * 3
    assert server.open == server.accepted == 3
    await r.aclose()
    assert await until(lambda: server.open == 0)


async def test_aclose_ends_a_call_waiting_for_room_without_sending_it(server: Upstream) -> None:
    pool = AsyncTransport(max_connections=1)
    async with httpx.AsyncClient(transport=pool) as client:
        held = asyncio.create_task(client.post(f"{server.url('hold')}/x", json={}))
        assert await until(lambda: len(server.targets) == 1)
        waiting = asyncio.create_task(client.post(f"{server.url('ok')}/x", json={}))
        await asyncio.sleep(0.05)
        await pool.aclose()
        with pytest.raises(httpx.ConnectError):
            await waiting
        with pytest.raises(httpx.ReadError):
            await held
    assert len(server.targets) == 1
    assert await until(lambda: server.open == 0)


# -- what the user sets still wins ------------------------------------------------------


async def test_a_proxy_from_the_environment_is_used_and_no_proxy_honoured(
    server: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "proxy" is the loopback server itself: it answers whatever absolute URL it is asked.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    async with router("http://upstream.test/ok") as r:
        assert (await r.chat(HI)).content == CONTENT
    assert server.targets == ["http://upstream.test/ok/chat/completions"]
    async with router("http://direct.test/ok") as r:
        with pytest.raises(turnout.ProviderError) as caught:
            await r.chat(HI, deadline=5.0)
    assert caught.value.kind == "connection"  # went direct, and direct.test does not resolve
    assert len(server.targets) == 1


async def test_the_users_mounts_and_transport_win(server: Upstream) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200, json={"choices": [{"message": {"content": "mounted"}, "finish_reason": "stop"}]}
        )

    mounts = {"http://upstream.test": httpx.MockTransport(handler)}
    async with router("http://upstream.test/ok", server.url("ok"), mounts=mounts) as r:
        assert (await r.chat(HI)).content == "mounted"
    async with router(server.url("ok"), transport=httpx.MockTransport(handler)) as r:
        assert (await r.chat(HI)).content == "mounted"
    assert seen == ["http://upstream.test/ok/chat/completions", f"{server.url('ok')}/chat/completions"]
    assert server.targets == []
