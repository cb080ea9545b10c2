"""MythicDot through `turnout.Router` and `turnout.AsyncRouter`, on the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import turnout
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, mock_transport
from turnout_mythicdot.emulator import MythicDotEmulator

from .helpers import BASE_URL, HOST, KEY, FaultScript, NoJitter, deployment

HI = [{"role": "user", "content": "hello mythic world"}]
MakeRouter = Callable[..., turnout.Router]
MakeAsyncRouter = Callable[..., turnout.AsyncRouter]


def kinds(attempts: tuple[turnout.Attempt, ...]) -> list[str | None]:
    return [a.error.kind.value if a.error else None for a in attempts]


# -- the request on the wire ---------------------------------------------------


def test_chat(make_router: MakeRouter) -> None:
    script = FaultScript()
    router = make_router(script)
    response = router.chat(HI, temperature=0.2)
    assert response.content == "echo: hello mythic world"
    assert response.finish_reason == "stop"
    assert response.provider == "mythicdot"
    assert response.deployment == "mythic"
    assert response.request_id == "req_mythicdot_000001"
    assert response.usage == turnout.Usage(6, 4, 10, cached_tokens=0, reasoning_tokens=0)
    assert kinds(response.attempts) == [None]
    (sent,) = script.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.body) == {"model": "mythic-4", "messages": HI, "temperature": 0.2}


def test_organization_option_is_sent_as_a_header(make_router: MakeRouter) -> None:
    script = FaultScript()
    router = make_router(script, [deployment(options={"organization": "org-42"})])
    router.chat(HI)
    assert script.requests[0].headers["mythicdot-organization"] == "org-42"


def test_default_base_url(provider: turnout.Provider) -> None:
    bare = turnout.Deployment("m", "mythicdot", "mythic-4", api_key=KEY)
    request = provider.request(bare, turnout.ChatRequest(HI), stream=False)  # type: ignore[attr-defined]
    assert request.url == "https://api.mythicdot.ai/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("options", "path"),
    [({"organisation": "x"}, "deployments[0].options.organisation"), ({"organization": 7}, "organization")],
)
def test_bad_options_are_config_errors(options: dict[str, Any], path: str) -> None:
    with pytest.raises(turnout.ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        turnout.Router([deployment(options=options)], transport=mock_transport({}))


# -- retries, Retry-After and fallback -------------------------------------------


def test_rate_limited_then_success(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="rate_limited", retry_after=0.01)])
    response = make_router(script).chat(HI)
    assert response.content == "echo: hello mythic world"
    assert kinds(response.attempts) == ["rate_limited", None]
    first, second = response.attempts
    assert first.error is not None
    assert first.error.retry_after == 0.01
    assert first.error.code == "rate_limit_exceeded"
    assert first.error.deployment == "mythic"
    # The jitter drew 0: the wait is the server's Retry-After, no less.
    assert second.waited == pytest.approx(0.01)
    assert len(script.requests) == 2


def test_unavailable_twice_then_success(make_router: MakeRouter) -> None:
    script = FaultScript(
        [Fault(error="maintenance", retry_after=0.001), Fault(error="overloaded", retry_after=0.001)]
    )
    response = make_router(script).chat(HI)
    assert kinds(response.attempts) == ["unavailable", "unavailable", None]


def test_server_error_is_retried_twice_then_raised(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="server_error")] * 5)
    with pytest.raises(turnout.InternalServerError) as info:
        make_router(script).chat(HI)
    assert kinds(info.value.attempts) == ["server_error"] * 3
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_api_key", turnout.AuthenticationError),
        ("account_suspended", turnout.PermissionDeniedError),
        ("invalid_parameter", turnout.BadRequestError),
        ("context_length_exceeded", turnout.ContextLengthError),
        ("not_found", turnout.NotFoundError),
    ],
)
def test_client_errors_are_not_retried(make_router: MakeRouter, code: str, cls: type[Exception]) -> None:
    script = FaultScript([Fault(error=code)] * 3)
    with pytest.raises(cls) as info:
        make_router(script).chat(HI)
    assert len(script.requests) == 1
    assert info.value.code == code  # type: ignore[attr-defined]


def test_a_502_page_is_not_retried_but_falls_back(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(html=502)])
    router = make_router(
        script,
        [deployment("a"), deployment("b", host="mythic2.test")],
        hosts=(HOST, "mythic2.test"),
    )
    response = router.chat(HI)
    assert kinds(response.attempts) == ["upstream_error", None]
    assert response.deployment == "b"


def test_authentication_falls_back_to_the_next_deployment(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="revoked_api_key")])
    router = make_router(
        script,
        [deployment("a"), deployment("b", host="mythic2.test", api_key="sk-other-key-000000")],
        hosts=(HOST, "mythic2.test"),
    )
    response = router.chat(HI)
    assert kinds(response.attempts) == ["authentication", None]
    # Each key went only to its own gateway.
    assert [(r.headers["authorization"]) for r in script.requests] == [
        f"Bearer {KEY}",
        "Bearer sk-other-key-000000",
    ]


def test_context_length_moves_only_to_a_context_window_route(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="max_tokens_exceeded")])
    router = make_router(
        script,
        [deployment("short"), deployment("long", host="mythic2.test")],
        hosts=(HOST, "mythic2.test"),
        routes={
            "chat": {"deployments": ["short"], "context_window_fallbacks": ["long"]},
            "long": ["long"],
        },
    )
    response = router.chat(HI, model="chat")
    assert kinds(response.attempts) == ["context_length_exceeded", None]
    assert response.deployment == "long"


def test_malformed_success_is_a_parse_error(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(malformed=True)] * 3)
    with pytest.raises(turnout.ResponseParseError):
        make_router(script).chat(HI)
    assert len(script.requests) == 1


class HugePage(MythicDotEmulator):
    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        return EmulatedResponse(503, (("content-type", "text/html"),), b"<p>" + b"x" * (5 * 1024 * 1024))


def test_five_megabyte_error_page_through_the_router() -> None:
    router = turnout.Router([deployment()], transport=mock_transport({HOST: HugePage()}), rng=NoJitter())
    with router, pytest.raises(turnout.ServiceUnavailableError) as info:
        router.chat(HI)
    assert len(info.value.attempts) == 3
    assert len(info.value.message) <= 500


# -- streams ---------------------------------------------------------------------


def test_stream(make_router: MakeRouter) -> None:
    script = FaultScript()
    with make_router(script).stream(HI) as stream:
        chunks = list(stream)
    assert "".join(c.delta for c in chunks) == "echo: hello mythic world"
    assert chunks[-1].finish_reason == "stop"
    assert stream.response is not None
    assert stream.response.content == "echo: hello mythic world"
    assert stream.response.provider == "mythicdot"
    assert json.loads(script.requests[0].body)["stream"] is True
    assert script.requests[0].headers["accept"] == "text/event-stream"


def test_stream_rate_limited_then_success(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="rate_limit_exceeded", retry_after=0.01)])
    with make_router(script).stream(HI) as stream:
        text = "".join(c.delta for c in stream)
    assert text == "echo: hello mythic world"
    assert kinds(stream.attempts) == ["rate_limited", None]


def test_stream_error_frame_before_the_first_chunk_is_retried(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(stream_error="overloaded", stream_error_after=0)])
    with make_router(script).stream(HI) as stream:
        text = "".join(c.delta for c in stream)
    assert text == "echo: hello mythic world"
    assert kinds(stream.attempts) == ["unavailable", None]


def test_stream_error_frame_mid_stream_keeps_the_partial_text(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(stream_error="server_error", stream_error_after=2)])
    received: list[str] = []
    with make_router(script).stream(HI) as stream, pytest.raises(turnout.InternalServerError) as info:
        received.extend(chunk.delta for chunk in stream)
    assert received == ["echo: ", "hello "]
    assert info.value.partial_text == "echo: hello "
    assert info.value.code == "server_error"
    assert info.value.status == 500  # an in-band error carries its code's documented status
    assert len(script.requests) == 1


def test_stream_dropped_mid_transfer(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(drop_after=1)])
    with make_router(script).stream(HI) as stream, pytest.raises(turnout.StreamInterruptedError) as info:
        list(stream)
    assert info.value.partial_text == "echo: "


def test_stream_error_status(make_router: MakeRouter) -> None:
    script = FaultScript([Fault(error="model_not_in_plan")])
    with make_router(script).stream(HI) as stream, pytest.raises(turnout.PermissionDeniedError) as info:
        list(stream)
    assert info.value.status == 403
    assert [d.field for d in info.value.details] == ["model"]


# -- asyncio ---------------------------------------------------------------------


async def test_async_chat(make_async_router: MakeAsyncRouter) -> None:
    script = FaultScript()
    async with make_async_router(script) as router:
        response = await router.chat(HI)
    assert response.content == "echo: hello mythic world"
    assert response.provider == "mythicdot"
    assert script.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_async_rate_limited_then_success(make_async_router: MakeAsyncRouter) -> None:
    script = FaultScript([Fault(error="rate_limited", retry_after=0.01)])
    async with make_async_router(script) as router:
        response = await router.chat(HI)
    assert kinds(response.attempts) == ["rate_limited", None]
    assert response.attempts[1].waited == pytest.approx(0.01)


async def test_async_errors_are_normalized(make_async_router: MakeAsyncRouter) -> None:
    script = FaultScript([Fault(error="unsupported_region")])
    async with make_async_router(script) as router:
        with pytest.raises(turnout.PermissionDeniedError) as info:
            await router.chat(HI)
    assert info.value.code == "unsupported_region"
    assert len(script.requests) == 1


async def test_async_stream(make_async_router: MakeAsyncRouter) -> None:
    async with make_async_router() as router, router.stream(HI) as stream:
        chunks = [chunk async for chunk in stream]
    assert "".join(c.delta for c in chunks) == "echo: hello mythic world"
    assert chunks[-1].finish_reason == "stop"


async def test_async_stream_rate_limited_then_success(make_async_router: MakeAsyncRouter) -> None:
    script = FaultScript([Fault(error="rate_limited", retry_after=0.01)])
    async with make_async_router(script) as router, router.stream(HI) as stream:
        text = "".join([chunk.delta async for chunk in stream])
    assert text == "echo: hello mythic world"
    assert kinds(stream.attempts) == ["rate_limited", None]


async def test_async_stream_error_mid_stream(make_async_router: MakeAsyncRouter) -> None:
    script = FaultScript([Fault(stream_error="maintenance", stream_error_after=1)])
    async with make_async_router(script) as router, router.stream(HI) as stream:
        with pytest.raises(turnout.ServiceUnavailableError) as info:
            async for _ in stream:
                pass
    assert info.value.partial_text == "echo: "


# -- plugin discovery ------------------------------------------------------------


def test_entry_point_discovery() -> None:
    info = turnout.providers()["mythicdot"]
    assert info.distribution == "turnout-mythicdot"
    assert info.version == "0.1.0"
    assert info.module == "turnout_mythicdot.provider"


def test_registered_through_the_hooks() -> None:
    import turnout_mythicdot

    plugins = turnout.Plugins(entry_points=False)
    plugins.register(turnout_mythicdot)
    plugins.check_pending()
    assert type(plugins.providers()["mythicdot"]).__name__ == "MythicDot"
    assert set(plugins.emulators()) == {"mythicdot"}


def test_registering_the_provider_does_not_import_the_emulator() -> None:
    code = (
        "import sys, turnout_mythicdot\n"
        "found = []\n"
        "turnout_mythicdot.turnout_register_providers(found.append)\n"
        "assert [p.name for p in found] == ['mythicdot'], found\n"
        "assert 'turnout_mythicdot.emulator' not in sys.modules\n"
        "assert 'httpx' not in sys.modules\n"
        "turnout_mythicdot.turnout_register_emulators(found.append)\n"
        "assert 'turnout_mythicdot.emulator' in sys.modules\n"
        "print(type(found[1]).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "MythicDotEmulator"


def test_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTHICDOT_API_KEY", KEY)
    router = turnout.Router.from_config(
        {
            "deployments": [
                {
                    "name": "mythic",
                    "provider": "mythicdot",
                    "model": "mythic-4",
                    "api_key": "env:MYTHICDOT_API_KEY",
                    "base_url": BASE_URL,
                }
            ]
        },
        transport=mock_transport({HOST: MythicDotEmulator()}),
    )
    with router:
        assert router.chat(HI).content == "echo: hello mythic world"


# -- the key never shows ---------------------------------------------------------


class EchoingKey(MythicDotEmulator):
    """A gateway that quotes the rejected key back, as some do."""

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        body = {
            "error": {
                "message": f"Incorrect API key provided: {request.bearer()}.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        return EmulatedResponse.json(401, body, (("x-request-id", "req_1"),))


def test_the_key_never_appears_in_errors_deployments_or_attempts() -> None:
    dep = deployment()
    router = turnout.Router([dep], transport=mock_transport({HOST: EchoingKey()}))
    with router, pytest.raises(turnout.AuthenticationError) as info:
        router.chat(HI)
    error = info.value
    assert "***" in error.message
    shown = [
        str(error),
        repr(error),
        error.message,
        repr(error.attempts),
        str(error.attempts),
        repr(dep),
        str(dep),
        repr(router.deployments),
        repr(dep.api_key),
    ]
    for text in shown:
        assert KEY not in text
    assert dep.key() == KEY  # but it is there to be sent


def test_the_key_never_appears_in_the_request_repr(provider: turnout.Provider) -> None:
    request = provider.request(deployment(), turnout.ChatRequest(HI), stream=True)  # type: ignore[attr-defined]
    assert KEY not in repr(request)
    assert KEY not in str(request)
