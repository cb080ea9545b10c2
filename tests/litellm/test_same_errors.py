"""The router and a job session share one retry layer: the same scripted answers end
in the same error, with the same retry_after and the same decisions."""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout.emulation import Fault, mock_transport
from turnout_litellm import AsyncJobSession, JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import HI, HOST, deployment, jobs

PATIENT = turnout.RetryPolicy(max_retries=2, base=0.001, cap=0.001, jitter="none")

# (answers to the call, deadline): the call itself fails each time as scripted.
CASES: dict[str, tuple[list[Fault], float]] = {
    # The upstream's 429, already tried nine times by the server: raised at once.
    "a wrapped upstream 429": ([Fault(error="upstream_429")], 10.0),
    # The server's own crash (a plain-text 500): retried twice, then the last error.
    "a plain 500 three times": ([Fault(error="plain_500")] * 3, 10.0),
    # Not retryable: raised after one attempt.
    "authentication": ([Fault(error="authentication")], 10.0),
}


def summary(error: turnout.ProviderError) -> dict[str, Any]:
    return {
        "class": type(error).__name__,
        "kind": error.kind,
        "status": error.status,
        "retry_after": error.retry_after,
        "decisions": [(a.decision, a.error.kind if a.error else None) for a in error.attempts],
    }


def router_error(faults: list[Fault], deadline: float) -> turnout.ProviderError:
    script = jobs({"create-and-call": faults})
    transport = mock_transport({HOST: LiteLLMEmulator()}, script)
    router = turnout.Router([deployment(retry_policy=PATIENT)], transport=transport)
    with router, pytest.raises(turnout.ProviderError) as caught:
        router.chat(HI, deadline=deadline)
    return caught.value


def session_error(faults: list[Fault], deadline: float) -> turnout.ProviderError:
    script = jobs({"llm-call": faults})
    transport = mock_transport({HOST: LiteLLMEmulator()}, script)
    with (
        pytest.raises(turnout.ProviderError) as caught,
        JobSession(deployment(retry_policy=PATIENT), transport=transport, deadline=deadline) as job,
    ):
        job.chat(HI)
    return caught.value


async def async_session_error(faults: list[Fault], deadline: float) -> turnout.ProviderError:
    script = jobs({"llm-call": faults})
    transport = mock_transport({HOST: LiteLLMEmulator()}, script)
    session = AsyncJobSession(deployment(retry_policy=PATIENT), transport=transport, deadline=deadline)
    with pytest.raises(turnout.ProviderError) as caught:
        async with session as job:
            await job.chat(HI)
    return caught.value


@pytest.mark.parametrize("case", list(CASES))
def test_router_and_job_session_raise_the_same_error(case: str) -> None:
    faults, deadline = CASES[case]
    from_router = summary(router_error(faults, deadline))
    from_session = summary(session_error(faults, deadline))
    assert from_session == from_router
    if case == "a wrapped upstream 429":
        assert from_router["class"] == "RateLimitError"
        assert from_router["status"] == 500
        assert from_router["decisions"] == [("give_up", turnout.ErrorKind.RATE_LIMITED)]
    if case == "a plain 500 three times":
        assert [d for d, _ in from_router["decisions"]] == ["retry", "retry", "give_up"]


@pytest.mark.parametrize("case", list(CASES))
async def test_the_async_job_session_too(case: str) -> None:
    faults, deadline = CASES[case]
    assert summary(await async_session_error(faults, deadline)) == summary(router_error(faults, deadline))
