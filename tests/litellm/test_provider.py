"""The codec and its flows, sans-IO: requests, responses, frames, configuration, retry policy."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import turnout
from turnout import ChatChunk, ChatRequest, ErrorKind, GiveUp, HTTPResponse, Retry, Send, Usage
from turnout_litellm.provider import (
    COMPLETE_TIMEOUT,
    CREATE_AND_CALL_TIMEOUT,
    CREATE_TIMEOUT,
    LITELLM_RETRY,
    LLM_CALL_TIMEOUT,
    STREAM_TIMEOUT,
    JobCallRequest,
    JobResult,
    LiteLLM,
)

from .conftest import BASE, KEY, TEAM, deployment

PROVIDER = LiteLLM()
HI = [{"role": "user", "content": "hi"}]
JOB = "3f1c2b9e-8a4d-4c6e-9b1a-2d5e7f9a0b1c"


def first_send(flow: Any) -> Send:
    command = next(flow)
    assert isinstance(command, Send)
    return command


def finish(flow: Any, response: HTTPResponse) -> Any:
    with pytest.raises(StopIteration) as done:
        flow.send(response)
    return done.value.value


def ok(payload: Any) -> HTTPResponse:
    return HTTPResponse(200, {"content-type": "application/json"}, json.dumps(payload).encode())


# -- requests ----------------------------------------------------------------------


def test_create_and_call_request():
    dep = deployment(options={"team_id": TEAM, "job_type": "chat", "params": {"temperature": 0.1}})
    request = ChatRequest(HI, {"max_tokens": 5, "top_p": 0.9, "stop": "END", "job_metadata": {"a": 1}})
    http = PROVIDER.request(dep, request, stream=False)
    assert http.method == "POST"
    assert http.url == f"{BASE}/jobs/create-and-call"
    assert http.timeout == CREATE_AND_CALL_TIMEOUT == 60.0
    assert http.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(http.content) == {
        "team_id": TEAM,
        "job_type": "chat",
        "model": "ChatAgent",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.1,
        "max_tokens": 5,
        "top_p": 0.9,
        "stop": ["END"],
        "job_metadata": {"a": 1},
    }
    assert KEY not in repr(http)


def test_create_and_call_stream_request():
    http = PROVIDER.request(deployment(), ChatRequest(HI, {"stream": True}), stream=True)
    assert http.url == f"{BASE}/jobs/create-and-call-stream"
    assert http.timeout == STREAM_TIMEOUT == 120.0
    assert http.headers["accept"] == "text/event-stream"
    body = json.loads(http.content)
    assert body["job_type"] == "turnout"  # the default
    assert "stream" not in body


def test_call_params_cannot_override_the_deployment_identity():
    http = PROVIDER.request(deployment(), ChatRequest(HI, {"team_id": "evil", "model": "x"}), stream=False)
    body = json.loads(http.content)
    assert body["team_id"] == TEAM
    assert body["model"] == "ChatAgent"


def test_job_call_requests():
    request = JobCallRequest(HI, {"temperature": 0.5, "purpose": "parse"}, job_id=JOB)
    http = PROVIDER.request(deployment(), request, stream=False)
    assert http.url == f"{BASE}/jobs/{JOB}/llm-call"
    assert http.timeout == LLM_CALL_TIMEOUT == 60.0
    assert json.loads(http.content) == {
        "model": "ChatAgent",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "purpose": "parse",
    }
    streamed = PROVIDER.request(deployment(), JobCallRequest(HI, job_id=JOB, model="Other"), stream=True)
    assert streamed.url == f"{BASE}/jobs/{JOB}/llm-call-stream"
    assert streamed.timeout == STREAM_TIMEOUT
    assert json.loads(streamed.content)["model"] == "Other"


def test_create_job_flow():
    flow = PROVIDER.create_job(deployment(), job_type="resume", metadata={"doc": 7}, user_id="u1")
    send = first_send(flow)
    assert send.request.url == f"{BASE}/jobs/create"
    assert send.request.timeout == CREATE_TIMEOUT == 10.0
    assert json.loads(send.request.content) == {
        "team_id": TEAM,
        "job_type": "resume",
        "metadata": {"doc": 7},
        "user_id": "u1",
    }
    assert finish(flow, ok({"job_id": JOB, "status": "PENDING", "created_at": "x"})) == JOB


@pytest.mark.parametrize(
    "response",
    [
        ok({"status": "PENDING"}),
        ok({"job_id": 5}),
        ok({"job_id": "j-1"}),  # not a UUID: every later request would get a plain 500
        ok(["j"]),
        HTTPResponse(200, {}, b"not json"),
    ],
)
def test_create_job_without_an_id_is_a_parse_error(response):
    flow = PROVIDER.create_job(deployment())
    first_send(flow)
    with pytest.raises(turnout.ResponseParseError):
        flow.send(response)


def test_create_job_error_is_normalized():
    flow = PROVIDER.create_job(deployment())
    first_send(flow)
    with pytest.raises(turnout.InsufficientCreditsError) as raised:
        flow.send(HTTPResponse(403, {}, b'{"detail": "Insufficient credits"}'))
    assert raised.value.status == 403


def test_complete_job_flow():
    flow = PROVIDER.complete_job(deployment(), JOB, status="failed", error_message="boom")
    send = first_send(flow)
    assert send.request.url == f"{BASE}/jobs/{JOB}/complete"
    assert send.request.timeout == COMPLETE_TIMEOUT == 30.0
    assert send.cleanup is False
    assert json.loads(send.request.content) == {"status": "failed", "error_message": "boom"}
    result = finish(
        flow,
        ok(
            {
                "job_id": JOB,
                "status": "FAILED",
                "completed_at": "2025-01-01T00:00:00.123456",
                "costs": {
                    "total_calls": 2,
                    "total_tokens": 30,
                    "credits_remaining": 99,
                    "credit_applied": False,
                },
                "calls": [{"call_id": "c1"}, "junk"],
            }
        ),
    )
    assert isinstance(result, JobResult)
    assert (result.status, result.total_calls, result.total_tokens) == ("failed", 2, 30)
    assert (result.credits_remaining, result.credit_applied) == (99, False)
    assert result.calls == ({"call_id": "c1"},)


def test_complete_job_refuses_other_statuses():
    with pytest.raises(ValueError, match="completed"):
        next(PROVIDER.complete_job(deployment(), JOB, status="done"))


def test_job_result_tolerates_odd_costs():
    result = JobResult("j", "completed", {"total_calls": "2", "credit_applied": 1, "total_cost_usd": True})
    assert result.total_calls is None
    assert result.credit_applied is None
    assert result.total_cost_usd is None
    assert JobResult("j", "completed", {"total_cost_usd": 3}).total_cost_usd == 3.0


# -- responses ---------------------------------------------------------------------


def test_create_and_call_response():
    payload = {
        "job_id": "job-9",
        "status": "completed",
        "response": {"content": "Hello!", "finish_reason": "stop"},
        "metadata": {"tokens_used": 12, "latency_ms": 300, "model": "ChatAgent"},
        "costs": {"total_calls": 1},
        "completed_at": "2025-01-01T00:00:00",
    }
    response = PROVIDER.parse_completion(ok(payload))
    assert response.content == "Hello!"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(None, None, 12)  # prompt and completion: not reported
    assert response.model == "ChatAgent"
    assert response.request_id == "job-9"


def test_llm_call_response_uses_the_call_id():
    payload = {
        "call_id": "call-3",
        "response": {"content": None, "finish_reason": "tool_calls"},
        "metadata": {},
    }
    response = PROVIDER.parse_completion(ok(payload))
    assert response.content == ""
    assert response.request_id == "call-3"
    assert response.usage is None


@pytest.mark.parametrize(
    "response",
    [
        HTTPResponse(200, {}, b"<html>hi</html>"),
        HTTPResponse(200, {}, b""),
        HTTPResponse(200, {}, b"\xff\xfe\x00"),
        ok([1, 2]),
        ok({"unexpected": True}),
        ok({"response": "text"}),
        ok({"response": {"content": 5}}),
        HTTPResponse(200, {}, b'{"response": {"content": "x"}}', truncated=True),
        HTTPResponse(200, {}, b"[" * 100_000),  # nested past the parser's stack
    ],
    ids=["html", "empty", "binary", "list", "unexpected", "str-response", "int-content", "truncated", "deep"],
)
def test_hostile_success_bodies_are_parse_errors(response):
    with pytest.raises(turnout.ResponseParseError):
        PROVIDER.parse_completion(response)


def test_an_error_reported_with_200_is_raised_normalized():
    with pytest.raises(turnout.RateLimitError):
        PROVIDER.parse_completion(ok({"detail": "LLM call failed: Error code: 429 - {}"}))


def test_a_failed_job_in_a_200_is_an_error():
    with pytest.raises(turnout.ProviderError) as raised:
        PROVIDER.parse_completion(
            ok({"status": "failed", "response": {"content": ""}, "error_message": "Error code: 503 - x"})
        )
    assert raised.value.kind == "unavailable"


def test_a_whole_openai_completion_is_accepted():
    payload = {"id": "c1", "choices": [{"message": {"content": "hey"}, "finish_reason": "stop"}]}
    assert PROVIDER.parse_completion(ok(payload)).content == "hey"


# -- stream frames -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "chunk"),
    [
        ({"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]}, ChatChunk("Hi")),
        ({"choices": [{"delta": {}, "finish_reason": "stop"}]}, ChatChunk("", "stop")),
        ({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}, ChatChunk("Hi")),
        (
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
            ChatChunk("", "stop", Usage(None, 4, None)),
        ),
        ({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}, ChatChunk("", "length")),
        ({"candidates": [{"content": {"parts": [{"text": "Hi"}, {"text": "!"}]}}]}, ChatChunk("Hi!")),
        (
            {
                "candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
            },
            ChatChunk("", "length", Usage(3, 2, 5)),
        ),
        ({"candidates": [{"finishReason": "OTHER"}]}, ChatChunk("", "OTHER")),  # unknown: as sent
    ],
)
def test_frames_of_every_upstream_yield_chunks(frame, chunk):
    assert PROVIDER.chunk_from(frame) == chunk


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "message_start", "message": {"id": "m", "usage": {"output_tokens": 1}}},
        {"type": "content_block_start", "index": 0},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{"}},
        {"type": "content_block_stop"},
        {"type": "message_stop"},
        {"type": "ping"},
        {"type": "message_delta", "delta": "odd"},
        {"candidates": []},
        {"candidates": ["odd"]},
        {"choices": []},
        {"something": "else"},
    ],
)
def test_frames_without_text_yield_nothing(frame):
    assert PROVIDER.chunk_from(frame) is None


# -- configuration -------------------------------------------------------------------


def router_with(dep: turnout.Deployment) -> turnout.Router:
    return turnout.Router([dep])


def test_missing_team_id_is_a_config_error_naming_the_path():
    with pytest.raises(turnout.ConfigError) as raised:
        router_with(deployment(options={}))
    assert raised.value.path == "deployments[0].options.team_id"
    assert "deployments[0].options.team_id" in str(raised.value)


def test_missing_team_id_in_the_second_deployment():
    with pytest.raises(turnout.ConfigError) as raised:
        turnout.Router([deployment("a"), deployment("b", options={"job_type": "x"})])
    assert raised.value.path == "deployments[1].options.team_id"


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"team_id": ""}, "deployments[0].options.team_id"),
        ({"team_id": 42}, "deployments[0].options.team_id"),
        ({"team_id": "t", "job_type": ""}, "deployments[0].options.job_type"),
        ({"team_id": "t", "params": "temperature=1"}, "deployments[0].options.params"),
        ({"team_id": "t", "teamid": "typo"}, "deployments[0].options.teamid"),
    ],
)
def test_bad_options(options, path):
    with pytest.raises(turnout.ConfigError) as raised:
        router_with(deployment(options=options))
    assert raised.value.path == path


def test_missing_base_url_is_a_config_error():
    with pytest.raises(turnout.ConfigError) as raised:
        router_with(deployment(base_url=None))
    assert raised.value.path == "deployments[0].base_url"


def test_check_deployment_explains_the_missing_base_url():
    with pytest.raises(turnout.ConfigError, match="no public URL") as raised:
        PROVIDER.check_deployment(deployment(base_url=None), "deployments[3]")
    assert raised.value.path == "deployments[3].base_url"


def test_config_mapping_with_team_id():
    router = turnout.Router.from_config(
        {
            "deployments": [
                {
                    "name": "lite",
                    "provider": "litellm",
                    "model": "ChatAgent",
                    "api_key": KEY,
                    "base_url": BASE,
                    "options": {"team_id": TEAM, "job_type": "chat"},
                }
            ]
        }
    )
    assert router.deployments["lite"].options["team_id"] == TEAM
    with pytest.raises(turnout.ConfigError) as raised:
        turnout.Router.from_config(
            {"deployments": [{"name": "lite", "provider": "litellm", "model": "m", "base_url": BASE}]}
        )
    assert raised.value.path == "deployments[0].options.team_id"


# -- retry policy ----------------------------------------------------------------------


def err(kind: ErrorKind, status: int | None, **kw: Any) -> turnout.ProviderError:
    return turnout.KIND_RULES[kind].exception("x", kind=kind, status=status, **kw)


@pytest.mark.parametrize(
    "error",
    [
        err(ErrorKind.RATE_LIMITED, 429),
        err(ErrorKind.SERVER_ERROR, 500),
        # A 500 classified by an upstream status: the policy would repeat it, but the
        # server's wrapped failures say retryable=False (test_wrapped_failures.py).
        err(ErrorKind.RATE_LIMITED, 500),
        err(ErrorKind.UPSTREAM_ERROR, 500),
        err(ErrorKind.UNAVAILABLE, 503),
        err(ErrorKind.TIMEOUT, None),
        err(ErrorKind.CONNECTION, None),
    ],
)
def test_default_policy_retries(error):
    assert isinstance(PROVIDER.retry_policy.decide(error, 0), Retry)
    assert isinstance(PROVIDER.retry_policy.decide(error, 1), Retry)
    # Three attempts in all: the third failure is final.
    assert isinstance(PROVIDER.retry_policy.decide(error, 2), GiveUp)


@pytest.mark.parametrize(
    "error",
    [
        err(ErrorKind.BAD_REQUEST, 400),
        err(ErrorKind.AUTHENTICATION, 401),
        err(ErrorKind.PERMISSION_DENIED, 403),
        err(ErrorKind.INSUFFICIENT_CREDITS, 403),
        err(ErrorKind.NOT_FOUND, 404),
        err(ErrorKind.VALIDATION, 422),
        err(ErrorKind.UPSTREAM_ERROR, 502),  # a proxy's 502 is not one of the documented statuses
        err(ErrorKind.TIMEOUT, 504),
        err(ErrorKind.STREAM_INTERRUPTED, 200),
        err(ErrorKind.PARSE_ERROR, 200),
    ],
)
def test_default_policy_gives_up(error):
    assert isinstance(PROVIDER.retry_policy.decide(error, 0), GiveUp)


def test_backoff_doubles_from_one_second_with_25_percent_jitter_capped_at_32():
    assert LITELLM_RETRY is PROVIDER.retry_policy
    policy = PROVIDER.retry_policy
    assert (policy.base, policy.multiplier, policy.cap, policy.max_retries) == (1.0, 2.0, 32.0, 2)
    rng = random.Random(5)
    for retry, nominal in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)]:
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert min(delays) >= nominal * 0.75
        assert max(delays) <= nominal * 1.25
        assert max(delays) - min(delays) > nominal * 0.2  # really jittered
    assert all(policy.backoff(9, rng) <= 32.0 for _ in range(100))
    assert min(policy.backoff(9, rng) for _ in range(200)) >= 24.0


def test_retry_after_longer_than_the_backoff_wins():
    error = err(ErrorKind.RATE_LIMITED, 429, retry_after=20.0)
    decision = PROVIDER.retry_policy.decide(error, 0, rng=random.Random(1))
    assert decision == Retry(20.0)
