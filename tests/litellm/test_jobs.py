"""Issue 20, defects 3, 7 and 8: a job's status, its id, and a refused completion.

3. `JobResult.status` was the server's `"COMPLETED"`/`"FAILED"` (the docs say
   `"completed"`): code tested on the emulator broke on the real server.
7. A job id that is not a UUID gets a plain-text 500, which turnout retried: the id's
   shape is checked before anything is sent.
8. A `/complete` refused on leaving the block normally left `complete_error` unset, and
   a later `job.complete()` said the job was "already completed" when it never was."""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout import ChatRequest
from turnout.emulation import Fault
from turnout_litellm import AsyncJobSession, JobCallRequest, JobResult, JobSession, LiteLLM
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HI
from .recorded import (
    CALL_ANSWER,
    COMPLETE_ANSWERS,
    CREATED,
    JOB_ID,
    JSON,
    PLAIN_500,
    SESSIONS,
    Recorded,
    job_answers,
    lite,
    loopback,
)

BASE = "https://lite.test/api"
NOT_FOUND_JOB = b'{"detail":"Job not found"}'


# -- 3: the status, in lower case ----------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed"])
@pytest.mark.parametrize("call", SESSIONS.values(), ids=list(SESSIONS))
def test_the_result_status_is_lower_case_whatever_the_server_sends(call: Any, status: str) -> None:
    answers = job_answers(llm_call=[(200, JSON, CALL_ANSWER)])
    answers["complete"] = [(200, JSON, COMPLETE_ANSWERS[status])]
    session, _response = call(lite("lite", BASE), Recorded(answers))
    assert session.result is not None
    assert session.result.status == status
    assert session.result.completed_at == "2025-10-24T21:17:05.913377"


def test_over_the_emulator_which_answers_upper_case():
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        with JobSession(lite("lite", fake.base_url("litellm"))) as job:
            job.chat(HI)
        failed = JobSession(lite("lite", fake.base_url("litellm")))
        with failed:
            failed.fail("nothing came out")
    assert emulator.job(job.job_id or "").status == "COMPLETED"
    assert job.result is not None
    assert job.result.status == "completed"
    assert failed.result is not None
    assert failed.result.status == "failed"


def test_a_job_result_made_by_hand_is_lower_case_too():
    assert JobResult(JOB_ID, "COMPLETED").status == "completed"


# -- 7: the job id's shape --------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["not-a-uuid", "42", "", "../create", None])
def test_a_malformed_job_id_is_refused_before_sending(job_id: Any) -> None:
    with pytest.raises(ValueError, match="a SaaS-LiteLLM job id is a UUID"):
        JobCallRequest(HI, job_id=job_id)
    flow = LiteLLM().complete_job(lite("lite", BASE), job_id)
    with pytest.raises(ValueError, match="a SaaS-LiteLLM job id is a UUID"):
        next(flow)  # before its request is even built


def test_any_form_the_server_accepts_is_accepted():
    for form in (JOB_ID, JOB_ID.upper(), JOB_ID.replace("-", ""), "{" + JOB_ID + "}"):
        assert JobCallRequest(HI, job_id=form).job_id == form


@pytest.mark.parametrize("call", SESSIONS.values(), ids=list(SESSIONS))
def test_a_created_job_with_a_malformed_id_goes_no_further(call: Any) -> None:
    created = CREATED.replace(JOB_ID.encode(), b"job-42")
    transport = Recorded(job_answers(create=[(200, JSON, created)], llm_call=[(500, {}, PLAIN_500)]))
    session, error = call(lite("lite", BASE), transport)
    assert isinstance(error, turnout.ResponseParseError)
    assert "not a UUID" in error.message
    assert session.job_id is None
    assert set(transport.paths()) == {"create"}  # no job call, no completion


def test_the_router_never_makes_a_job_call():
    # Only job sessions name a job; a router call is one create-and-call.
    request = LiteLLM().request(lite("lite", BASE), ChatRequest(HI), stream=False)
    assert request.url == f"{BASE}/jobs/create-and-call"


# -- 8: a refused completion ---------------------------------------------------------------


def refused(status: int = 404, body: bytes = NOT_FOUND_JOB) -> Recorded:
    answers = job_answers(llm_call=[(200, JSON, CALL_ANSWER)])
    answers["complete"] = [(status, JSON, body)]
    return Recorded(answers)


def test_a_completion_refused_on_a_normal_exit_is_kept():
    transport = refused()
    session = JobSession(lite("lite", BASE), transport=transport)
    with pytest.raises(turnout.NotFoundError) as raised, session as job:
        job.chat(HI)
    assert session.complete_error is raised.value
    assert session.result is None
    with pytest.raises(RuntimeError, match="already tried and failed") as again:
        session.complete()
    assert "already completed" not in str(again.value)
    assert "Job not found" in str(again.value)
    assert transport.paths() == ["create", "llm-call", "complete"]  # not sent again
    assert "completion failed" in repr(session)


async def test_the_same_with_asyncio():
    transport = refused(500, PLAIN_500)
    session = AsyncJobSession(lite("lite", BASE), transport=transport)
    with pytest.raises(turnout.InternalServerError) as raised:
        async with session as job:
            await job.chat(HI)
    assert session.complete_error is raised.value
    with pytest.raises(RuntimeError, match="already tried and failed"):
        await session.complete()
    assert transport.paths().count("complete") == 1


def test_an_explicit_completion_refused_is_kept_too():
    transport = refused()
    session = JobSession(lite("lite", BASE), transport=transport)
    with session as job:
        job.chat(HI)
        with pytest.raises(turnout.NotFoundError) as raised:
            job.complete()
        assert job.complete_error is raised.value
    assert transport.paths().count("complete") == 1  # the block's exit sent nothing more


def test_over_the_emulator():
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", None, None, Fault(error="plain_500"))
        session = JobSession(lite("lite", fake.base_url("litellm")))
        with pytest.raises(turnout.InternalServerError), session as job:
            job.chat(HI)
    assert isinstance(session.complete_error, turnout.InternalServerError)
    assert emulator.hits == {"create": 1, "llm-call": 1, "complete": 1}
    assert emulator.job(session.job_id or "").status == "IN_PROGRESS"  # never completed
    with pytest.raises(RuntimeError, match="already tried and failed"):
        session.complete()


def test_a_job_never_started_says_so():
    session = JobSession(lite("lite", BASE), transport=refused())
    with pytest.raises(RuntimeError, match="not started"):
        session.complete()
    session.close()
