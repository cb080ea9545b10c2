"""The emulator on its own: the executions API as ModelRoute answers it."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import turnout
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault
from turnout_modelroute.emulator import ModelRouteEmulator, Outcome

from .conftest import KEY

AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
SUBMIT_BODY = {"model": "m", "input": {"messages": [{"role": "user", "content": "hey"}]}}


def submit(
    emulator: ModelRouteEmulator, key: str | None = "k-1", body: Any = SUBMIT_BODY
) -> EmulatedResponse:
    headers = dict(AUTH)
    if key is not None:
        headers["idempotency-key"] = key
    return emulator.handle(EmulatedRequest("POST", "/v1/executions", headers, json.dumps(body).encode()))


def get(emulator: ModelRouteEmulator, path: str) -> EmulatedResponse:
    return emulator.handle(EmulatedRequest("GET", path, AUTH))


def payload(reply: EmulatedResponse) -> Any:
    return json.loads(reply.body)


def test_states_follow_the_poll_count() -> None:
    emulator = ModelRouteEmulator(default=Outcome(pending_polls=2, processing_polls=1))
    created = submit(emulator)
    assert created.status == 202
    execution_id = payload(created)["id"]
    assert payload(created)["status"] == "PENDING"
    seen = [payload(get(emulator, f"/v1/executions/{execution_id}"))["status"] for _ in range(5)]
    assert seen == ["PENDING", "PENDING", "PROCESSING", "COMPLETED", "COMPLETED"]
    result = payload(get(emulator, f"/v1/executions/{execution_id}/result"))
    assert result["output"] == {"text": "echo: hey"}
    assert result["id"] == execution_id


def test_a_base_url_prefix_is_fine() -> None:
    emulator = ModelRouteEmulator()
    reply = emulator.handle(
        EmulatedRequest(
            "POST", "/api/v1/executions", {**AUTH, "idempotency-key": "x"}, json.dumps(SUBMIT_BODY).encode()
        )
    )
    assert reply.status == 202


def test_the_same_key_is_the_same_execution() -> None:
    emulator = ModelRouteEmulator()
    first, again, other = submit(emulator, "k-1"), submit(emulator, "k-1"), submit(emulator, "k-2")
    assert payload(first)["id"] == payload(again)["id"] != payload(other)["id"]
    assert emulator.submissions == ["k-1", "k-1", "k-2"]
    assert emulator.execution_count == 2
    assert emulator.execution(payload(first)["id"]).submits == 2


def test_no_key_means_a_new_execution_each_time() -> None:
    emulator = ModelRouteEmulator()
    submit(emulator, None)
    submit(emulator, None)
    assert emulator.execution_count == 2
    assert emulator.submissions == [None, None]


def test_script_then_model_outcomes_then_default() -> None:
    emulator = ModelRouteEmulator(
        script=[Outcome.expired(pending_polls=0, processing_polls=0)],
        outcomes={"special": Outcome.failed("FILE_NOT_FOUND", pending_polls=0, processing_polls=0)},
        default=Outcome(pending_polls=0, processing_polls=0),
    )
    ids = [
        payload(submit(emulator, "a"))["id"],
        payload(submit(emulator, "b", {**SUBMIT_BODY, "model": "special"}))["id"],
        payload(submit(emulator, "c"))["id"],
    ]
    polled = [payload(get(emulator, f"/v1/executions/{i}")) for i in ids]
    assert [p["status"] for p in polled] == ["EXPIRED", "FAILED", "COMPLETED"]
    error = polled[1]["error"]
    assert error["code"] == "FILE_NOT_FOUND"
    assert error["retryable"] is False
    emulator.script.append(Outcome.cancelled(pending_polls=0, processing_polls=0))
    late = payload(submit(emulator, "d"))["id"]
    assert payload(get(emulator, f"/v1/executions/{late}"))["status"] == "CANCELLED"


def test_cancel_stops_a_running_execution_but_not_a_finished_one() -> None:
    emulator = ModelRouteEmulator(outcomes={"m": Outcome.running()})
    running = payload(submit(emulator, "a"))["id"]
    cancel = emulator.handle(EmulatedRequest("POST", f"/v1/executions/{running}/cancel", AUTH))
    assert cancel.status == 200
    assert payload(cancel)["status"] == "CANCELLED"
    assert payload(get(emulator, f"/v1/executions/{running}"))["status"] == "CANCELLED"

    emulator.outcomes.clear()
    emulator.default = Outcome(pending_polls=0, processing_polls=0)
    done = payload(submit(emulator, "b"))["id"]
    get(emulator, f"/v1/executions/{done}")
    emulator.handle(EmulatedRequest("POST", f"/v1/executions/{done}/cancel", AUTH))
    assert emulator.execution(done).status == "COMPLETED"
    assert emulator.cancels == [running, done]


def test_the_result_of_an_unfinished_execution_is_refused() -> None:
    emulator = ModelRouteEmulator()
    execution_id = payload(submit(emulator))["id"]
    reply = get(emulator, f"/v1/executions/{execution_id}/result")
    assert reply.status == 409


def test_unknown_executions_and_paths_are_404() -> None:
    emulator = ModelRouteEmulator()
    assert get(emulator, "/v1/executions/exe_nope").status == 404
    assert get(emulator, "/v2/other").status == 404


def test_a_missing_key_is_401() -> None:
    emulator = ModelRouteEmulator()
    reply = emulator.handle(EmulatedRequest("POST", "/v1/executions", {}, json.dumps(SUBMIT_BODY).encode()))
    error = turnout.normalize_error("modelroute", status=reply.status, body=reply.body)
    assert error.kind is turnout.ErrorKind.AUTHENTICATION


@pytest.mark.parametrize(
    "body", [{"input": {"messages": []}}, {"model": "m"}, [1], {"model": "m", "input": "x"}]
)
def test_invalid_submits_are_input_validation_errors(body: Any) -> None:
    reply = submit(ModelRouteEmulator(), body=body)
    assert reply.status == 400
    error = turnout.normalize_error("modelroute", status=400, body=reply.body)
    assert error.kind is turnout.ErrorKind.VALIDATION
    assert error.details
    assert all(isinstance(d, turnout.FieldError) for d in error.details)


def test_rate_limit_headers_on_polls() -> None:
    emulator = ModelRouteEmulator(
        default=Outcome(rate_limited_polls=1, exhausted_polls=1, retry_after=3), clock=lambda: 1000.0 + 1e9
    )
    execution_id = payload(submit(emulator))["id"]
    limited = get(emulator, f"/v1/executions/{execution_id}")
    assert limited.status == 429
    assert limited.header("retry-after") == "3"
    assert limited.header("x-ratelimit-reset") == str(int(1e9 + 1003))
    assert payload(limited)["error"]["code"] == "RATE_LIMITED"
    exhausted = get(emulator, f"/v1/executions/{execution_id}")
    assert exhausted.status == 200
    assert exhausted.header("x-ratelimit-remaining") == "0"
    assert exhausted.header("x-ratelimit-reset") == str(int(1e9 + 1003))
    plenty = get(emulator, f"/v1/executions/{execution_id}")
    assert plenty.header("x-ratelimit-remaining") != "0"


def test_a_faulted_submit_is_recorded_but_creates_nothing() -> None:
    emulator = ModelRouteEmulator()
    request = EmulatedRequest(
        "POST", "/v1/executions", {**AUTH, "idempotency-key": "k"}, json.dumps(SUBMIT_BODY).encode()
    )
    reply = emulator.handle(request, Fault(error="unavailable"))
    assert reply.status == 503
    assert emulator.submissions == ["k"]
    assert emulator.execution_count == 0


def test_concurrent_submits_are_safe() -> None:
    emulator = ModelRouteEmulator()
    barrier = threading.Barrier(16)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(25):
            key = "shared" if i % 5 == 0 else f"k-{n}-{i}"
            reply = submit(emulator, key)
            with lock:
                ids.append(payload(reply)["id"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(emulator.submissions) == 16 * 25
    # 20 distinct keys per worker, plus the one shared key: exactly one execution each.
    assert emulator.execution_count == 16 * 20 + 1
    assert len(set(ids)) == emulator.execution_count
    assert emulator.execution(emulator.keys["shared"]).submits == 16 * 5


def test_registered_for_serve_fake() -> None:
    assert isinstance(turnout.Plugins().emulators()["modelroute"], ModelRouteEmulator)


def test_an_outcome_must_end_in_a_terminal_status() -> None:
    with pytest.raises(ValueError, match="status"):
        Outcome(status="PROCESSING")
