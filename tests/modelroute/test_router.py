"""ModelRoute's flow through `turnout.Router` and `turnout.AsyncRouter` over the emulator:
submit, poll and result; idempotency keys; new executions on retry; cancellation on the
deadline and on the caller's interruption; a streamed call as one chunk.

The router's behaviour (retries, fallbacks, streams, hostile bodies, keys) is tested once,
over a generic provider, in tests/core/test_router_*.py and tests/core/test_secrets.py."""

from __future__ import annotations

import asyncio

import pytest

import turnout
from turnout import ErrorKind
from turnout.emulation import EmulatedRequest, Fault, mock_transport
from turnout_modelroute.emulator import ModelRouteEmulator, Outcome

from .conftest import HOST, MESSAGES, Harness, deployment, on


def kinds(response_or_error: turnout.ChatResponse | turnout.ProviderError) -> list[ErrorKind | None]:
    return [a.error.kind if a.error else None for a in response_or_error.attempts]


async def test_pending_processing_completed(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome(pending_polls=2, processing_polls=3, text="all done"))
    answer = await harness.chat(
        emulator, temperature=0.3, metadata={"trace": "never sent"}, extra_body={"metadata": {"user": "u-1"}}
    )
    assert answer.content == "all done"
    assert answer.finish_reason == "stop"
    assert answer.provider == "modelroute"
    assert answer.deployment == "mr"
    execution = emulator.execution()
    assert answer.request_id == execution.id
    assert execution.status == "COMPLETED"
    assert execution.polls == 6  # 2 PENDING, 3 PROCESSING, then COMPLETED
    assert execution.input == {"messages": MESSAGES, "temperature": 0.3}
    assert execution.metadata == {"user": "u-1"}
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 2
    assert kinds(answer) == [None]


async def test_expired_is_retried_as_a_new_execution(harness: Harness) -> None:
    emulator = ModelRouteEmulator(script=[Outcome.expired()])
    answer = await harness.chat(emulator)
    assert answer.content == "echo: hi"
    assert kinds(answer) == [ErrorKind.TIMEOUT, None]
    assert answer.attempts[0].error is not None
    assert answer.attempts[0].error.code == "EXPIRED"
    assert emulator.execution_count == 2
    assert len(set(emulator.submissions)) == 2


async def test_expired_every_time(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome.expired())
    with pytest.raises(turnout.APITimeoutError) as caught:
        await harness.chat(emulator)
    assert caught.value.code == "EXPIRED"
    assert len(caught.value.attempts) == 4


async def test_cancelled_is_not_retried(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome.cancelled())
    with pytest.raises(turnout.UpstreamError) as caught:
        await harness.chat(emulator)
    error = caught.value
    assert (error.kind, error.code, error.retryable) == (ErrorKind.UPSTREAM_ERROR, "CANCELLED", False)
    assert len(error.attempts) == 1
    assert emulator.cancels == []  # cancelled upstream, not by us


async def test_a_retried_submit_reuses_its_key_and_executes_once(harness: Harness) -> None:
    # The first submit is refused with 503 before anything runs; the retry creates the execution.
    emulator = ModelRouteEmulator(script=[Outcome.rejected("SERVICE_UNAVAILABLE"), Outcome()])
    answer = await harness.chat(emulator)
    assert answer.content == "echo: hi"
    assert kinds(answer) == [ErrorKind.UNAVAILABLE, None]
    assert len(emulator.submissions) == 2
    assert emulator.submissions[0] == emulator.submissions[1]
    assert emulator.submissions[0] is not None
    assert emulator.execution_count == 1


async def test_a_lost_202_never_executes_twice(harness: Harness) -> None:
    # The execution is created but the answer is lost (503): the retry finds it by its key.
    emulator = ModelRouteEmulator(default=Outcome(lost_submits=1))
    answer = await harness.chat(emulator)
    assert kinds(answer) == [ErrorKind.UNAVAILABLE, None]
    assert emulator.execution_count == 1
    assert emulator.execution().submits == 2
    assert emulator.submissions == [emulator.execution().key] * 2


async def test_a_faulted_submit_is_seen_with_the_same_key(harness: Harness) -> None:
    emulator = ModelRouteEmulator()
    faults = on("/v1/executions", "POST", [Fault(error="SERVICE_UNAVAILABLE")])
    answer = await harness.chat(emulator, faults=faults)
    assert kinds(answer) == [ErrorKind.UNAVAILABLE, None]
    assert emulator.submissions == [emulator.execution().key] * 2
    assert emulator.execution_count == 1


async def test_each_call_gets_its_own_key(harness: Harness) -> None:
    emulator = ModelRouteEmulator()
    await harness.chat(emulator)
    await harness.chat(emulator)
    assert len(emulator.submissions) == 2
    assert emulator.submissions[0] != emulator.submissions[1]
    assert emulator.execution_count == 2


async def test_a_failed_poll_is_retried_by_resuming_the_same_execution(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome(pending_polls=1, processing_polls=2))
    faults = on("/v1/executions/exe_000001", "GET", [None, Fault(error="SERVICE_UNAVAILABLE")])
    answer = await harness.chat(emulator, faults=faults)
    assert answer.content == "echo: hi"
    assert kinds(answer) == [ErrorKind.UNAVAILABLE, None]
    assert emulator.execution_count == 1
    assert emulator.execution().submits == 2
    assert emulator.cancels == []


async def test_a_retryable_failure_gets_a_new_execution(harness: Harness) -> None:
    emulator = ModelRouteEmulator(script=[Outcome.failed("MODEL_OVERLOADED"), Outcome(text="second")])
    answer = await harness.chat(emulator)
    assert answer.content == "second"
    assert kinds(answer) == [ErrorKind.UNAVAILABLE, None]
    assert emulator.execution_count == 2
    first, second = emulator.executions.values()
    assert first.status == "FAILED"
    assert first.key != second.key


async def test_falls_back_to_another_deployment(harness: Harness) -> None:
    emulator = ModelRouteEmulator(outcomes={"broke": Outcome.failed("INSUFFICIENT_BALANCE")})
    deployments = [deployment("a", "broke"), deployment("b", "fine")]
    answer = await harness.chat(emulator, deployments=deployments)
    assert answer.deployment == "b"
    assert kinds(answer) == [ErrorKind.INSUFFICIENT_CREDITS, None]
    assert len(set(emulator.submissions)) == 2  # one key per deployment


async def test_polling_under_429_slows_down_and_succeeds(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome(rate_limited_polls=3, retry_after=0.001))
    answer = await harness.chat(emulator)
    assert answer.content == "echo: hi"
    assert kinds(answer) == [None]  # the 429s never failed the call
    assert emulator.execution().polls == 3 + 3  # three refused, then PENDING, PROCESSING, COMPLETED
    assert emulator.execution_count == 1


async def test_polling_with_no_requests_remaining_waits_and_succeeds(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome(exhausted_polls=2, retry_after=0.001))
    answer = await harness.chat(emulator)
    assert kinds(answer) == [None]
    assert emulator.execution().status == "COMPLETED"


async def test_a_rate_limited_submit_is_retried(harness: Harness) -> None:
    emulator = ModelRouteEmulator(script=[Outcome(http_error="RATE_LIMITED", retry_after=0.001), Outcome()])
    answer = await harness.chat(emulator)
    assert kinds(answer) == [ErrorKind.RATE_LIMITED, None]
    assert answer.attempts[0].error is not None
    assert answer.attempts[0].error.retry_after is not None


async def test_the_deadline_cancels_a_long_execution(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome.running())
    slow = deployment(options={"poll_interval": 0.01})
    with pytest.raises(turnout.APITimeoutError) as caught:
        await harness.chat(emulator, deployments=[slow], deadline=0.2)
    assert caught.value.code == "deadline_exceeded"
    execution = emulator.execution()
    assert emulator.cancels == [execution.id]
    assert execution.status == "CANCELLED"
    assert execution.cancelled is True
    assert emulator.requests[-1] == ("POST", f"/v1/executions/{execution.id}/cancel")


async def test_the_deadline_with_a_throttled_poll_cancels_too(harness: Harness) -> None:
    # A Retry-After longer than the deadline: the driver ends the sleep at the deadline.
    emulator = ModelRouteEmulator(default=Outcome(rate_limited_polls=1, retry_after=60))
    with pytest.raises(turnout.APITimeoutError):
        await harness.chat(emulator, deadline=0.2)
    assert emulator.cancels == [emulator.execution().id]


async def test_async_caller_cancelling_cancels_the_execution() -> None:
    emulator = ModelRouteEmulator(default=Outcome.running())
    transport = mock_transport({HOST: emulator})
    async with turnout.AsyncRouter([deployment(options={"poll_interval": 0.002})], transport=transport) as r:
        task = asyncio.create_task(r.chat(MESSAGES))
        for _ in range(5000):
            await asyncio.sleep(0.001)
            if emulator.execution_count and emulator.execution().polls >= 2:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    execution = emulator.execution()
    assert emulator.cancels == [execution.id]
    assert execution.status == "CANCELLED"


def test_sync_caller_interrupting_cancels_the_execution() -> None:
    emulator = ModelRouteEmulator(default=Outcome.running())
    polls = 0

    def interrupt_third_poll(request: EmulatedRequest) -> Fault | None:
        nonlocal polls
        if request.method == "GET":
            polls += 1
            if polls == 3:
                raise KeyboardInterrupt  # as Ctrl-C lands while a poll is in flight
        return None

    transport = mock_transport({HOST: emulator}, interrupt_third_poll)
    with turnout.Router([deployment()], transport=transport) as router, pytest.raises(KeyboardInterrupt):
        router.chat(MESSAGES)
    assert emulator.cancels == [emulator.execution().id]
    assert emulator.execution().status == "CANCELLED"


async def test_streaming_delivers_the_whole_answer_as_one_chunk(harness: Harness) -> None:
    emulator = ModelRouteEmulator(default=Outcome(text="one two three"))
    transport = mock_transport({HOST: emulator})
    if harness.mode == "sync":
        with (
            turnout.Router([deployment()], transport=transport) as router,
            router.stream(MESSAGES) as stream,
        ):
            chunks = list(stream)
    else:
        async with (
            turnout.AsyncRouter([deployment()], transport=transport) as arouter,
            arouter.stream(MESSAGES) as astream,
        ):
            chunks = [chunk async for chunk in astream]
    assert [c.delta for c in chunks] == ["one two three"]
    assert chunks[0].finish_reason == "stop"
