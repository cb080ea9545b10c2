"""The Jobs API emulator held against the real server (v1.0.2): its statuses, timestamps,
job dict, envelopes, texts, streams, credits and faults; state and thread safety."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, mock_transport
from turnout.fake import FakeGateways
from turnout_litellm import JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HOST, KEY, TEAM, deployment

AUTH = {"authorization": f"Bearer {KEY}"}
CALL = {"model": "ChatAgent", "messages": [{"role": "user", "content": "a b"}]}
NAIVE_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
SECONDS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def post(
    emulator: LiteLLMEmulator,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    fault: Fault | None = None,
) -> EmulatedResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    request = EmulatedRequest("POST", f"/api{path}", AUTH if headers is None else headers, raw)
    return emulator.handle(request, fault)


def get(emulator: LiteLLMEmulator, path: str, headers: dict[str, str] | None = None) -> EmulatedResponse:
    return emulator.handle(EmulatedRequest("GET", f"/api{path}", AUTH if headers is None else headers))


def body_of(response: EmulatedResponse) -> Any:
    return json.loads(response.body)


def create(emulator: LiteLLMEmulator, **extra: Any) -> str:
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t", **extra})
    assert response.status == 200
    job_id: str = body_of(response)["job_id"]
    return job_id


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def recent(stamp: str) -> bool:
    """A naive UTC timestamp of the last minute (the server's clock, not a constant)."""
    moment = datetime.fromisoformat(stamp.removesuffix("Z"))
    return moment.tzinfo is None and abs(utc_now() - moment) < timedelta(minutes=1)


# -- jobs: statuses, timestamps, costs -------------------------------------------------


def test_job_lifecycle_in_the_servers_words():
    emulator = LiteLLMEmulator(credits=10)
    created = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"})
    assert created.header("content-type") == "application/json"
    payload = body_of(created)
    assert set(payload) == {"job_id", "status", "created_at"}
    assert payload["status"] == "PENDING"
    assert NAIVE_MICROS.match(payload["created_at"])
    assert recent(payload["created_at"])
    job_id = payload["job_id"]
    first = post(emulator, f"/jobs/{job_id}/llm-call", CALL)
    assert first.status == 200
    assert set(body_of(first)) == {"call_id", "response", "metadata"}
    assert body_of(first)["response"] == {"content": "echo: a b", "finish_reason": "stop"}
    assert body_of(first)["metadata"] == {"tokens_used": 8, "latency_ms": 42, "model": "ChatAgent"}
    assert emulator.job(job_id).status == "IN_PROGRESS"
    post(emulator, f"/jobs/{job_id}/llm-call", CALL)
    done = body_of(post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"}))
    assert done["status"] == "COMPLETED"
    assert NAIVE_MICROS.match(done["completed_at"])
    assert recent(done["completed_at"])
    costs = done["costs"]
    assert (costs["total_calls"], costs["successful_calls"], costs["total_tokens"]) == (2, 2, 16)
    assert (costs["credit_applied"], costs["credits_remaining"]) == (True, 9)
    assert [c["model_group"] for c in done["calls"]] == ["ChatAgent", "ChatAgent"]
    assert emulator.completions(job_id) == [{"status": "completed", "error_message": None}]


def test_timestamps_are_the_clock_not_a_constant():
    emulator = LiteLLMEmulator()
    first = body_of(post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"}))["created_at"]
    second = body_of(post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"}))["created_at"]
    assert first <= second
    assert first != "2025-01-01T00:00:00"
    assert recent(first)
    assert recent(second)


def test_a_repeated_completion_charges_every_other_time():
    # `credit_applied` flips: charged, reset, charged again, reset (as the server's code does).
    emulator = LiteLLMEmulator(credits=10)
    job_id = create(emulator)
    applied = [
        body_of(post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"}))["costs"][
            "credit_applied"
        ]
        for _ in range(4)
    ]
    assert applied == [True, False, True, False]
    assert len(emulator.completions(job_id)) == 4
    assert emulator.credits_remaining == 8


def test_no_credit_left_is_not_refused():
    emulator = LiteLLMEmulator(credits=0)
    answered = post(emulator, "/jobs/create-and-call", {"team_id": TEAM, "job_type": "t", **CALL})
    assert answered.status == 200
    payload = body_of(answered)
    assert payload["status"] == "COMPLETED"
    assert (payload["costs"]["credit_applied"], payload["costs"]["credits_remaining"]) == (False, 0)
    job_id = create(emulator)
    done = post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"})
    assert (done.status, body_of(done)["costs"]["credit_applied"]) == (200, False)


def test_failed_completion_charges_nothing():
    emulator = LiteLLMEmulator(credits=10)
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/complete", {"status": "failed", "error_message": "x"})
    assert body_of(response)["status"] == "FAILED"
    assert body_of(response)["costs"]["credit_applied"] is False
    assert emulator.credits_remaining == 10
    assert emulator.job(job_id).error_message == "x"


def test_create_and_call_is_a_whole_job():
    emulator = LiteLLMEmulator(credits=3)
    response = post(emulator, "/jobs/create-and-call", {"team_id": TEAM, "job_type": "t", **CALL})
    payload = body_of(response)
    assert set(payload) == {"job_id", "status", "response", "metadata", "costs", "completed_at"}
    assert payload["status"] == "COMPLETED"
    assert payload["costs"]["credits_remaining"] == 2
    assert NAIVE_MICROS.match(payload["completed_at"])
    assert emulator.job(payload["job_id"]).status == "COMPLETED"


def test_an_anthropic_alias_answers_the_upstreams_finish_reason():
    emulator = LiteLLMEmulator()
    body = {"team_id": TEAM, "job_type": "t", **CALL, "model": "claude-fast"}
    payload = body_of(post(emulator, "/jobs/create-and-call", body))
    assert payload["response"]["finish_reason"] == "end_turn"
    assert payload["metadata"]["model"] == "claude-fast"  # the alias, not the upstream model


# -- GET /jobs/{id} ----------------------------------------------------------------------


def test_get_job_is_the_job_dict():
    emulator = LiteLLMEmulator()
    job_id = create(emulator, user_id="u-7", metadata={"doc": 1})
    post(emulator, f"/jobs/{job_id}/llm-call", CALL)
    post(emulator, f"/jobs/{job_id}/complete", {"status": "failed", "error_message": "gave up"})
    response = get(emulator, f"/jobs/{job_id}")
    assert response.status == 200
    job = body_of(response)
    assert list(job) == [
        "job_id",
        "team_id",
        "user_id",
        "job_type",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "metadata",
        "error_message",
        "organization_id",
        "external_task_id",
        "credit_applied",
        "model_groups_used",
    ]
    assert (job["job_id"], job["team_id"], job["user_id"], job["job_type"]) == (job_id, TEAM, "u-7", "t")
    assert (job["status"], job["error_message"], job["credit_applied"]) == ("FAILED", "gave up", False)
    assert job["metadata"] == {"doc": 1}
    assert job["model_groups_used"] == ["ChatAgent"]
    for name in ("created_at", "started_at", "completed_at"):
        assert SECONDS_Z.match(job[name]), name
        assert recent(job[name]), name


def test_get_job_refusals():
    emulator = LiteLLMEmulator(keys={KEY: TEAM, "sk-other": "other"})
    job_id = create(emulator)
    missing = get(emulator, "/jobs/00000000-0000-0000-0000-0000000000ff")
    assert (missing.status, missing.body) == (404, b'{"detail":"Job not found"}')
    assert get(emulator, "/jobs/not-a-uuid").body == b"Internal Server Error"
    other = get(emulator, f"/jobs/{job_id}", {"authorization": "Bearer sk-other"})
    assert (other.status, body_of(other)) == (403, {"detail": "Job does not belong to your team"})
    assert get(emulator, f"/jobs/{job_id}", {}).status == 401


# -- requests the server refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/jobs/create", {"team_id": TEAM}, ["body.job_type"]),
        ("/jobs/create-and-call", {"team_id": TEAM, "job_type": "t"}, ["body.model", "body.messages"]),
        (
            "/jobs/create-and-call",
            {"team_id": TEAM, "job_type": "t", "model": "m", "messages": "hi", "temperature": "hot"},
            ["body.messages", "body.temperature"],
        ),
        (
            "/jobs/create-and-call",
            {"team_id": TEAM, "job_type": "t", "model": "m", "messages": [1]},
            ["body.messages.0"],
        ),
        ("/jobs/create", {"team_id": 7, "job_type": "t"}, ["body.team_id"]),
        ("/jobs/create", b"{not json", ["body.1"]),
        ("/jobs/create", b"", ["body"]),
        ("/jobs/create", [1, 2], ["body"]),
    ],
)
def test_validation_errors_are_pydantic_v2(path, body, fields):
    response = post(LiteLLMEmulator(), path, body)
    assert response.status == 422
    error = turnout.normalize_error("litellm", status=response.status, body=response.body)
    assert isinstance(error, turnout.ValidationError)
    assert [d.field for d in error.details] == fields


def test_invalid_json_is_a_422_even_without_a_key():
    response = post(LiteLLMEmulator(keys={KEY: TEAM}), "/jobs/create-and-call", b'{"team_id": ', headers={})
    assert response.status == 422
    (item,) = body_of(response)["detail"]
    assert item == {
        "type": "json_invalid",
        "loc": ["body", 12],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": "Expecting value"},
    }
    # Well-formed JSON without a key is the key's error first.
    assert post(LiteLLMEmulator(), "/jobs/create", {}, headers={}).status == 401


def test_complete_with_a_bad_status_is_a_literal_error():
    emulator = LiteLLMEmulator()
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/complete", {"status": "done"})
    assert response.status == 422
    assert body_of(response)["detail"][0]["type"] == "literal_error"
    assert emulator.completions(job_id) == []


def test_unknown_job_and_non_uuid_job_ids():
    emulator = LiteLLMEmulator()
    missing = post(emulator, "/jobs/00000000-0000-0000-0000-0000000000ff/llm-call", CALL)
    assert (missing.status, missing.body) == (404, b'{"detail":"Job not found"}')
    garbage = post(emulator, "/jobs/not-a-uuid/complete", {"status": "completed"})
    assert (garbage.status, garbage.body) == (500, b"Internal Server Error")
    assert garbage.header("content-type") == "text/plain; charset=utf-8"


def test_routes_and_methods():
    emulator = LiteLLMEmulator()
    unknown = post(emulator, "/nothing/here", {})
    assert (unknown.status, unknown.body) == (404, b'{"detail":"Not Found"}')
    wrong = emulator.handle(EmulatedRequest("PUT", "/api/jobs/create", AUTH))
    assert (wrong.status, wrong.body) == (405, b'{"detail":"Method Not Allowed"}')
    # GET /jobs/create is GET /jobs/{job_id} with the id "create".
    assert get(emulator, "/jobs/create").body == b"Internal Server Error"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Missing Authorization header. Expected: 'Authorization: Bearer sk-xxx...'"),
        (
            {"authorization": "Token abc"},
            "Invalid Authorization header format. Expected: 'Authorization: Bearer sk-xxx...'",
        ),
        ({"authorization": "Bearer wrong"}, "Invalid API key"),
    ],
)
def test_authentication_with_known_keys(headers, detail):
    emulator = LiteLLMEmulator(keys={KEY: TEAM})
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"}, headers=headers)
    assert (response.status, body_of(response)) == (401, {"detail": detail})


def test_any_key_is_accepted_by_default():
    response = post(
        LiteLLMEmulator(), "/jobs/create", {"team_id": TEAM, "job_type": "t"}, {"authorization": "Bearer x"}
    )
    assert response.status == 200


def test_key_of_another_team():
    emulator = LiteLLMEmulator(keys={KEY: "other_team"})
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"})
    assert response.body == f'{{"detail":"API key does not belong to team \'{TEAM}\'"}}'.encode()
    assert response.status == 403


def test_job_of_another_team():
    emulator = LiteLLMEmulator(keys={KEY: TEAM, "sk-other": "other"})
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/llm-call", CALL, headers={"authorization": "Bearer sk-other"})
    assert (response.status, body_of(response)) == (403, {"detail": "Job does not belong to your team"})


@pytest.mark.parametrize("status", ["suspended", "paused"])
def test_a_team_not_active(status):
    emulator = LiteLLMEmulator(team_status=status)
    response = post(emulator, "/jobs/create-and-call", {"team_id": TEAM, "job_type": "t", **CALL})
    assert (response.status, body_of(response)) == (
        403,
        {"detail": f"Team access is {status}. Please contact support."},
    )
    assert turnout.normalize_error("litellm", status=403, body=response.body).kind == "permission_denied"
    assert emulator.jobs == {}


def test_model_access():
    emulator = LiteLLMEmulator(models=["ChatAgent"])
    body = {"team_id": TEAM, "job_type": "t", **CALL, "model": "Other"}
    response = post(emulator, "/jobs/create-and-call", body)
    detail = f"Team '{TEAM}' does not have access to model alias 'Other'"
    assert (response.status, body_of(response)) == (403, {"detail": detail})
    (job,) = emulator.jobs.values()
    assert (job.status, job.error_message) == ("FAILED", detail)  # created, then failed
    assert post(emulator, "/jobs/create-and-call", {**body, "model": "ChatAgent"}).status == 200


# -- what faults render -----------------------------------------------------------------


def test_render_error_accepts_statuses_kinds_and_scenarios():
    emulator = LiteLLMEmulator()
    assert emulator.render_error("403").status == 403
    assert emulator.render_error("401").body == b'{"detail":"Invalid API key"}'
    assert body_of(emulator.render_error("permission_denied")) == {
        "detail": "Team access is suspended. Please contact support."
    }
    v1 = body_of(emulator.render_error("validation_v1"))["detail"]
    assert v1[0]["type"] == "value_error.missing"
    v2 = body_of(emulator.render_error("validation_v2"))["detail"]
    assert v2[0]["type"] == "missing"


def test_only_what_the_server_sends():
    emulator = LiteLLMEmulator()
    for name in emulator.error_names():
        rendered = emulator.render_error(name, retry_after=3, request_id="r1")
        assert rendered.status in (401, 403, 404, 422, 500), name
        assert rendered.header("retry-after") is None, name  # the server sends none
        assert rendered.header("x-request-id") is None, name
    for name in ("429", "402", "503", "400", "502", "credits", "insufficient_credits", "no_such_error"):
        with pytest.raises(ValueError, match="does not send"):
            emulator.render_error(name)


def test_an_upstream_429_is_a_wrapped_500():
    rendered = LiteLLMEmulator().render_error("rate_limited")
    assert rendered.status == 500
    assert body_of(rendered)["detail"].startswith(
        "LLM call failed: 500: Failed to call provider API: OpenAI rate limit: Error code: 429 - "
        "{'error': {'message': 'Rate limit reached for gpt-4o-mini"
    )


def test_an_upstream_failure_fails_the_job_after_nine_tries():
    emulator = LiteLLMEmulator(credits=5)
    body = {"team_id": TEAM, "job_type": "t", **CALL}
    response = post(emulator, "/jobs/create-and-call", body, fault=Fault(error="upstream_503"))
    assert response.status == 500
    detail = body_of(response)["detail"]
    assert detail.startswith(
        "LLM call failed: 500: Failed to call provider API: OpenAI error: Error code: 503 - "
    )
    (job,) = emulator.jobs.values()
    assert job.status == "FAILED"
    assert job.error_message == detail.removeprefix("LLM call failed: ")
    assert emulator.upstream_requests == 9
    assert emulator.credits_remaining == 5


def test_an_upstream_failure_of_an_anthropic_alias_is_in_its_sdks_words():
    emulator = LiteLLMEmulator()
    body = {"team_id": TEAM, "job_type": "t", **CALL, "model": "anthropic/claude"}
    detail = body_of(post(emulator, "/jobs/create-and-call", body, fault=Fault(error="upstream_503")))[
        "detail"
    ]
    assert (
        "Anthropic error: Error code: 503 - {'type': 'error', 'error': {'type': 'overloaded_error'" in detail
    )
    assert turnout.normalize_error("litellm", status=500, body={"detail": detail}).kind == "unavailable"


def test_the_servers_refusals_come_before_anything_is_done():
    emulator = LiteLLMEmulator()
    body = {"team_id": TEAM, "job_type": "t"}
    assert post(emulator, "/jobs/create", body, fault=Fault(error="team_paused")).status == 403
    assert emulator.jobs == {}
    assert post(emulator, "/jobs/create", {}, fault=Fault(html=502)).status == 502
    # An upstream fault still meets the server's own checks first.
    refused = post(emulator, "/jobs/create-and-call", {**body, **CALL}, {}, Fault(error="upstream_429"))
    assert refused.status == 401
    assert emulator.upstream_requests == 0


# -- streams ---------------------------------------------------------------------------


def frames(response: EmulatedResponse) -> list[str]:
    assert response.chunks is not None
    return b"".join(response.chunks).decode().split("\n\n")[:-1]


def data_of(frame: str) -> Any:
    assert frame.startswith("data: "), frame
    text = frame.removeprefix("data: ")
    return text if text == "[DONE]" else json.loads(text)


def stream(
    emulator: LiteLLMEmulator, model: str = "ChatAgent", fault: Fault | None = None
) -> EmulatedResponse:
    body = {"team_id": TEAM, "job_type": "t", **CALL, "model": model}
    return post(emulator, "/jobs/create-and-call-stream", body, fault=fault)


def test_stream_headers():
    response = stream(LiteLLMEmulator())
    assert response.headers == (
        ("cache-control", "no-cache"),
        ("connection", "keep-alive"),
        ("x-accel-buffering", "no"),
        ("content-type", "text/event-stream; charset=utf-8"),
    )


def test_an_openai_stream_as_forwarded():
    emulator = LiteLLMEmulator()
    sent = frames(stream(emulator))
    assert sent[0] == ": keepalive"
    first = data_of(sent[1])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert first["model"] == "gpt-4o-mini-2024-07-18"  # the provider's, not the alias
    assert [data_of(f)["choices"][0]["delta"]["content"] for f in sent[2:5]] == ["echo: ", "a ", "b"]
    assert data_of(sent[5])["choices"][0]["finish_reason"] == "stop"
    assert sent[6] == "data: [DONE]"
    assert len(sent) == 7
    (job,) = emulator.jobs.values()
    assert (job.status, job.credit_applied) == ("COMPLETED", True)


def test_an_anthropic_stream_keeps_its_framing():
    sent = frames(stream(LiteLLMEmulator(), "claude-fast"))
    assert sent[0] == ": keepalive"
    events = [data_of(f) for f in sent[1:]]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 5
    assert events[7] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


def test_a_gemini_stream():
    sent = frames(stream(LiteLLMEmulator(), "gemini/flash"))
    events = [data_of(f) for f in sent[1:]]
    assert all("candidates" in e for e in events)
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["totalTokenCount"] == 8


def test_a_job_stream_has_no_keepalive():
    emulator = LiteLLMEmulator()
    job_id = create(emulator)
    sent = frames(post(emulator, f"/jobs/{job_id}/llm-call-stream", CALL))
    assert data_of(sent[0])["choices"][0]["delta"]["role"] == "assistant"
    assert sent[-1] == "data: [DONE]"


def test_an_upstream_refusal_on_a_stream_is_one_frame_then_a_clean_close():
    emulator = LiteLLMEmulator(credits=5)
    response = stream(emulator, fault=Fault(error="upstream_429"))
    assert response.status == 200
    assert response.drop_after is None
    assert frames(response) == [
        ": keepalive",
        'data: {"error": "500: Failed to call provider API: Client error \'429 Too Many Requests\' for url '
        "'https://api.openai.com/v1/chat/completions'\\nFor more information check: "
        'https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/429"}',
    ]
    (job,) = emulator.jobs.values()
    assert job.status == "FAILED"
    assert emulator.credits_remaining == 5


def test_an_upstream_cut_is_one_frame_then_a_clean_close():
    emulator = LiteLLMEmulator()
    sent = frames(stream(emulator, fault=Fault(stream_error="upstream_cut")))
    assert sent == [
        ": keepalive",
        'data: {"error": "500: Failed to call provider API: peer closed connection without sending '
        'complete message body (incomplete chunked read)"}',
    ]
    (job,) = emulator.jobs.values()
    assert job.status == "FAILED"


def test_an_upstreams_own_error_frame_is_passed_on_and_charged():
    emulator = LiteLLMEmulator(credits=5)
    sent = frames(
        stream(emulator, "claude-fast", Fault(stream_error="anthropic_overloaded", stream_error_after=1))
    )
    assert data_of(sent[-1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert [data_of(f)["type"] for f in sent[1:-1]] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
    ]
    (job,) = emulator.jobs.values()
    assert (job.status, job.credit_applied, emulator.credits_remaining) == ("COMPLETED", True, 4)


def test_the_broken_job_stream_of_v1_0_2():
    emulator = LiteLLMEmulator(broken_llm_call_stream=True)
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/llm-call-stream", CALL)
    assert frames(response) == [
        'data: {"error": "\'Response\' object does not support the asynchronous context manager protocol"}'
    ]
    assert emulator.upstream_requests == 1  # the upstream call ran
    (call,) = emulator.job(job_id).calls
    assert call["error"].startswith("'Response' object")


def test_unknown_stream_errors_are_refused():
    with pytest.raises(ValueError, match="not a stream error"):
        stream(LiteLLMEmulator(), fault=Fault(stream_error="team_suspended"))


# -- over real HTTP ------------------------------------------------------------------------


def test_served_over_loopback_http_as_the_server_serves():
    with FakeGateways(emulators={"litellm": LiteLLMEmulator()}) as fake, httpx.Client() as http:
        base = fake.base_url("litellm")
        created = http.post(f"{base}/jobs/create", json={"team_id": TEAM, "job_type": "t"}, headers=AUTH)
        assert created.json()["status"] == "PENDING"
        job = http.get(f"{base}/jobs/{created.json()['job_id']}", headers=AUTH)
        assert job.json()["status"] == "PENDING"
        body = {"team_id": TEAM, "job_type": "t", **CALL}
        with http.stream("POST", f"{base}/jobs/create-and-call-stream", json=body, headers=AUTH) as response:
            raw = b"".join(response.iter_raw())
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["x-accel-buffering"] == "no"
            assert response.headers["cache-control"] == "no-cache"
        assert raw.startswith(b": keepalive\n\ndata: {")
        assert raw.endswith(b"data: [DONE]\n\n")
        bad = http.post(f"{base}/jobs/create", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 422


# -- state ---------------------------------------------------------------------------------


def test_threads_share_one_emulator_safely():
    emulator = LiteLLMEmulator(credits=100)
    transport = mock_transport({HOST: emulator})

    def one(i: int) -> str:
        with JobSession(deployment(), transport=transport) as job:
            job.chat([{"role": "user", "content": f"n{i}"}])
            job.chat([{"role": "user", "content": "again"}])
        assert job.job_id is not None
        return job.job_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(one, range(32)))
    assert len(set(ids)) == 32
    assert emulator.credits_remaining == 68
    assert all(len(emulator.job(i).calls) == 2 for i in ids)
    assert emulator.hits == {"create": 32, "llm-call": 64, "complete": 32}
    assert emulator.upstream_requests == 64
