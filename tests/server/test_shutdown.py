"""Graceful shutdown: on SIGTERM the calls in flight finish within the grace period,
new ones get 503 (`x-should-retry: true`: another instance can take them), and the
server exits 0 once none is left; past the grace period the calls left are answered
503 (or, in a stream already begun, with an error frame)."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .serving import KEY, ServeProcess, metric, server_config

ROUTES = '\n[routes]\nchat = ["meshapi"]\n'
WORDS = [{"role": "user", "content": "one two three four five six"}]
AUTH = {"authorization": f"Bearer {KEY}"}


def start(fake: FakeGateways, tmp_path: Path, *args: str) -> ServeProcess:
    path = tmp_path / "turnout.toml"
    path.write_text(server_config(fake, ("meshapi", "mume"), ROUTES, "grace_period = 20.0"))
    return ServeProcess(path, *args).start()


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


def wait_inflight(server: ServeProcess, count: int) -> None:
    for _ in range(200):
        if metric(server.metrics(), "turnout_server_inflight") == count:
            return
        time.sleep(0.02)
    raise AssertionError(f"never {count} calls in flight")


def test_calls_in_flight_finish_and_new_ones_get_503(
    fake: FakeGateways, tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    server = start(fake, tmp_path)
    try:
        fake.script("meshapi", Fault(latency=1.5))
        fake.set_faults("mume", {"chunk_delay": 0.2})
        with openai.OpenAI(base_url=server.base_url, api_key=KEY) as sdk:
            plain = pool.submit(sdk.chat.completions.create, model="chat", messages=WORDS)
            streamed = pool.submit(server.events, {"model": "mume", "messages": WORDS})
            wait_inflight(server, 2)
            server.signal()
            refused = httpx.post(
                f"{server.base_url}/chat/completions", json={"model": "chat", "messages": WORDS}, headers=AUTH
            )
            ready = httpx.get(f"{server.root}/readyz")
            alive = httpx.get(f"{server.root}/healthz")
            answer = plain.result(30)
            status, events = streamed.result(30)
    finally:
        code = server.wait(30)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["x-should-retry"] == "true"
    assert refused.headers["connection"] == "close"
    assert (ready.status_code, ready.json()) == (503, {"status": "shutting_down"})
    assert alive.status_code == 200
    # Both calls in flight finished, whole.
    assert answer.choices[0].message.content == "echo: one two three four five six"
    assert status == 200
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "echo: one two three four five six"
    assert code == 0, server.log()


def test_past_the_grace_period_the_calls_left_are_answered_and_the_server_exits(
    fake: FakeGateways, tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    server = start(fake, tmp_path, "--grace-period", "0.5")
    try:
        fake.script("meshapi", Fault(latency=30))
        fake.set_faults("mume", {"chunk_delay": 5})
        plain = pool.submit(
            httpx.post,
            f"{server.base_url}/chat/completions",
            json={"model": "chat", "messages": WORDS},
            headers=AUTH,
            timeout=30,
        )
        streamed = pool.submit(server.events, {"model": "mume", "messages": WORDS})
        wait_inflight(server, 2)
        began = time.monotonic()
        server.signal()
        answer = plain.result(30)
        status, events = streamed.result(30)
        waited = time.monotonic() - began
    finally:
        code = server.wait(30)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "shutting_down"
    assert answer.headers["x-should-retry"] == "true"
    # The stream had begun: its first chunk, then one error frame, no [DONE].
    assert status == 200
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "echo: "
    assert json.loads(events[-1])["error"]["code"] == "shutting_down"
    assert "[DONE]" not in events
    # Answered at the end of the grace period, not when the gateway would have answered.
    assert waited < 20
    assert code == 0, server.log()
