"""What SaaS-LiteLLM carries, and what it would drop without a word: tool calls (it drops
them from its answers), `response_format` (it reaches OpenAI upstreams only), and any
parameter outside its documented few. Such a request is never sent to it: the router
skips the deployment, or raises `unsupported_feature` before any request; a job session
refuses the call. Content parts are passed on verbatim."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout_litellm import JobSession

from .conftest import HI, deployment
from .recorded import ANTHROPIC_ANSWER, CALL_ANSWER, CHATS, JSON, Recorded, job_answers, lite

BASE = "https://lite.test/api"
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"tool_choice": "auto", "tools": TOOLS}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"seed": 7}, "parameter 'seed'"),
        ({"n": 2}, "parameter 'n'"),
        ({"frequency_penalty": 0.5}, "parameter 'frequency_penalty'"),
        ({"logprobs": True}, "parameter 'logprobs'"),
    ],
)
@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_the_router_refuses_before_any_request(call: Any, params: dict[str, Any], missing: str) -> None:
    transport = Recorded({"create-and-call": [(200, JSON, ANTHROPIC_ANSWER)]})
    error = call([lite("lite", BASE)], transport, **params)
    assert isinstance(error, turnout.BadRequestError)
    assert error.code == "unsupported_feature"
    assert missing in error.message
    assert error.details[0].field == "lite"
    assert transport.requests == []


def test_a_tool_call_in_the_history_needs_tools_too():
    history = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    transport = Recorded({"create-and-call": [(200, JSON, ANTHROPIC_ANSWER)]})
    with (
        turnout.Router([lite("lite", BASE)], transport=transport) as router,
        pytest.raises(turnout.BadRequestError, match="tools"),
    ):
        router.chat(history)
    assert transport.requests == []


def test_what_it_carries_is_sent_as_given():
    transport = Recorded({"create-and-call": [(200, JSON, ANTHROPIC_ANSWER)]})
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    messages = [{"role": "user", "content": parts, "name": "ann"}]
    params = {
        "temperature": 0.2,
        "max_tokens": 40,
        "top_p": 0.9,
        "stop": ["END"],
        "job_metadata": {"ticket": 7},
        "user_id": "u-1",
        "purpose": "vision",
    }
    with turnout.Router([lite("lite", BASE)], transport=transport) as router:
        router.chat(messages, extra_body={"custom": True}, **params)
    (sent,) = transport.requests
    assert json.loads(sent.content) == {
        **params,
        "team_id": "team_test",
        "job_type": "turnout",
        "model": "ChatAgent",
        "messages": messages,
        "custom": True,
    }


@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"seed": 1}, "parameter 'seed'"),
        ({"job_metadata": {"a": 1}}, "parameter 'job_metadata'"),  # a job's, not a call's
    ],
)
def test_a_job_session_refuses_the_call(params: dict[str, Any], missing: str) -> None:
    transport = Recorded(job_answers(llm_call=[(200, JSON, CALL_ANSWER)]))
    with JobSession(lite("lite", BASE), transport=transport) as job:
        with pytest.raises(turnout.BadRequestError) as raised:
            job.chat(HI, **params)
        assert raised.value.code == "unsupported_feature"
        assert missing in raised.value.message
        assert raised.value.deployment == "lite"
        job.chat(HI, purpose="parse", call_metadata={"step": 1}, temperature=0)
    assert transport.paths() == ["create", "llm-call", "complete"]
    assert json.loads(transport.requests[1].content)["call_metadata"] == {"step": 1}


def test_a_deployment_default_it_would_drop_is_a_config_error():
    with pytest.raises(turnout.ConfigError) as raised:
        turnout.Router([deployment(options={"team_id": "t", "params": {"seed": 3}})])
    assert raised.value.path == "deployments[0].options.params.seed"
    assert "drops this parameter" in str(raised.value)


def test_deployment_defaults_go_where_they_are_carried():
    dep = deployment(options={"team_id": "t", "params": {"temperature": 0.1, "job_metadata": {"a": 1}}})
    transport = Recorded(job_answers(llm_call=[(200, JSON, CALL_ANSWER)]))
    with JobSession(dep, transport=transport) as job:
        job.chat(HI)
    body = json.loads(transport.requests[1].content)
    assert body["temperature"] == 0.1
    assert "job_metadata" not in body  # create-and-call carries it; a job call does not
