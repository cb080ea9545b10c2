"""Issue 20, defect 1: repeats that charge money. The server finishes and charges a
create-and-call (and runs an llm-call) even after the client has given up; turnout
used to send it again after a read timeout (one router.chat: 3 jobs, 3 credits). A
call whose outcome is unknown is now never repeated on the same deployment."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import turnout
from turnout import ChatRequest, HTTPRequest, Send
from turnout.emulation import Fault, mock_transport
from turnout_litellm import AsyncJobSession, JobCallRequest, JobSession, LiteLLM
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HI, HOST, deployment
from .recorded import CHATS, JOB_ID, decisions, lite, loopback

PROVIDER = LiteLLM()
SLOW = Fault(latency=1.0)  # the server answers after 1 s; the caller waits 0.3 s
WAIT = 0.3
NOT_SAFE = "not safe to repeat: the request may have been processed"


def test_each_operation_says_whether_it_is_safe_to_repeat():
    dep = deployment()
    call = JobCallRequest(HI, job_id=JOB_ID)
    sent: dict[str, HTTPRequest] = {
        "create-and-call": PROVIDER.request(dep, ChatRequest(HI), stream=False),
        "create-and-call-stream": PROVIDER.request(dep, ChatRequest(HI), stream=True),
        "llm-call": PROVIDER.request(dep, call, stream=False),
        "llm-call-stream": PROVIDER.request(dep, call, stream=True),
    }
    create = next(PROVIDER.create_job(dep))
    complete = next(PROVIDER.complete_job(dep, JOB_ID))
    assert isinstance(create, Send)
    assert isinstance(complete, Send)
    assert {name: r.safe_to_repeat() for name, r in sent.items()} == dict.fromkeys(sent, False)
    # A job created by a lost answer stays PENDING and costs nothing; /complete may charge.
    assert create.request.safe_to_repeat() is True
    assert complete.request.safe_to_repeat() is False


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_a_read_timeout_is_not_followed_by_another_create_and_call(call: Any) -> None:
    emulator = LiteLLMEmulator(credits=10)
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", SLOW)
        error = call([lite("lite", fake.base_url("litellm"))], timeout=WAIT)
    assert isinstance(error, turnout.APITimeoutError)
    assert (error.maybe_processed, error.retryable) == (True, False)
    assert "may have been processed" in error.message
    assert decisions(error.attempts) == [("timeout", "give_up")]
    assert error.attempts[0].reason == NOT_SAFE
    # One request, one job: the server finished it and charged one credit (not three).
    assert emulator.hits == {"create-and-call": 1}
    (job,) = emulator.jobs.values()
    assert (job.status, emulator.credits_remaining) == ("COMPLETED", 9)


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_the_router_falls_back_instead(call: Any) -> None:
    slow, backup = LiteLLMEmulator(credits=10), LiteLLMEmulator(credits=10)
    with loopback(litellm=slow, backup=backup) as fake:
        fake.script("litellm", SLOW)
        deps = [lite("lite", fake.base_url("litellm")), lite("backup", fake.base_url("backup"))]
        response = call(deps, timeout=WAIT)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "backup"
    assert decisions(response.attempts) == [("timeout", "fallback"), (None, "done")]
    assert (slow.hits, backup.hits) == ({"create-and-call": 1}, {"create-and-call": 1})


def test_a_job_call_that_timed_out_is_not_sent_again():
    emulator = LiteLLMEmulator(credits=10)
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", None, SLOW)  # create answers at once, the llm-call late
        with (
            pytest.raises(turnout.APITimeoutError) as raised,
            JobSession(lite("lite", fake.base_url("litellm"))) as job,
        ):
            job.chat(HI, timeout=WAIT)
    assert raised.value.maybe_processed is True
    assert [a.decision for a in raised.value.attempts] == ["give_up"]
    assert emulator.hits == {"create": 1, "llm-call": 1, "complete": 1}
    # The upstream ran once; the job was completed as failed, so no credit was spent.
    assert emulator.upstream_requests == 1
    assert [c["status"] for c in emulator.completions(job.job_id or "")] == ["failed"]
    assert emulator.credits_remaining == 10


async def test_an_async_job_call_that_timed_out_is_not_sent_again():
    emulator = LiteLLMEmulator(credits=10)
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", None, SLOW)
        session = AsyncJobSession(lite("lite", fake.base_url("litellm")))
        with pytest.raises(turnout.APITimeoutError) as raised:
            async with session as job:
                await job.chat(HI, timeout=WAIT)
    assert raised.value.maybe_processed is True
    assert emulator.hits == {"create": 1, "llm-call": 1, "complete": 1}
    assert emulator.upstream_requests == 1


def dropped_after_the_server_answered(emulator: LiteLLMEmulator, endpoint: str) -> httpx.MockTransport:
    """The server processes the request; the connection drops before its answer arrives."""
    inner = mock_transport({HOST: emulator})

    def handler(request: httpx.Request) -> httpx.Response:
        answer = inner.handle_request(request)
        if request.url.path.endswith(endpoint):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return answer

    return httpx.MockTransport(handler)


def test_a_connection_lost_after_sending_is_not_repeated_either():
    emulator = LiteLLMEmulator(credits=10)
    transport = dropped_after_the_server_answered(emulator, "/create-and-call")
    with (
        turnout.Router([deployment()], transport=transport) as router,
        pytest.raises(turnout.APIConnectionError) as raised,
    ):
        router.chat(HI)
    assert raised.value.maybe_processed is True
    assert decisions(raised.value.attempts) == [("connection", "give_up")]
    assert emulator.hits == {"create-and-call": 1}
    assert emulator.credits_remaining == 9


def test_a_job_call_lost_after_sending_is_not_repeated():
    emulator = LiteLLMEmulator(credits=10)
    transport = dropped_after_the_server_answered(emulator, "/llm-call")
    with (
        pytest.raises(turnout.APIConnectionError),
        JobSession(deployment(), transport=transport) as job,
    ):
        job.chat(HI)
    assert emulator.hits == {"create": 1, "llm-call": 1, "complete": 1}
    assert len(emulator.job(job.job_id or "").calls) == 1


def test_a_lost_create_is_repeated_it_costs_nothing():
    emulator = LiteLLMEmulator(credits=10)
    inner = mock_transport({HOST: emulator})
    lost: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = inner.handle_request(request)
        if request.url.path.endswith("/create") and not lost:
            lost.append(request.url.path)
            raise httpx.ReadTimeout("timed out", request=request)
        return answer

    with JobSession(deployment(), transport=httpx.MockTransport(handler)) as job:
        job.chat(HI)
    assert emulator.hits == {"create": 2, "llm-call": 1, "complete": 1}
    statuses = sorted(j.status for j in emulator.jobs.values())
    assert statuses == ["COMPLETED", "PENDING"]  # the orphan stays pending, uncharged
    assert emulator.credits_remaining == 9
