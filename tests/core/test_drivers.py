"""Both drivers end to end over an httpx transport: the same decisions, performed twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
import respx

import turnout
from turnout.emulation import Fault, FaultScript, mock_transport

from .acme import AcmeEmulator
from .conftest import FAST, deployment
from .scripted import kinds

HI = [{"role": "user", "content": "hello there world"}]


def transport(script: dict[str, Sequence[Fault | None]]) -> httpx.MockTransport:
    emulator = AcmeEmulator()
    hosts = {f"{name}.test": emulator for name in "abcd"}
    return mock_transport(hosts, FaultScript.by(lambda request: request.host, script))


def run_sync(plugins, deps, script, **kw) -> Any:
    with turnout.Router(deps, plugins=plugins, transport=transport(script), **kw) as router:
        try:
            return router.chat(HI)
        except turnout.ProviderError as error:
            return error


def run_async(plugins, deps, script, **kw) -> Any:
    async def main() -> Any:
        async with turnout.AsyncRouter(deps, plugins=plugins, transport=transport(script), **kw) as router:
            try:
                return await router.chat(HI)
            except turnout.ProviderError as error:
                return error

    return asyncio.run(main())


DRIVERS = pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])


@DRIVERS
def test_retry_then_success(plugins, run):
    deps = [deployment("a")]
    result = run(plugins, deps, {"a.test": [Fault(error="overloaded"), None]}, retry_policy=FAST)
    assert isinstance(result, turnout.ChatResponse)
    assert result.content == "echo: hello there world"
    assert kinds(result.attempts) == [("a", "unavailable"), ("a", None)]
    assert result.usage == turnout.Usage(6, 4, 10, cached_tokens=0, reasoning_tokens=0)


@DRIVERS
@pytest.mark.parametrize(
    "fault",
    [
        Fault(error="invalid_key"),
        Fault(error="no_credit"),
        Fault(error="forbidden"),
        Fault(error="model_missing"),
        Fault(error="slow_down", retry_after=0),
        Fault(error="timed_out"),
        Fault(error="oops"),
        Fault(error="upstream"),
        Fault(error="overloaded"),
        Fault(html=502),
        Fault(malformed=True),
    ],
    ids=lambda f: f.error or ("html" if f.html else "malformed"),
)
def test_fallback_on_each_fallbackable_failure(plugins, run, fault):
    deps = [deployment("a"), deployment("b")]
    policy = turnout.RetryPolicy(max_retries=0)
    result = run(plugins, deps, {"a.test": [fault]}, retry_policy=policy)
    assert isinstance(result, turnout.ChatResponse), result
    assert result.deployment == "b"
    assert result.attempts[0].error is not None
    assert result.attempts[0].error.provider == "acme"


@DRIVERS
@pytest.mark.parametrize("code", ["bad_request", "invalid_field", "not_found"])
def test_no_fallback_on_client_errors(plugins, run, code):
    deps = [deployment("a"), deployment("b")]
    result = run(plugins, deps, {"a.test": [Fault(error=code)]}, retry_policy=FAST)
    assert isinstance(result, turnout.BadRequestError | turnout.NotFoundError)
    assert [a.deployment for a in result.attempts] == ["a"]


@DRIVERS
def test_connection_refused_falls_back(plugins, run):
    # Only a.test has no emulator behind it here: the transport refuses the connection.
    deps = [deployment("a", base_url="https://nowhere.test/v1"), deployment("b")]
    result = run(plugins, deps, {}, retry_policy=turnout.RetryPolicy(max_retries=0))
    assert isinstance(result, turnout.ChatResponse)
    assert kinds(result.attempts) == [("a", "connection"), ("b", None)]


@pytest.mark.parametrize(
    "script",
    [
        {"a.test": [Fault(error="overloaded"), Fault(error="oops"), None]},
        {"a.test": [Fault(error="slow_down", retry_after=0)] * 3, "b.test": [Fault(html=503), None]},
        {"a.test": [Fault(error="invalid_key")], "b.test": [Fault(error="too_long")]},
        {"a.test": [Fault(malformed=True)] * 3, "b.test": [Fault(error="upstream")] * 3, "c.test": [None]},
    ],
)
def test_sync_and_async_make_identical_attempt_histories(plugins, script):
    deps = [deployment("a"), deployment("b"), deployment("c")]
    sync = run_sync(plugins, deps, script, retry_policy=FAST)
    async_ = run_async(plugins, deps, script, retry_policy=FAST)
    assert type(sync) is type(async_)
    assert kinds(sync.attempts) == kinds(async_.attempts)
    assert len(sync.attempts) >= 2


# -- streams ------------------------------------------------------------------


def stream_sync(plugins, deps, script, **kw) -> tuple[list[str], Any]:
    chunks: list[str] = []
    with turnout.Router(deps, plugins=plugins, transport=transport(script), **kw) as router:
        try:
            with router.stream(HI) as stream:
                for chunk in stream:
                    chunks.append(chunk.delta)
            return chunks, stream.response
        except turnout.ProviderError as error:
            return chunks, error


def stream_async(plugins, deps, script, **kw) -> tuple[list[str], Any]:
    async def main() -> tuple[list[str], Any]:
        chunks: list[str] = []
        async with turnout.AsyncRouter(deps, plugins=plugins, transport=transport(script), **kw) as router:
            try:
                async with router.stream(HI) as stream:
                    async for chunk in stream:
                        chunks.append(chunk.delta)
                return chunks, stream.response
            except turnout.ProviderError as error:
                return chunks, error

    return asyncio.run(main())


STREAMS = pytest.mark.parametrize("stream", [stream_sync, stream_async], ids=["sync", "async"])


@STREAMS
def test_stream_delivers_chunks_and_a_summary(plugins, stream):
    chunks, response = stream(plugins, [deployment("a")], {})
    assert "".join(chunks) == "echo: hello there world"
    assert len(chunks) >= 4
    assert response.content == "echo: hello there world"
    assert response.finish_reason == "stop"
    assert kinds(response.attempts) == [("a", None)]


@STREAMS
@pytest.mark.parametrize(
    "fault",
    [
        Fault(error="overloaded"),
        Fault(drop_after=0),
        Fault(stream_error="oops", stream_error_after=0),
        Fault(html=502),
    ],
    ids=["status", "drop", "error-frame", "html"],
)
def test_stream_falls_back_before_its_first_chunk(plugins, stream, fault):
    deps = [deployment("a"), deployment("b")]
    chunks, response = stream(
        plugins, deps, {"a.test": [fault]}, retry_policy=turnout.RetryPolicy(max_retries=0)
    )
    assert isinstance(response, turnout.ChatResponse), response
    assert "".join(chunks) == "echo: hello there world"
    assert [a.deployment for a in response.attempts] == ["a", "b"]


@STREAMS
def test_stream_drop_after_the_first_chunk_raises_with_partial_text(plugins, stream):
    deps = [deployment("a"), deployment("b")]
    chunks, error = stream(plugins, deps, {"a.test": [Fault(drop_after=2)]})
    assert isinstance(error, turnout.StreamInterruptedError)
    assert chunks == ["echo: ", "hello "]
    assert error.partial_text == "echo: hello "
    assert kinds(error.attempts) == [("a", "stream_interrupted")]


@STREAMS
def test_stream_error_frame_after_the_first_chunk_raises_its_own_kind(plugins, stream):
    deps = [deployment("a"), deployment("b")]
    chunks, error = stream(plugins, deps, {"a.test": [Fault(stream_error="slow_down", stream_error_after=1)]})
    assert isinstance(error, turnout.RateLimitError)
    assert error.partial_text == "echo: " == "".join(chunks)
    assert error.deployment == "a"


def respx_router(plugins, **kw) -> turnout.Router:
    return turnout.Router([deployment("a"), deployment("b")], plugins=plugins, retry_policy=FAST, **kw)


SSE = {"content-type": "text/event-stream"}


def event(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


@respx.mock
def test_stream_that_ends_without_done_or_finish_is_interrupted(plugins):
    body = event({"choices": [{"delta": {"content": "half"}}]})
    respx.post("https://a.test/v1/chat/completions").respond(200, headers=SSE, content=body)
    with respx_router(plugins) as router, pytest.raises(turnout.StreamInterruptedError) as info:
        list(router.stream(HI))
    assert info.value.partial_text == "half"


@respx.mock
def test_a_whole_json_completion_to_a_stream_request_is_one_chunk(plugins):
    completion = {"choices": [{"message": {"content": "all at once"}, "finish_reason": "stop"}]}
    respx.post("https://a.test/v1/chat/completions").respond(200, json=completion)
    with respx_router(plugins) as router, router.stream(HI) as stream:
        chunks = list(stream)
    assert [(c.delta, c.finish_reason) for c in chunks] == [("all at once", "stop")]


@respx.mock
def test_a_non_event_body_to_a_stream_request_is_parse_error_not_an_empty_success(plugins):
    respx.post("https://a.test/v1/chat/completions").respond(200, text="OK")
    respx.post("https://b.test/v1/chat/completions").respond(200, text="")
    with respx_router(plugins) as router, pytest.raises(turnout.ResponseParseError) as info:
        list(router.stream(HI))
    assert [a.deployment for a in info.value.attempts] == ["a", "a", "a", "b", "b", "b"]


@respx.mock
def test_redirects_are_not_followed_with_the_key(plugins):
    route = respx.post("https://a.test/v1/chat/completions").respond(
        307, headers={"location": "https://evil.test/steal"}
    )
    evil = respx.post("https://evil.test/steal").respond(200, json={})
    respx.post("https://b.test/v1/chat/completions").respond(
        200, json={"choices": [{"message": {"content": "b"}, "finish_reason": "stop"}]}
    )
    with respx_router(plugins) as router:
        response = router.chat(HI)
    assert route.call_count == 3  # retried as upstream_error, never followed
    assert not evil.called
    error = response.attempts[0].error
    assert isinstance(error, turnout.UpstreamError)
    assert "https://evil.test/steal" in error.message


@respx.mock
@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"choices": "nope"}', b'{"choices": [{"message": {}}]}'],
    ids=["empty", "binary", "list", "wrong-type", "no-content"],
)
def test_hostile_success_bodies_are_parse_errors(plugins, content):
    respx.post("https://a.test/v1/chat/completions").respond(200, content=content)
    router = turnout.Router(
        [deployment("a")], plugins=plugins, retry_policy=turnout.RetryPolicy(max_retries=0)
    )
    with router, pytest.raises(turnout.ResponseParseError) as info:
        router.chat(HI)
    assert info.value.status == 200


@respx.mock
def test_a_huge_error_body_is_read_only_up_to_the_cap(plugins):
    huge = b"<html>" + b"x" * (5 * 1024 * 1024) + b"</html>"
    respx.post("https://a.test/v1/chat/completions").respond(503, content=huge)
    router = turnout.Router(
        [deployment("a")], plugins=plugins, retry_policy=turnout.RetryPolicy(max_retries=0)
    )
    with router, pytest.raises(turnout.ServiceUnavailableError) as info:
        router.chat(HI)
    assert len(info.value.message) <= 500


@respx.mock
def test_a_success_body_over_the_cap_is_parse_error(plugins):
    completion = {"choices": [{"message": {"content": "y" * 4096}, "finish_reason": "stop"}]}
    respx.post("https://a.test/v1/chat/completions").respond(200, json=completion)
    router = turnout.Router(
        [deployment("a")], plugins=plugins, retry_policy=turnout.RetryPolicy(max_retries=0), max_body=1024
    )
    with router, pytest.raises(turnout.ResponseParseError, match="larger than allowed"):
        router.chat(HI)


def test_read_timeout_is_a_timeout_and_falls_back(plugins):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            raise httpx.ReadTimeout("timed out", request=request)
        body = {"choices": [{"message": {"content": "b"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=body)

    router = turnout.Router(
        [deployment("a"), deployment("b")],
        plugins=plugins,
        transport=httpx.MockTransport(handler),
        retry_policy=turnout.RetryPolicy(max_retries=0),
    )
    with router:
        response = router.chat(HI)
    assert kinds(response.attempts) == [("a", "timeout"), ("b", None)]


def test_the_deadline_is_applied_to_each_request_timeout(plugins):
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})

    router = turnout.Router(
        [deployment("a")],
        plugins=plugins,
        transport=httpx.MockTransport(handler),
        timeout=60.0,
        deadline=600.0,
    )
    with router:
        router.chat(HI, deadline=3.0)
        router.chat(HI)
    assert 0 < seen[0] <= 3.0
    assert seen[1] == 60.0


def test_closing_a_stream_early_releases_the_connection(plugins):
    closed: list[bool] = []

    class Tracking(httpx.SyncByteStream):
        def __iter__(self):
            yield b'data: {"choices": [{"delta": {"content": "one "}}]}\n\n'
            yield b'data: {"choices": [{"delta": {"content": "two"}}]}\n\n'
            yield b"data: [DONE]\n\n"

        def close(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, stream=Tracking())

    with turnout.Router([deployment("a")], plugins=plugins, transport=httpx.MockTransport(handler)) as router:
        with router.stream(HI) as stream:
            first = next(iter(stream))
        assert first.delta == "one "
    assert closed == [True]


def ok_handler_recording(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=body, headers={"set-cookie": "session=abc; Path=/"})

    return handler


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_client_you_hand_in_keeps_its_headers_and_hooks_and_stays_open(plugins, kind):
    seen: list[httpx.Request] = []
    hooked: list[str] = []
    transport = httpx.MockTransport(ok_handler_recording(seen))
    if kind == "sync":
        client = httpx.Client(
            transport=transport,
            headers={"x-team": "blue"},
            event_hooks={"request": [lambda r: hooked.append(r.url.host)]},
        )
        router = turnout.Router([deployment("a")], plugins=plugins, http_client=client)
        router.chat(HI)
        router.close()
        assert not client.is_closed
        client.close()
    else:

        async def hook(request: httpx.Request) -> None:
            hooked.append(request.url.host)

        async def main() -> bool:
            client = httpx.AsyncClient(
                transport=transport, headers={"x-team": "blue"}, event_hooks={"request": [hook]}
            )
            router = turnout.AsyncRouter([deployment("a")], plugins=plugins, http_client=client)
            await router.chat(HI)
            await router.aclose()
            still_open = not client.is_closed
            await client.aclose()
            return still_open

        assert asyncio.run(main())
    assert seen[0].headers["x-team"] == "blue"
    assert seen[0].headers["authorization"] == "Bearer sk-acme-a-0123456789"
    assert hooked == ["a.test"]


def test_the_routers_own_client_carries_no_cookies_between_calls(plugins):
    seen: list[httpx.Request] = []
    router = turnout.Router(
        [deployment("a")], plugins=plugins, transport=httpx.MockTransport(ok_handler_recording(seen))
    )
    with router:
        router.chat(HI)
        router.chat(HI)
    assert "cookie" not in seen[1].headers
    assert seen[1].headers["user-agent"].startswith("turnout/")
    assert seen[1].headers["content-type"] == "application/json"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_finished_stream_is_read_to_its_end_so_its_connection_is_reused(plugins, kind):
    events: list[str] = []

    class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
        def pieces(self):
            yield b'data: {"choices": [{"delta": {"content": "one"}, "finish_reason": "stop"}]}\n\n'
            yield b"data: [DONE]\n\n"
            events.append("terminator read")  # what a chunked body ends with, after [DONE]

        def __iter__(self):
            yield from self.pieces()

        async def __aiter__(self):
            for piece in self.pieces():
                yield piece

        def close(self) -> None:
            events.append("closed")

        async def aclose(self) -> None:
            events.append("closed")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, stream=Body())

    transport = httpx.MockTransport(handler)
    if kind == "sync":
        with turnout.Router([deployment("a")], plugins=plugins, transport=transport) as router:
            text = "".join(chunk.delta for chunk in router.stream(HI))
    else:

        async def main() -> str:
            async with turnout.AsyncRouter([deployment("a")], plugins=plugins, transport=transport) as router:
                return "".join([chunk.delta async for chunk in router.stream(HI)])

        text = asyncio.run(main())
    assert text == "one"
    assert events == ["terminator read", "closed"]
