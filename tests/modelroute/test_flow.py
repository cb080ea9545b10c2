"""The execution flow, stepped by hand: commands out, hand-made responses in, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout import CallAbandoned, ChatRequest, ErrorKind, HTTPResponse, Send, Sleep
from turnout_modelroute.provider import ModelRoute

from .conftest import BASE, KEY, deployment, execution, response

NOW = 1_710_924_600.0
INTERVAL = 0.5


def deadline_error(seconds: float) -> turnout.APITimeoutError:
    """What the drivers throw into a flow when the call's deadline passes."""
    return turnout.APITimeoutError(
        f"the call's deadline of {seconds:g}s passed", code="deadline_exceeded", retryable=False
    )


def provider() -> ModelRoute:
    return ModelRoute(clock=lambda: NOW)


def start(
    mr: ModelRoute | None = None, request: ChatRequest | None = None, **options: Any
) -> tuple[Any, Send, ModelRoute, ChatRequest]:
    mr = mr or provider()
    request = request or ChatRequest([{"role": "user", "content": "hi"}], {"temperature": 0.2})
    dep = deployment(options={"poll_interval": INTERVAL, **options})
    flow = mr.chat(dep, request)
    first = next(flow)
    assert isinstance(first, Send)
    return flow, first, mr, request


def finish(flow: Any, value: Any) -> Any:
    with pytest.raises(StopIteration) as done:
        flow.send(value)
    return done.value.value


def result(text: str = "hello there", **extra: Any) -> HTTPResponse:
    return response(200, {"id": "exe_1", "output": {"text": text}, **extra})


def run_to_polling(flow: Any) -> None:
    """Submit answered 202 PENDING: the flow now sleeps before its first poll."""
    assert flow.send(response(202, execution("PENDING"))) == Sleep(INTERVAL)


def test_submit_request_carries_model_input_key_and_auth() -> None:
    _, submit, mr, request = start(metadata={"team": "a"})
    req = submit.request
    assert (req.method, req.url) == ("POST", f"{BASE}/v1/executions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["idempotency-key"] == mr.idempotency_key(deployment(), request)
    body = json.loads(req.content)
    assert body == {
        "model": "model-a",
        "input": {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2},
        "metadata": {"team": "a"},
    }
    assert KEY not in repr(req)


def test_execution_metadata_is_the_deployments_and_a_call_sets_its_own_with_extra_body() -> None:
    """A call's `metadata=` is never sent (DESIGN: observers only); the deployment's
    `metadata` option is the execution's, and `extra_body` merges over the body."""
    messages = [{"role": "user", "content": "x"}]
    plain = ChatRequest(messages, {"max_tokens": 5}, metadata={"trace": "t-1"})
    _, submit, _, _ = start(request=plain, metadata={"team": "a"})
    body = json.loads(submit.request.content)
    assert body["metadata"] == {"team": "a"}
    assert body["input"] == {"messages": messages, "max_tokens": 5}
    assert b"t-1" not in submit.request.content
    own = ChatRequest(messages, {"max_tokens": 5}, extra_body={"metadata": {"user": "u1"}})
    _, submit, _, _ = start(request=own, metadata={"team": "a"})
    assert json.loads(submit.request.content)["metadata"] == {"user": "u1"}


def test_default_base_url_is_modelroutes() -> None:
    mr = provider()
    dep = turnout.Deployment("d", "modelroute", "m", api_key=KEY)
    submit = next(mr.chat(dep, ChatRequest([{"role": "user", "content": "hi"}])))
    assert submit.request.url == "https://api.modelroute.ai/v1/executions"


def test_pending_processing_completed() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    poll = flow.send(None)
    assert isinstance(poll, Send)
    assert (poll.request.method, poll.request.url) == ("GET", f"{BASE}/v1/executions/exe_1")
    assert poll.request.headers["authorization"] == f"Bearer {KEY}"
    assert flow.send(response(200, execution("PROCESSING"))) == Sleep(INTERVAL)
    assert isinstance(flow.send(None), Send)
    fetch = flow.send(response(200, execution("COMPLETED")))
    assert isinstance(fetch, Send)
    assert (fetch.request.method, fetch.request.url) == ("GET", f"{BASE}/v1/executions/exe_1/result")
    answer = finish(
        flow,
        result("hello there", model="m-1", usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}),
    )
    assert answer.content == "hello there"
    assert answer.finish_reason == "stop"
    assert answer.request_id == "exe_1"
    assert answer.model == "m-1"
    assert answer.usage == turnout.Usage(3, 2, 5)


def test_the_result_is_the_whole_answer_and_counts_it_does_not_report_are_none() -> None:
    flow, _, _, _ = start()
    fetch = flow.send(response(202, execution("COMPLETED")))
    assert isinstance(fetch, Send)
    payload = {
        "id": "exe_1",
        "output": {"text": "hi", "finish_reason": "max_tokens"},
        "usage": {"input_tokens": 3},
    }
    answer = finish(flow, response(200, payload, headers={"X-Request-Id": "req_9"}))
    assert answer.usage == turnout.Usage(3, None, None, None, None)
    # finish reasons in OpenAI's words; the message is ready to append to the history.
    assert answer.finish_reason == "length"
    assert answer.message == {"role": "assistant", "content": "hi"}
    assert answer.raw == payload
    assert answer.headers["x-request-id"] == "req_9"
    assert answer.tool_calls == ()
    assert answer.refusal is None


def test_default_poll_interval_is_two_seconds() -> None:
    mr = provider()
    dep = turnout.Deployment("d", "modelroute", "m", api_key=KEY, base_url=BASE)
    flow = mr.chat(dep, ChatRequest([{"role": "user", "content": "hi"}]))
    next(flow)
    assert flow.send(response(202, execution("PENDING"))) == Sleep(2.0)


def test_a_submit_that_is_already_completed_goes_straight_to_the_result() -> None:
    # A replayed key returns the execution as it is now.
    flow, _, _, _ = start()
    fetch = flow.send(response(202, execution("COMPLETED")))
    assert isinstance(fetch, Send)
    assert fetch.request.url.endswith("/exe_1/result")
    assert finish(flow, result("done")).content == "done"


def test_unknown_statuses_are_still_running() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    assert flow.send(response(200, execution("QUEUED_FOR_GPU"))) == Sleep(INTERVAL)


def test_execution_id_is_quoted_into_the_url() -> None:
    flow, _, _, _ = start()
    flow.send(response(202, execution("PENDING", "../../admin?x=1")))
    poll = flow.send(None)
    assert poll.request.url == f"{BASE}/v1/executions/..%2F..%2Fadmin%3Fx%3D1"


# -- rate limits on polls -------------------------------------------------------


def test_429_on_a_poll_waits_for_the_longest_hint_then_polls_again() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    limited = response(
        429,
        {"error": {"code": "RATE_LIMITED", "message": "slow down", "retryable": True}},
        {"retry-after": "3", "x-ratelimit-reset": str(int(NOW + 7))},
    )
    assert flow.send(limited) == Sleep(7.0)
    poll = flow.send(None)
    assert isinstance(poll, Send)
    assert poll.request.method == "GET"
    assert flow.send(response(200, execution("PROCESSING"))) == Sleep(INTERVAL)


def test_429_retry_after_alone() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    assert flow.send(response(429, {}, {"retry-after": "4"})) == Sleep(4.0)


def test_429_without_hints_backs_off_from_the_interval() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    waits = []
    for _ in range(3):
        waits.append(flow.send(response(429, b"Too Many Requests")))
        flow.send(None)
    assert waits == [Sleep(INTERVAL), Sleep(INTERVAL * 2), Sleep(INTERVAL * 4)]


def test_429_hint_shorter_than_the_interval_still_waits_the_interval() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    assert flow.send(response(429, {}, {"retry-after": "0"})) == Sleep(INTERVAL)


def test_remaining_zero_waits_until_the_reset() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    exhausted = response(
        200,
        execution("PROCESSING"),
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 12))},
    )
    assert flow.send(exhausted) == Sleep(12.0)
    flow.send(None)
    plenty = {"x-ratelimit-remaining": "40", "x-ratelimit-reset": str(int(NOW + 30))}
    assert flow.send(response(200, execution("PROCESSING"), plenty)) == Sleep(INTERVAL)


def test_429_on_the_result_slows_down_too() -> None:
    flow, _, _, _ = start()
    flow.send(response(202, execution("COMPLETED")))
    assert flow.send(response(429, {}, {"retry-after": "2"})) == Sleep(2.0)
    again = flow.send(None)
    assert again.request.url.endswith("/result")
    assert finish(flow, result("ok")).content == "ok"


# -- terminal failures -------------------------------------------------------------


def test_failed_execution_raises_its_normalized_error() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    failed = execution(
        "FAILED",
        error={
            "code": "INPUT_VALIDATION_ERROR",
            "message": "bad input",
            "retryable": False,
            "request_id": "req_9",
            "details": [{"field": "input.messages[0].content", "code": "too_long", "message": "too long"}],
        },
    )
    with pytest.raises(turnout.ValidationError) as caught:
        flow.send(response(200, failed))
    error = caught.value
    assert (error.kind, error.status, error.code, error.retryable) == (
        ErrorKind.VALIDATION,
        400,
        "INPUT_VALIDATION_ERROR",
        False,
    )
    assert error.request_id == "req_9"
    assert error.details == (turnout.FieldError("input.messages[0].content", "too_long", "too long"),)
    assert error.extra["execution_id"] == "exe_1"


def test_failed_with_an_unknown_code_is_upstream_error_without_status() -> None:
    flow, _, _, _ = start()
    flow.send(response(202, execution("PENDING")))
    flow.send(None)
    with pytest.raises(turnout.UpstreamError) as caught:
        flow.send(response(200, execution("FAILED", error={"code": "GPU_ON_FIRE"})))
    assert caught.value.status is None
    assert caught.value.code == "GPU_ON_FIRE"
    assert caught.value.request_id == "exe_1"
    assert "exe_1" in caught.value.message


def test_failed_without_an_error_object_is_upstream_error() -> None:
    flow, _, _, _ = start()
    with pytest.raises(turnout.UpstreamError):
        flow.send(response(202, execution("FAILED")))


def test_expired_is_a_retryable_timeout_and_the_retry_gets_a_new_key() -> None:
    flow, submit, mr, request = start()
    with pytest.raises(turnout.APITimeoutError) as caught:
        flow.send(response(202, execution("EXPIRED")))
    assert (caught.value.code, caught.value.retryable, caught.value.status) == ("EXPIRED", True, None)
    # The same call again (the router's retry): the old key would return the expired execution.
    retry = next(mr.chat(deployment(options={"poll_interval": INTERVAL}), request))
    assert retry.request.headers["idempotency-key"] != submit.request.headers["idempotency-key"]


def test_cancelled_is_upstream_error_not_retryable() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    with pytest.raises(turnout.UpstreamError) as caught:
        flow.send(response(200, execution("CANCELLED")))
    error = caught.value
    assert (error.kind, error.code, error.retryable) == (ErrorKind.UPSTREAM_ERROR, "CANCELLED", False)


def test_the_same_call_keeps_its_key_and_a_new_call_gets_another() -> None:
    mr = provider()
    dep = deployment()
    request = ChatRequest([{"role": "user", "content": "hi"}])
    again = ChatRequest(request.messages, call_id=request.call_id)
    other = ChatRequest(request.messages)
    key = mr.idempotency_key(dep, request)
    assert mr.idempotency_key(dep, again) == key
    assert mr.idempotency_key(dep, other) != key
    assert mr.idempotency_key(deployment("other"), request) != key
    assert key.isascii()
    assert len(key) <= 64


def test_a_poll_error_is_raised_without_cancelling_and_the_retry_keeps_the_key() -> None:
    flow, submit, mr, request = start()
    run_to_polling(flow)
    flow.send(None)
    unavailable = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "down", "retryable": True}}
    with pytest.raises(turnout.ServiceUnavailableError):
        flow.send(response(503, unavailable))
    retry = next(mr.chat(deployment(options={"poll_interval": INTERVAL}), request))
    assert retry.request.headers["idempotency-key"] == submit.request.headers["idempotency-key"]


def test_submit_error_is_normalized() -> None:
    flow, _, _, _ = start()
    body = {"error": {"code": "INSUFFICIENT_BALANCE", "message": "top up", "retryable": False}}
    with pytest.raises(turnout.InsufficientCreditsError) as caught:
        flow.send(response(402, body, {"x-request-id": "req_h"}))
    assert caught.value.request_id == "req_h"


# -- abandonment: the deadline and the caller ---------------------------------------------


def expect_cancel(command: Any) -> None:
    assert isinstance(command, Send)
    assert command.cleanup is True
    assert (command.request.method, command.request.url) == ("POST", f"{BASE}/v1/executions/exe_1/cancel")
    assert command.request.headers["authorization"] == f"Bearer {KEY}"


def test_deadline_during_a_sleep_cancels_then_reraises() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    deadline = deadline_error(1.0)
    expect_cancel(flow.throw(deadline))
    with pytest.raises(turnout.APITimeoutError) as caught:
        flow.send(response(200, execution("CANCELLED")))
    assert caught.value is deadline


def test_deadline_before_a_poll_is_sent_cancels() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)  # the poll
    deadline = deadline_error(1.0)
    expect_cancel(flow.throw(deadline))
    with pytest.raises(turnout.APITimeoutError) as caught:
        flow.send(response(409, b"already done"))
    assert caught.value is deadline


def test_a_failed_cancel_changes_nothing() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    deadline = deadline_error(1.0)
    expect_cancel(flow.throw(deadline))
    dropped = turnout.APIConnectionError("connection reset", code="ConnectError")
    with pytest.raises(turnout.APITimeoutError) as caught:
        flow.throw(dropped)
    assert caught.value is deadline


def test_caller_abandoning_cancels_then_reraises() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    expect_cancel(flow.throw(CallAbandoned("KeyboardInterrupt()")))
    with pytest.raises(CallAbandoned):
        flow.send(response(200, execution("CANCELLED")))


def test_a_transport_error_on_a_poll_does_not_cancel() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    reset = turnout.APIConnectionError("connection reset", code="ReadError")
    with pytest.raises(turnout.APIConnectionError) as caught:
        flow.throw(reset)
    assert caught.value is reset


def test_deadline_before_the_execution_exists_has_nothing_to_cancel() -> None:
    flow, _, _, _ = start()
    deadline = deadline_error(1.0)
    with pytest.raises(turnout.APITimeoutError) as caught:
        flow.throw(deadline)
    assert caught.value is deadline


def test_closing_the_flow_sends_nothing() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.close()  # GeneratorExit: no yield allowed, none attempted
    with pytest.raises(StopIteration):
        next(flow)


# -- bodies that are not what ModelRoute documents -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[1, 2]",
        b'{"status": "PENDING"}',
        b'{"id": "", "status": "PENDING"}',
        b"[" * 100_000,
    ],
)
def test_bad_submit_bodies_are_parse_errors(body: bytes) -> None:
    flow, _, _, _ = start()
    with pytest.raises(turnout.ResponseParseError):
        flow.send(HTTPResponse(202, {}, body))


def test_poll_without_status_is_parse_error() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    with pytest.raises(turnout.ResponseParseError):
        flow.send(response(200, {"id": "exe_1"}))


def test_truncated_poll_is_parse_error() -> None:
    flow, _, _, _ = start()
    run_to_polling(flow)
    flow.send(None)
    with pytest.raises(turnout.ResponseParseError):
        flow.send(HTTPResponse(200, {}, b'{"id": "exe_1", "sta', truncated=True))


@pytest.mark.parametrize("body", [{"id": "exe_1"}, {"id": "exe_1", "output": {"text": 5}}, {"output": "x"}])
def test_result_without_text_is_parse_error(body: dict[str, Any]) -> None:
    flow, _, _, _ = start()
    flow.send(response(202, execution("COMPLETED")))
    with pytest.raises(turnout.ResponseParseError):
        flow.send(response(200, body))


def test_result_error_is_normalized() -> None:
    flow, _, _, _ = start()
    flow.send(response(202, execution("COMPLETED")))
    with pytest.raises(turnout.InternalServerError) as caught:
        flow.send(response(500, {"error": {"code": "INTERNAL_ERROR", "message": "x"}}))
    assert caught.value.retryable is False
