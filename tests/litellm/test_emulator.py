"""The Jobs API emulator itself: state, cost accounting, error bodies, thread safety."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, mock_transport
from turnout_litellm import JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HOST, KEY, TEAM, deployment

AUTH = {"authorization": f"Bearer {KEY}"}


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


def body_of(response: EmulatedResponse) -> Any:
    return json.loads(response.body)


def create(emulator: LiteLLMEmulator, **extra: Any) -> str:
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t", **extra})
    assert response.status == 200
    job_id: str = body_of(response)["job_id"]
    return job_id


CALL = {"model": "ChatAgent", "messages": [{"role": "user", "content": "a b"}]}


def test_job_lifecycle_and_costs():
    emulator = LiteLLMEmulator(credits=10)
    job_id = create(emulator)
    assert emulator.job(job_id).status == "pending"
    first = post(emulator, f"/jobs/{job_id}/llm-call", CALL)
    assert first.status == 200
    assert body_of(first)["response"] == {"content": "echo: a b", "finish_reason": "stop"}
    assert body_of(first)["metadata"]["tokens_used"] == 8
    assert emulator.job(job_id).status == "in_progress"
    post(emulator, f"/jobs/{job_id}/llm-call", CALL)
    done = post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"})
    costs = body_of(done)["costs"]
    assert costs["total_calls"] == 2
    assert costs["total_tokens"] == 16
    assert costs["credit_applied"] is True
    assert costs["credits_remaining"] == 9
    assert len(body_of(done)["calls"]) == 2
    assert emulator.completions(job_id) == [{"status": "completed", "error_message": None}]


def test_a_repeated_completion_charges_again_and_is_recorded():
    emulator = LiteLLMEmulator(credits=10)
    job_id = create(emulator)
    post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"})
    post(emulator, f"/jobs/{job_id}/complete", {"status": "completed"})
    assert len(emulator.completions(job_id)) == 2
    assert emulator.credits_remaining == 8


def test_failed_completion_charges_nothing():
    emulator = LiteLLMEmulator(credits=10)
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/complete", {"status": "failed", "error_message": "x"})
    assert body_of(response)["status"] == "failed"
    assert body_of(response)["costs"]["credit_applied"] is False
    assert emulator.credits_remaining == 10


def test_create_and_call_is_a_whole_job():
    emulator = LiteLLMEmulator(credits=3)
    response = post(emulator, "/jobs/create-and-call", {"team_id": TEAM, "job_type": "t", **CALL})
    payload = body_of(response)
    assert payload["status"] == "completed"
    assert payload["costs"]["credits_remaining"] == 2
    assert emulator.job(payload["job_id"]).status == "completed"


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
        ("/jobs/create", b"{not json", ["body.0"]),
    ],
)
def test_validation_errors_are_pydantic_v2(path, body, fields):
    response = post(LiteLLMEmulator(), path, body)
    assert response.status == 422
    error = turnout.normalize_error("litellm", status=response.status, body=response.body)
    assert isinstance(error, turnout.ValidationError)
    assert [d.field for d in error.details] == fields


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
    assert (missing.status, body_of(missing)) == (404, {"detail": "Job not found"})
    garbage = post(emulator, "/jobs/not-a-uuid/complete", {"status": "completed"})
    assert garbage.status == 500
    assert garbage.body == b"Internal Server Error"
    assert garbage.header(
        "content-type",
    ).startswith("text/plain")


def test_routes_and_methods():
    emulator = LiteLLMEmulator()
    assert post(emulator, "/nothing/here", {}).status == 404
    response = emulator.handle(EmulatedRequest("GET", "/api/jobs/create", AUTH))
    assert response.status == 405


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Missing Authorization header"),
        ({"authorization": "Token abc"}, "Invalid Authorization header format"),
        ({"authorization": "Bearer wrong"}, "Invalid API key"),
    ],
)
def test_authentication(headers, detail):
    emulator = LiteLLMEmulator(keys={KEY: TEAM})
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"}, headers=headers)
    assert response.status == 401
    assert body_of(response)["detail"].startswith(detail)


def test_key_of_another_team():
    emulator = LiteLLMEmulator(keys={KEY: "other_team"})
    response = post(emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"})
    assert (response.status, body_of(response)) == (
        403,
        {"detail": f"API key does not belong to team '{TEAM}'"},
    )


def test_job_of_another_team():
    emulator = LiteLLMEmulator(keys={KEY: TEAM, "sk-other": "other"})
    job_id = create(emulator)
    response = post(emulator, f"/jobs/{job_id}/llm-call", CALL, headers={"authorization": "Bearer sk-other"})
    assert response.status == 403
    assert turnout.normalize_error("litellm", status=403, body=response.body).kind == "permission_denied"


@pytest.mark.parametrize(
    ("emulator", "kind"),
    [
        (LiteLLMEmulator(credits=0), "insufficient_credits"),
        (LiteLLMEmulator(team_status="suspended"), "permission_denied"),
        (LiteLLMEmulator(team_status="paused"), "permission_denied"),
        (LiteLLMEmulator(model_groups=["OtherGroup"]), "permission_denied"),
    ],
)
def test_team_state_refusals(emulator, kind):
    response = post(emulator, "/jobs/create-and-call", {"team_id": TEAM, "job_type": "t", **CALL})
    assert response.status == 403
    assert turnout.normalize_error("litellm", status=403, body=response.body).kind == kind


def test_render_error_accepts_statuses_kinds_and_scenarios():
    emulator = LiteLLMEmulator()
    assert emulator.render_error("403").status == 403
    assert emulator.render_error("insufficient_credits").status == 403
    assert "credits" in body_of(emulator.render_error("credits"))["detail"]
    assert emulator.render_error("credits").status == 403  # out of credits is a 403 there
    assert emulator.render_error("upstream_429").status == 500
    limited = emulator.render_error("rate_limited", retry_after=3, request_id="r1")
    assert limited.header("retry-after") == "3"
    assert limited.header("x-request-id") == "r1"
    v1 = body_of(emulator.render_error("validation_v1"))["detail"]
    assert v1[0]["type"] == "value_error.missing"
    v2 = body_of(emulator.render_error("validation_v2"))["detail"]
    assert v2[0]["type"] == "missing"
    with pytest.raises(ValueError, match="unknown"):
        emulator.render_error("no_such_error")


def test_faults_apply_before_the_api():
    emulator = LiteLLMEmulator()
    response = post(
        emulator, "/jobs/create", {"team_id": TEAM, "job_type": "t"}, fault=Fault(error="team_paused")
    )
    assert response.status == 403
    assert emulator.jobs == {}
    assert post(emulator, "/jobs/create", {}, fault=Fault(html=502)).status == 502


def stream_text(response: EmulatedResponse) -> str:
    assert response.chunks is not None
    return b"".join(response.chunks).decode()


@pytest.mark.parametrize(
    ("model", "marker", "ends_with_done"),
    [
        ("gpt-4o", '"chat.completion.chunk"', True),
        ("anthropic/claude", '"content_block_delta"', False),
        ("gemini/flash", '"candidates"', False),
    ],
)
def test_stream_frame_shapes(model, marker, ends_with_done):
    emulator = LiteLLMEmulator()
    response = post(
        emulator, "/jobs/create-and-call-stream", {"team_id": TEAM, "job_type": "t", **CALL, "model": model}
    )
    text = stream_text(response)
    assert text.startswith(": keepalive\n\n")
    assert marker in text
    assert text.rstrip().endswith("data: [DONE]") is ends_with_done
    assert response.header("content-type") == "text/event-stream"


def test_stream_error_frames():
    emulator = LiteLLMEmulator()
    fault = Fault(stream_error="upstream_429", stream_error_after=1)
    response = post(
        emulator, "/jobs/create-and-call-stream", {"team_id": TEAM, "job_type": "t", **CALL}, fault=fault
    )
    last = stream_text(response).strip().split("\n\n")[-1]
    frame = json.loads(last.removeprefix("data: "))
    assert "Error code: 429" in frame["error"]
    (job,) = emulator.jobs.values()
    assert job.status == "failed"
    assert job.credits_charged == 0


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


def test_served_over_httpx_directly():
    emulator = LiteLLMEmulator()
    with httpx.Client(transport=mock_transport({HOST: emulator})) as client:
        response = client.post(
            f"https://{HOST}/api/jobs/create", json={"team_id": TEAM, "job_type": "t"}, headers=AUTH
        )
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
