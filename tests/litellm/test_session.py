"""Job sessions: create → llm-call(s) → complete, sync and async, and the failure paths."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import turnout
from turnout.emulation import Fault, FaultScript, mock_transport
from turnout_litellm import AsyncJobSession, JobResult, JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HOST, KEY, TEAM, Recording, bodies, deployment, jobs, paths

ASK = [{"role": "user", "content": "parse this resume"}]
MORE = [{"role": "user", "content": "now score it"}]


class Boom(Exception):
    pass


def transport_for(emulator: LiteLLMEmulator, script: FaultScript) -> httpx.MockTransport:
    return mock_transport({HOST: emulator}, script)


# -- success ---------------------------------------------------------------------------


def test_sync_session_success(emulator, script):
    with JobSession(
        deployment(),
        job_type="resume_analysis",
        metadata={"resume": 7},
        transport=transport_for(emulator, script),
    ) as job:
        assert job.job_id is not None
        first = job.chat(ASK, temperature=0.2)
        with job.stream(MORE) as stream:
            deltas = [chunk.delta for chunk in stream]
        assert stream.text == "echo: now score it"
        assert stream.finish_reason == "stop"
    assert first.content == "echo: parse this resume"
    assert first.deployment == "lite"
    assert first.provider == "litellm"
    assert "".join(deltas) == "echo: now score it"
    assert paths(script) == ["create", "llm-call", "llm-call-stream", "complete"]
    assert bodies(script, "create") == [
        {"team_id": TEAM, "job_type": "resume_analysis", "metadata": {"resume": 7}}
    ]
    assert bodies(script, "llm-call") == [{"model": "ChatAgent", "messages": ASK, "temperature": 0.2}]
    assert bodies(script, "complete") == [{"status": "completed", "error_message": None}]
    assert all(r.bearer() == KEY for r in script.requests)
    result = job.result
    assert isinstance(result, JobResult)
    assert result.job_id == job.job_id
    assert result.status == "completed"
    assert result.total_calls == 2
    assert (
        result.total_tokens
        == emulator.job(job.job_id).calls[0]["tokens"] + emulator.job(job.job_id).calls[1]["tokens"]
    )
    assert result.credit_applied is True
    assert result.credits_remaining == 999
    assert emulator.completions(job.job_id) == [{"status": "completed", "error_message": None}]


async def test_async_session_success(emulator, script):
    async with AsyncJobSession(deployment(), transport=transport_for(emulator, script)) as job:
        first = await job.chat(ASK)
        async with job.stream(MORE) as stream:
            deltas = [chunk.delta async for chunk in stream]
        second = await job.chat(MORE, model="OtherGroup")
    assert first.content == "echo: parse this resume"
    assert "".join(deltas) == "echo: now score it"
    assert second.content == "echo: now score it"
    assert paths(script) == ["create", "llm-call", "llm-call-stream", "llm-call", "complete"]
    assert bodies(script, "create")[0]["job_type"] == "turnout"
    assert [b["model"] for b in bodies(script, "llm-call")] == ["ChatAgent", "OtherGroup"]
    assert job.result is not None
    assert job.result.status == "completed"
    assert job.result.total_calls == 3
    assert emulator.completions(job.job_id) == [{"status": "completed", "error_message": None}]


@pytest.mark.parametrize("model", ["anthropic/claude-3-5", "gemini/flash", "gpt-4o"])
def test_session_streams_every_frame_shape(emulator, script, model):
    with (
        JobSession(deployment(model=model), transport=transport_for(emulator, script)) as job,
        job.stream(ASK) as stream,
    ):
        text = "".join(c.delta for c in stream)
    assert text == "echo: parse this resume"
    assert stream.finish_reason == "stop"


def test_job_type_from_the_deployment_options(emulator, script):
    dep = deployment(options={"team_id": TEAM, "job_type": "nightly"})
    with JobSession(dep, transport=transport_for(emulator, script)):
        pass
    assert bodies(script, "create")[0]["job_type"] == "nightly"
    # A job with no call is still completed (the server decides what it costs).
    assert paths(script) == ["create", "complete"]


def test_per_endpoint_timeouts_on_the_wire(emulator, script):
    recording = Recording(transport_for(emulator, script))
    with JobSession(deployment(), transport=recording) as job:
        job.chat(ASK)
        with job.stream(ASK) as stream:
            list(stream)
    job_id = job.job_id
    assert recording.seen == [
        ("/api/jobs/create", 10.0),
        (f"/api/jobs/{job_id}/llm-call", 60.0),
        (f"/api/jobs/{job_id}/llm-call-stream", 120.0),
        (f"/api/jobs/{job_id}/complete", 30.0),
    ]


# -- failure: the job is completed as failed, exactly once ---------------------------------


def run_job(session: JobSession, error: BaseException, *, call: bool = True) -> None:
    """A job block that makes a call (or not), then raises `error`."""
    with session as job:
        if call:
            job.chat(ASK)
        raise error


async def run_async_job(session: AsyncJobSession, error: BaseException, *, fail_first: bool = False) -> None:
    async with session as job:
        if fail_first:
            await job.fail("giving up")
        else:
            await job.chat(ASK)
        raise error


def test_exception_in_the_block_completes_the_job_as_failed_once(emulator, script):
    job = JobSession(deployment(), transport=transport_for(emulator, script))
    with pytest.raises(Boom, match="parser crashed"):
        run_job(job, Boom("parser crashed"))
    assert paths(script) == ["create", "llm-call", "complete"]
    assert emulator.completions(job.job_id) == [{"status": "failed", "error_message": "Boom: parser crashed"}]
    assert job.result is not None
    assert job.result.status == "failed"
    assert job.result.credit_applied is False
    assert emulator.credits_remaining == 1000  # no credit spent


async def test_async_exception_completes_the_job_as_failed_once(emulator, script):
    job = AsyncJobSession(deployment(), transport=transport_for(emulator, script))
    with pytest.raises(Boom):
        await run_async_job(job, Boom("async crash"))
    assert emulator.completions(job.job_id) == [{"status": "failed", "error_message": "Boom: async crash"}]
    assert emulator.credits_remaining == 1000


def test_a_provider_error_escaping_the_block_fails_the_job(emulator):
    script = jobs({"llm-call": [Fault(error="model_access")]})
    with (
        pytest.raises(turnout.PermissionDeniedError),
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
    ):
        job.chat(ASK)
    (completion,) = emulator.completions(job.job_id)
    assert completion["status"] == "failed"
    assert completion["error_message"].startswith("permission_denied: Team 'team_test' does not have access")


def test_a_caught_provider_error_does_not_fail_the_job(emulator):
    script = jobs({"llm-call": [Fault(error="validation_v2")]})
    with JobSession(deployment(), transport=transport_for(emulator, script)) as job:
        with pytest.raises(turnout.ValidationError) as raised:
            job.chat(ASK)
        assert raised.value.deployment == "lite"
        assert raised.value.details[0].field == "body.team_id"
        job.chat(ASK)
    assert [c["status"] for c in emulator.completions(job.job_id)] == ["completed"]


def test_complete_is_never_retried_on_success(emulator):
    script = jobs({"complete": [Fault(error="plain_500"), Fault(error="plain_500")]})
    with (
        pytest.raises(turnout.InternalServerError) as raised,
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
    ):
        job.chat(ASK)
    assert paths(script).count("complete") == 1
    assert raised.value.deployment == "lite"
    assert job.result is None


def test_complete_is_never_retried_on_failure(emulator):
    script = jobs({"complete": [Fault(error="plain_500"), Fault(error="plain_500")]})
    with (
        pytest.raises(Boom) as raised,
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
    ):
        raise Boom("bad")
    assert paths(script) == ["create", "complete"]
    assert isinstance(job.complete_error, turnout.InternalServerError)
    assert any("completing job" in note for note in raised.value.__notes__)


def test_complete_failing_with_a_connection_error_is_not_retried():
    emulator = LiteLLMEmulator()
    calls: list[str] = []
    inner = mock_transport({HOST: emulator})

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/complete"):
            raise httpx.ConnectError("connection refused", request=request)
        return inner.handle_request(request)

    with pytest.raises(Boom), JobSession(deployment(), transport=httpx.MockTransport(handler)) as job:
        raise Boom("x")
    assert sum(path.endswith("/complete") for path in calls) == 1
    assert isinstance(job.complete_error, turnout.APIConnectionError)


def test_failed_completion_also_on_base_exceptions(emulator, script):
    with (
        pytest.raises(KeyboardInterrupt),
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
    ):
        raise KeyboardInterrupt
    assert emulator.completions(job.job_id) == [{"status": "failed", "error_message": "KeyboardInterrupt"}]


def test_stream_error_after_text_fails_the_job_with_partial_text(emulator):
    script = jobs({"llm-call-stream": [Fault(stream_error="upstream_503", stream_error_after=2)]})
    received: list[str] = []
    with (
        pytest.raises(turnout.ServiceUnavailableError) as raised,
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
        job.stream(ASK) as stream,
    ):
        received.extend(chunk.delta for chunk in stream)
    assert received == ["echo: ", "parse "]
    assert raised.value.partial_text == "echo: parse "
    assert raised.value.deployment == "lite"
    assert paths(script) == ["create", "llm-call-stream", "complete"]
    assert emulator.completions(job.job_id)[0]["status"] == "failed"


async def test_async_stream_interrupted(emulator):
    script = jobs({"llm-call-stream": [Fault(drop_after=1)]})
    job = AsyncJobSession(deployment(), transport=transport_for(emulator, script))

    async def consume() -> None:
        async with job, job.stream(ASK) as stream:
            async for _ in stream:
                pass

    with pytest.raises(turnout.StreamInterruptedError) as raised:
        await consume()
    assert raised.value.partial_text == "echo: "
    assert [c["status"] for c in emulator.completions(job.job_id)] == ["failed"]


def test_create_failure_raises_and_completes_nothing(emulator):
    script = jobs({"create": [Fault(error="team_suspended")]})
    session = JobSession(deployment(), transport=transport_for(emulator, script))
    with pytest.raises(turnout.PermissionDeniedError), session:
        pytest.fail("the block must not run")
    assert paths(script) == ["create"]
    assert session.job_id is None
    assert emulator.jobs == {}


# -- retries inside a session ------------------------------------------------------------


def test_create_and_calls_are_retried_by_the_policy(emulator):
    script = jobs(
        {
            "create": [Fault(error="plain_500")],
            # The server's own crash: repeated. (A wrapped upstream failure is not:
            # test_wrapped_failures.py.)
            "llm-call": [Fault(error="plain_500"), Fault(error="plain_500")],
        }
    )
    with JobSession(deployment(), transport=transport_for(emulator, script)) as job:
        response = job.chat(ASK)
    assert response.content == "echo: parse this resume"
    assert paths(script) == ["create", "create", "llm-call", "llm-call", "llm-call", "complete"]
    assert emulator.completions(job.job_id) == [{"status": "completed", "error_message": None}]


def test_calls_give_up_after_three_attempts(emulator):
    script = jobs({"llm-call": [Fault(error="plain_500")] * 5})
    with (
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
        pytest.raises(turnout.InternalServerError),
    ):
        job.chat(ASK)
    assert paths(script).count("llm-call") == 3


def test_stream_error_frame_before_its_first_chunk_is_not_repeated(emulator):
    # The call may have run upstream (and be charged): never sent again (issue 20, 6).
    script = jobs({"llm-call-stream": [Fault(stream_error="upstream_429")]})
    with (
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
        pytest.raises(turnout.RateLimitError) as raised,
        job.stream(ASK) as stream,
    ):
        list(stream)
    assert paths(script).count("llm-call-stream") == 1
    assert raised.value.maybe_processed is True
    assert [a.decision for a in raised.value.attempts] == ["give_up"]


def test_a_dropped_stream_is_not_repeated(emulator):
    script = jobs({"llm-call-stream": [Fault(drop_after=0)]})
    with (
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
        pytest.raises(turnout.StreamInterruptedError),
        job.stream(ASK) as stream,
    ):
        list(stream)
    assert paths(script) == ["create", "llm-call-stream", "complete"]


def test_no_retry_policy_means_one_attempt(emulator):
    script = jobs({"llm-call": [Fault(error="plain_500")]})
    with (
        JobSession(
            deployment(),
            transport=transport_for(emulator, script),
            retry_policy=turnout.RetryPolicy(max_retries=0),
        ) as job,
        pytest.raises(turnout.InternalServerError),
    ):
        job.chat(ASK)
    assert paths(script).count("llm-call") == 1


def test_retry_overrides_adjust_the_documented_policy(emulator):
    script = jobs({"llm-call": [Fault(error="plain_500")]})
    job = JobSession(
        deployment(retry_policy=None),
        transport=transport_for(emulator, script),
        retry_policy=turnout.RetryOverrides(max_retries=0),
    )
    # Only max_retries changed: the rest is SaaS-LiteLLM's documented policy.
    assert (job.retry_policy.max_retries, job.retry_policy.base, job.retry_policy.cap) == (0, 1.0, 32.0)
    assert job.retry_policy.jitter == "symmetric"
    with job, pytest.raises(turnout.InternalServerError):
        job.chat(ASK)
    assert paths(script).count("llm-call") == 1


def test_deployment_policy_is_used_by_default(emulator, script):
    job = JobSession(deployment(), transport=transport_for(emulator, script))
    assert job.retry_policy.base == 0.001
    job.close()


def test_job_not_found_is_not_retried_and_completing_it_fails(emulator, script):
    job = JobSession(deployment(), transport=transport_for(emulator, script))

    def lose_the_job() -> None:
        with job:
            del emulator.jobs[job.job_id]  # the server lost the job
            with pytest.raises(turnout.NotFoundError):
                job.chat(ASK)

    with pytest.raises(turnout.NotFoundError) as raised:
        lose_the_job()
    # The call was not repeated; the completion's own 404 came out of the `with`.
    assert paths(script) == ["create", "llm-call", "complete"]
    assert raised.value.message == "Job not found"


# -- explicit completion ----------------------------------------------------------------


def test_explicit_complete_then_exit_sends_nothing_more(emulator, script):
    with JobSession(deployment(), transport=transport_for(emulator, script)) as job:
        job.chat(ASK)
        result = job.complete()
        assert result.status == "completed"
        with pytest.raises(RuntimeError, match="already completed"):
            job.chat(ASK)
        with pytest.raises(RuntimeError):
            job.complete()
    assert paths(script) == ["create", "llm-call", "complete"]


def test_explicit_fail(emulator, script):
    with JobSession(deployment(), transport=transport_for(emulator, script)) as job:
        result = job.fail("nothing useful came out")
    assert result.status == "failed"
    assert emulator.completions(job.job_id) == [
        {"status": "failed", "error_message": "nothing useful came out"}
    ]
    assert emulator.credits_remaining == 1000


async def test_async_explicit_fail_and_exception_sends_one_completion(emulator, script):
    job = AsyncJobSession(deployment(), transport=transport_for(emulator, script))
    with pytest.raises(Boom):
        await run_async_job(job, Boom("after failing"), fail_first=True)
    assert emulator.completions(job.job_id) == [{"status": "failed", "error_message": "giving up"}]


def test_complete_with_a_bad_status_is_refused_locally(emulator, script):
    with (
        JobSession(deployment(), transport=transport_for(emulator, script)) as job,
        pytest.raises(ValueError, match="completed"),
    ):
        job.complete("done")
    assert paths(script) == ["create", "complete"]


def test_calls_before_start_are_refused():
    session = JobSession(deployment(), transport=mock_transport({HOST: LiteLLMEmulator()}))
    with pytest.raises(RuntimeError, match="not started"):
        session.chat(ASK)
    session.close()


def test_start_and_complete_without_with(emulator, script):
    session = JobSession(deployment(), transport=transport_for(emulator, script))
    job_id = session.start()
    with pytest.raises(RuntimeError, match="already been started"):
        session.start()
    session.chat(ASK)
    assert session.complete().job_id == job_id
    session.close()
    assert paths(script) == ["create", "llm-call", "complete"]


# -- clients, configuration, keys --------------------------------------------------------


def test_given_client_is_not_closed(emulator, script):
    client = httpx.Client(transport=transport_for(emulator, script))
    with JobSession(deployment(), http_client=client) as job:
        job.chat(ASK)
    assert not client.is_closed
    client.close()


def test_owned_client_is_closed(emulator, script):
    session = JobSession(deployment(), transport=transport_for(emulator, script))
    with session:
        pass
    assert session._client.is_closed


async def test_given_async_client_is_not_closed(emulator, script):
    async with httpx.AsyncClient(transport=transport_for(emulator, script)) as client:
        async with AsyncJobSession(deployment(), http_client=client) as job:
            await job.chat(ASK)
        assert not client.is_closed


@pytest.mark.parametrize(
    ("dep", "kwargs", "path"),
    [
        (deployment(options={}), {}, "deployment.options.team_id"),
        (deployment(options={"team_id": "  "}), {}, "deployment.options.team_id"),
        (deployment(base_url=None), {}, "deployment.base_url"),
        (turnout.Deployment("m", "meshapi", "x", base_url="https://x.test"), {}, "deployment.provider"),
        (deployment(), {"job_type": ""}, "job_type"),
        (deployment(), {"deadline": 0}, "deadline"),
        ("not a deployment", {}, "deployment"),
    ],
)
def test_bad_configuration(dep, kwargs, path):
    with pytest.raises(turnout.ConfigError) as raised:
        JobSession(dep, **kwargs)
    assert raised.value.path == path
    with pytest.raises(turnout.ConfigError):
        AsyncJobSession(dep, **kwargs)


def test_key_never_leaks_from_a_session():
    emulator = LiteLLMEmulator()
    inner = mock_transport({HOST: emulator})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/llm-call"):
            # A server that quotes the key it was given.
            return httpx.Response(500, json={"detail": f"LLM call failed: bad key {KEY}"})
        return inner.handle_request(request)

    job = JobSession(
        deployment(retry_policy=turnout.RetryPolicy(max_retries=0)), transport=httpx.MockTransport(handler)
    )
    assert KEY not in repr(job)
    with pytest.raises(turnout.InternalServerError) as raised:
        run_job(job, Boom("unused"), call=True)
    for text in (str(raised.value), repr(raised.value), raised.value.message, repr(job)):
        assert KEY not in text
    (completion,) = emulator.completions(job.job_id)
    assert KEY not in completion["error_message"]
    assert "***" in completion["error_message"]


def test_session_repr_shows_state(emulator, script):
    session = JobSession(deployment(), transport=transport_for(emulator, script))
    assert "not started" in repr(session)
    with session:
        assert "open" in repr(session)
    assert "completed" in repr(session)


def test_abandoning_a_stream_early_keeps_the_job_usable(emulator, script):
    with JobSession(deployment(), transport=transport_for(emulator, script)) as job:
        with job.stream(ASK) as stream:
            first = next(stream)
        assert first.delta == "echo: "
        assert job.chat(MORE).content == "echo: now score it"
    assert [c["status"] for c in emulator.completions(job.job_id)] == ["completed"]


def test_concurrent_sessions_on_one_emulator():
    emulator = LiteLLMEmulator()
    transport = mock_transport({HOST: emulator})

    async def one(i: int) -> str:
        async with AsyncJobSession(deployment(), transport=transport) as job:
            await job.chat([{"role": "user", "content": f"n{i}"}])
        assert job.job_id is not None
        return job.job_id

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(8)))

    ids = asyncio.run(main())
    assert len(set(ids)) == 8
    assert all(emulator.completions(i) == [{"status": "completed", "error_message": None}] for i in ids)
    assert emulator.credits_remaining == 992


async def test_a_cancelled_block_completes_the_job_as_failed(emulator, script):
    job = AsyncJobSession(deployment(), transport=transport_for(emulator, script))
    inside = asyncio.Event()

    async def body() -> None:
        async with job:
            await job.chat(ASK)
            inside.set()
            await asyncio.Event().wait()  # never set: only cancellation ends it

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.completions(job.job_id) == [{"status": "failed", "error_message": "CancelledError"}]
    assert job._client.is_closed
