"""The request as the gateway receives it, over real loopback HTTP, for every provider,
Router and AsyncRouter, chat and stream: messages verbatim (content parts, names,
tool calls, tool results, refusals, fields turnout has never heard of), every chat
parameter as given, `extra_headers` as headers, `extra_body` merged into the body,
`metadata` nowhere, and the per-call `timeout` and `deadline` honoured."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .chatkit import (
    CLOCK,
    HOWS,
    IMAGE,
    OPENAI_LIKE,
    PROVIDERS,
    WEATHER,
    Wire,
    call,
    sent_messages,
    sent_params,
)
from .conftest import KEYS, MODELS, deployment

PHOTO = [{"type": "text", "text": "Where was this photo taken?"}, IMAGE]
TOOL_HISTORY = [
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_a1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_a1", "content": '{"temp": 21, "unit": "c"}'},
]


def history(provider: str) -> list[dict[str, Any]]:
    """A conversation using everything a message can carry (ModelRoute's API takes no
    tools, so its conversation has no tool calls)."""
    tools = [] if provider == "modelroute" else TOOL_HISTORY
    return [
        {"role": "system", "content": "You are terse.", "name": "policy"},
        {"role": "user", "content": PHOTO, "x_client_tag": {"kept": [1, "two", None]}},
        *tools,
        {"role": "assistant", "content": "It is 21 degrees in Paris.", "refusal": None, "annotations": []},
        {"role": "user", "name": "alice", "content": [{"type": "text", "text": "And the time?"}]},
    ]


SAMPLING = {
    "temperature": 0.3,
    "top_p": 0.9,
    "max_tokens": 64,
    "max_completion_tokens": 64,
    "stop": ["\n\n", "END"],
    "seed": 7,
    "logprobs": False,
    "n": 1,
    "presence_penalty": 0.0,
    "frequency_penalty": -0.5,
    "user": "user-1",
    "store": False,
    "reasoning_effort": "low",
    "response_format": {"type": "text"},
    # A parameter a gateway shipped yesterday: no allow-list stands in its way.
    "brand_new_param": {"nested": [1, {"deep": True}], "unicode": "žluťoučký"},
}
TOOLING = {"tools": [WEATHER, CLOCK], "tool_choice": "auto", "parallel_tool_calls": True}
EXTRA_HEADERS = {"X-Trace-Id": "trace-4d2", "OpenAI-Organization": "org-77"}
EXTRA_BODY = {"x_gateway_route": {"region": "eu", "tier": 2}, "seed": 8}
METADATA = {"ticket": "meta-secret-9f3a", "customer": "cust-0042"}


def params(provider: str) -> dict[str, Any]:
    return {**SAMPLING, **({} if provider == "modelroute" else TOOLING)}


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_whole_request_reaches_the_gateway_as_given(wire: Wire, provider: str, how: str) -> None:
    fake = wire.fake
    messages = history(provider)
    given = params(provider)
    outcome = call(
        how,
        [deployment(fake, provider)],
        messages,
        extra_headers=EXTRA_HEADERS,
        extra_body=EXTRA_BODY,
        metadata=METADATA,
        **given,
    )
    assert outcome.response.provider == provider
    body = wire.body(provider)
    # Messages verbatim: every field, every part, in order, nothing added.
    assert sent_messages(provider, body) == messages
    # Every chat parameter as given; the stream flag only on a stream.
    streamed = how.endswith("stream") and provider != "modelroute"
    if provider == "modelroute":
        assert sent_params(provider, body) == given
        assert body["model"] == MODELS[provider]
        # extra_body merges into the body as given, over what turnout wrote.
        assert {k: body[k] for k in EXTRA_BODY} == EXTRA_BODY
        assert set(body) == {"model", "input", *EXTRA_BODY}
    else:
        assert sent_params(provider, body) == {**given, **EXTRA_BODY}
        assert body["model"] == MODELS[provider]
        assert body.get("stream") is (True if streamed else None)
    # extra_headers are headers of every request of the call (ModelRoute's polls too).
    for request in wire.requests(provider):
        assert request.headers["x-trace-id"] == "trace-4d2"
        assert request.headers["openai-organization"] == "org-77"
        assert request.headers["authorization"] == f"Bearer {KEYS[provider]}"
        assert "x_gateway_route" not in request.headers
    # metadata is never sent: not in any body, not in any header.
    for request in wire.requests(provider):
        seen = request.body.decode() + json.dumps(dict(request.headers))
        for key, value in METADATA.items():
            assert key not in seen
            assert value not in seen
    assert wire.total() == len(wire.requests(provider))


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", OPENAI_LIKE)
def test_a_parameter_given_as_none_or_false_is_sent_as_given(wire: Wire, provider: str, how: str) -> None:
    given = {"tool_choice": "none", "tools": [WEATHER], "logit_bias": {"50256": -100}, "temperature": 0}
    outcome = call(how, [deployment(wire.fake, provider)], [{"role": "user", "content": "hi"}], **given)
    assert sent_params(provider, wire.body(provider)) == given
    assert outcome.response.content == "echo: hi"


@pytest.mark.parametrize("how", HOWS)
def test_a_stream_options_parameter_reaches_the_gateway(wire: Wire, how: str) -> None:
    options = {"include_usage": True}
    call(how, [deployment(wire.fake, "mume")], [{"role": "user", "content": "hi"}], stream_options=options)
    assert wire.body("mume")["stream_options"] == options


# -- per-call timeout and deadline ---------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_per_call_timeout_ends_a_slow_attempt(fake: FakeGateways, provider: str, how: str) -> None:
    """The router's own timeout is 60 s: an answer 0.6 s late arrives without `timeout=`, and
    is cut with `timeout=0.2`, the next attempt (answered at once) giving the answer."""
    slow = Fault(latency=0.6)
    first = {"retry_policy": turnout.RetryPolicy(max_retries=1, base=0.01, cap=0.01)}
    fake.script(provider, slow)
    patient = call(how, [deployment(fake, provider, **first)], [{"role": "user", "content": "hi"}])
    assert [a.error for a in patient.response.attempts] == [None]
    fake.script(provider, slow)
    hasty = call(how, [deployment(fake, provider, **first)], [{"role": "user", "content": "hi"}], timeout=0.2)
    errors = [a.error.kind.value if a.error else "ok" for a in hasty.response.attempts]
    assert errors == ["timeout", "ok"]
    assert hasty.response.content == "echo: hi"


@pytest.mark.parametrize("how", HOWS)
def test_a_per_call_deadline_replaces_the_routers(fake: FakeGateways, how: str) -> None:
    fake.set_faults("mume", {"latency": 1.0})
    with pytest.raises(turnout.APITimeoutError) as info:
        call(how, [deployment(fake, "mume")], [{"role": "user", "content": "hi"}], deadline=0.3)
    assert info.value.code == "deadline_exceeded"
    assert "0.3" in info.value.message
