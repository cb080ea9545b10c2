"""One call through either router, as the gateway sees it and as the caller gets it.

Every test runs with `turnout.Router` and `turnout.AsyncRouter` (the `calls`
fixture) over acme's emulator: what a provider plugin's codec adds on top is
tested in that plugin's folder.
"""

from __future__ import annotations

import turnout
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, FaultScript, mock_transport

from .acme import AcmeEmulator
from .calls import ANSWER, FAST, HI, Calls, emulated, history
from .conftest import deployment

KEY = "sk-acme-a-0123456789"


async def test_chat(calls: Calls) -> None:
    script = FaultScript()
    response = await calls.chat([deployment("a")], emulated(script), params={"temperature": 0.2})
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == ANSWER
    assert response.finish_reason == "stop"
    assert response.provider == "acme"
    assert response.deployment == "a"
    assert response.model == "model-a"
    assert response.request_id == "req_acme_000001"
    # As the emulator counts (turnout._emulated_answers): 3 per message + 3 words of prompt,
    # 4 words of answer, and the details OpenAI reports (nothing cached, no reasoning).
    assert response.usage == turnout.Usage(6, 4, 10, cached_tokens=0, reasoning_tokens=0)
    assert history(response.attempts) == [("a", None)]
    (sent,) = script.requests
    assert (sent.method, sent.host, sent.path) == ("POST", "a.test", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {"model": "model-a", "messages": HI, "temperature": 0.2}  # no "stream"


async def test_stream(calls: Calls) -> None:
    script = FaultScript()
    streamed = await calls.stream([deployment("a")], emulated(script))
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert streamed.deltas[:2] == ["echo: ", "hello "]
    assert streamed.chunks[-1].finish_reason == "stop"
    assert streamed.response is not None
    assert streamed.response.content == ANSWER
    assert streamed.response.finish_reason == "stop"
    assert streamed.response.deployment == "a"
    assert streamed.response.provider == "acme"
    assert history(streamed.attempts) == [("a", None)]
    (sent,) = script.requests
    assert sent.json()["stream"] is True
    assert sent.headers["accept"] == "text/event-stream"


async def test_deployment_options_add_headers_and_parameters(calls: Calls) -> None:
    script = FaultScript()
    options = {"params": {"max_tokens": 64}, "headers": {"X-Title": "app"}}
    dep = deployment("a", options=options)
    await calls.chat([dep], emulated(script), params={"temperature": 0.5})
    await calls.stream([dep], emulated(script))
    plain, streamed = script.requests
    assert f"https://{plain.host}{plain.path}" == "https://a.test/v1/chat/completions"
    assert plain.method == "POST"
    assert plain.headers["authorization"] == f"Bearer {KEY}"
    assert plain.headers["x-title"] == "app"
    assert plain.json() == {"model": "model-a", "messages": HI, "max_tokens": 64, "temperature": 0.5}
    assert streamed.json()["stream"] is True
    assert streamed.headers["accept"] == "text/event-stream"


async def test_without_a_base_url_the_providers_default_is_used(calls: Calls) -> None:
    script = FaultScript()
    transport = mock_transport({"acme.test": AcmeEmulator()}, script)
    bare = turnout.Deployment("d", "acme", "model-d", api_key=KEY)
    response = await calls.chat([bare], transport)
    assert isinstance(response, turnout.ChatResponse)
    assert [(r.host, r.path) for r in script.requests] == [("acme.test", "/v1/chat/completions")]


async def test_a_base_url_keeps_its_path_and_drops_a_trailing_slash(calls: Calls) -> None:
    script = FaultScript()
    await calls.chat([deployment("a", base_url="https://a.test/api/v1/")], emulated(script))
    assert [f"https://{r.host}{r.path}" for r in script.requests] == [
        "https://a.test/api/v1/chat/completions"
    ]


class Gatekeeper(AcmeEmulator):
    """acme refusing a request without a key, as gateways do."""

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        if request.bearer() is None:
            return self.render_error("invalid_key")
        return super().respond(request, fault)


async def test_a_deployment_without_a_key_sends_none_and_is_refused(calls: Calls) -> None:
    script = FaultScript()
    transport = mock_transport({"a.test": Gatekeeper()}, script)
    error = await calls.chat([deployment("a", api_key=None)], transport, retry_policy=FAST)
    assert isinstance(error, turnout.AuthenticationError)
    assert (error.code, error.status) == ("invalid_key", 401)
    assert len(error.attempts) == 1
    assert [("authorization" in r.headers) for r in script.requests] == [False]
