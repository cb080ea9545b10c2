"""`turnout serve --workers 2` with `[state] backend = "redis"`: both workers answer,
their metrics add up whichever one is scraped, and what one learns about a
deployment (a rate limit) the other knows too."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.state.conftest import RedisServer
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .serving import KEY, ServeProcess, metric, server_config

pytestmark = pytest.mark.redis

ROUTES = '\n[routes]\nchat = ["meshapi"]\nonly = ["mythicdot"]\n'
HELLO = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(fake_server: FakeGateways, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("workers")
    redis = RedisServer(workdir).start()
    try:
        state = f'\n[state]\nbackend = "redis"\nurl = "{redis.url}"\nprefix = "serve-test:"\n'
        path = workdir / "turnout.toml"
        path.write_text(server_config(fake_server, ("meshapi", "mythicdot"), ROUTES + state))
        process = ServeProcess(path, "--workers", "2").start()
        yield process
        assert process.stop() == 0, process.log()
    finally:
        redis.stop()


def worker_of(response: httpx.Response) -> str:
    """Which process answered: request ids begin with a prefix of the process's own."""
    found = re.match(r"req_[0-9a-f]{12}", response.headers["x-request-id"])
    assert found is not None
    return found.group(0)


def from_both(ask: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Answers to `ask` (a new connection each time) until both workers have answered."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers.append(ask())
        if len({worker_of(a) for a in answers}) == 2:
            return answers
    raise AssertionError(f"one worker answered all {len(answers)} requests")


def test_both_workers_answer_and_the_metrics_add_up(server: ServeProcess, fake: FakeGateways) -> None:
    before = metric(server.metrics(), "turnout_calls_total", route="chat", outcome="ok")
    answers = from_both(
        lambda: httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "chat", "messages": HELLO}, headers=AUTH
        )
    )
    assert all(a.json()["choices"][0]["message"]["content"] == "echo: hello" for a in answers)
    # Whichever worker is scraped, the count is every worker's.
    for _ in range(6):
        after = metric(server.metrics(), "turnout_calls_total", route="chat", outcome="ok")
        assert after - before == len(answers)


def test_a_rate_limit_one_worker_meets_sets_the_deployment_aside_for_both(
    server: ServeProcess, fake: FakeGateways
) -> None:
    fake.script("mythicdot", Fault(error="rate_limited", retry_after=90))
    limited = httpx.post(
        f"{server.base_url}/chat/completions", json={"model": "only", "messages": HELLO}, headers=AUTH
    )
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "90"
    # Every worker now knows (through Redis): not ready, and a call is refused at once.
    for ready in from_both(lambda: httpx.get(f"{server.root}/readyz")):
        assert ready.status_code == 503
        route = ready.json()["routes"]["only"]
        assert route["ready"] is False
        assert route["reasons"]["mythicdot"].startswith("cooling down after rate_limited for ")
    refused = from_both(
        lambda: httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "only", "messages": HELLO}, headers=AUTH
        )
    )
    for answer in refused:
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "no_healthy_deployment"
        assert 80 <= int(answer.headers["retry-after"]) <= 90
    assert fake.counts()["mythicdot"] == 1


def workers(server: ServeProcess) -> set[int]:
    """The worker processes (children of the parent started by multiprocessing's spawn)."""
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}


def test_a_worker_that_dies_is_replaced(server: ServeProcess) -> None:
    before = workers(server)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    for _ in range(200):
        now = workers(server)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    assert len(now) == 2
    assert victim not in now
    # Both answer again (the new one once it has started).
    answers = from_both(lambda: httpx.get(f"{server.base_url}/models", headers=AUTH))
    assert all(a.status_code == 200 for a in answers)
