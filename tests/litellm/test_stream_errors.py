"""Issue 20, defect 6: server crash texts were repeated. v1.0.2's llm-call-stream ends every
stream with `{"error": "'Response' object does not support the asynchronous context
manager protocol"}` after the upstream call ran; classified retryable, JobSession.stream
repeated it three times, re-running a charged generation each time. An error frame
once a stream has started is now never repeated on the same deployment."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import turnout
from turnout.emulation import Fault
from turnout_litellm import AsyncJobSession, JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HI
from .recorded import (
    ANTHROPIC_STREAM,
    BROKEN_JOB_STREAM,
    JSON,
    SSE,
    STREAMS,
    Recorded,
    decisions,
    job_answers,
    lite,
    loopback,
)

BASE = "https://lite.test/api"
NOT_SAFE = "not safe to repeat: the request may have been processed"


def sync_stream(dep: turnout.Deployment, transport: Any = None) -> tuple[JobSession, Any]:
    session = JobSession(dep, transport=transport)
    with session as job:
        try:
            with job.stream(HI) as stream:
                return session, "".join(c.delta for c in stream)
        except turnout.ProviderError as error:
            return session, error


def async_stream(dep: turnout.Deployment, transport: Any = None) -> tuple[AsyncJobSession, Any]:
    async def main() -> tuple[AsyncJobSession, Any]:
        session = AsyncJobSession(dep, transport=transport)
        async with session as job:
            try:
                async with job.stream(HI) as stream:
                    return session, "".join([c.delta async for c in stream])
            except turnout.ProviderError as error:
                return session, error

    return asyncio.run(main())


JOB_STREAMS = {"JobSession": sync_stream, "AsyncJobSession": async_stream}


@pytest.mark.parametrize("call", JOB_STREAMS.values(), ids=list(JOB_STREAMS))
def test_the_broken_job_stream_is_raised_once(call: Any) -> None:
    transport = Recorded(job_answers(llm_call_stream=[(200, SSE, BROKEN_JOB_STREAM)]))
    _session, error = call(lite("lite", BASE), transport)
    assert isinstance(error, turnout.UpstreamError)
    assert error.message.startswith(
        "'Response' object does not support the asynchronous context manager protocol"
    )
    assert "llm-call-stream is broken on this server (v1.0.2)" in error.message
    assert (error.retryable, error.maybe_processed) == (False, True)
    assert decisions(error.attempts) == [("upstream_error", "give_up")]
    assert error.attempts[0].reason == NOT_SAFE
    assert error.deployment == "lite"
    assert transport.paths() == ["create", "llm-call-stream", "complete"]


@pytest.mark.parametrize("call", JOB_STREAMS.values(), ids=list(JOB_STREAMS))
def test_one_upstream_generation_not_three(call: Any) -> None:
    emulator = LiteLLMEmulator(broken_llm_call_stream=True)
    with loopback(litellm=emulator) as fake:
        _session, error = call(lite("lite", fake.base_url("litellm")))
    assert isinstance(error, turnout.UpstreamError)
    assert emulator.hits == {"create": 1, "llm-call-stream": 1, "complete": 1}
    assert emulator.upstream_requests == 1


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_an_error_frame_before_any_text_falls_back_and_is_not_repeated(stream: Any) -> None:
    primary, backup = LiteLLMEmulator(credits=5), LiteLLMEmulator(credits=5)
    with loopback(litellm=primary, backup=backup) as fake:
        fake.script("litellm", Fault(stream_error="upstream_503"))
        deps = [lite("lite", fake.base_url("litellm")), lite("backup", fake.base_url("backup"))]
        chunks, response = stream(deps)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "backup"
    assert "".join(c.delta for c in chunks) == "echo: hello there world"
    assert decisions(response.attempts) == [("unavailable", "fallback"), (None, "done")]
    assert primary.hits == {"create-and-call-stream": 1}
    (failed,) = primary.jobs.values()
    assert (failed.status, primary.credits_remaining) == ("FAILED", 5)


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_alone_the_error_frame_is_raised_after_one_attempt(stream: Any) -> None:
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", Fault(stream_error="upstream_cut"))
        chunks, error = stream([lite("lite", fake.base_url("litellm"))])
    assert chunks == []
    assert isinstance(error, turnout.UpstreamError)
    assert error.message == (
        "500: Failed to call provider API: peer closed connection without sending complete "
        "message body (incomplete chunked read)"
    )
    assert error.status is None
    assert decisions(error.attempts) == [("upstream_error", "give_up")]
    assert emulator.hits == {"create-and-call-stream": 1}


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_an_upstreams_own_error_frame_is_raised_once_with_the_text_so_far(stream: Any) -> None:
    # The server passes it on and charges the job: repeating would charge again.
    emulator = LiteLLMEmulator(credits=5)
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", Fault(stream_error="anthropic_overloaded", stream_error_after=2))
        chunks, error = stream([lite("lite", fake.base_url("litellm"), "claude-fast")])
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert error.partial_text == "echo: hello " == "".join(c.delta for c in chunks)
    assert len(error.attempts) == 1
    assert emulator.credits_remaining == 4


@pytest.mark.parametrize("stream", STREAMS.values(), ids=list(STREAMS))
def test_a_stream_that_works_is_unaffected(stream: Any) -> None:
    transport = Recorded({"create-and-call-stream": [(200, SSE, ANTHROPIC_STREAM)]})
    _chunks, response = stream([lite("lite", BASE, "claude-fast")], transport)
    assert response.content == "Hello there!"
    assert len(response.attempts) == 1


def test_a_refused_stream_is_normalized_from_its_body():
    transport = Recorded(
        {
            "create-and-call-stream": [
                (403, JSON, b'{"detail":"Team access is suspended. Please contact support."}')
            ]
        }
    )
    chunks, error = STREAMS["Router"]([lite("lite", BASE)], transport)
    assert chunks == []
    assert isinstance(error, turnout.PermissionDeniedError)
    assert error.status == 403
