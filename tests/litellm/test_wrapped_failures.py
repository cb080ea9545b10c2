"""Issue 20, defect 2: retries on top of the server's retries. A wrapped upstream failure
(`500 {"detail": "LLM call failed: ... Error code: 429 ..."}`) comes after the server
tried the upstream nine times; turnout repeated it twice more (27 upstream requests).
It is now never repeated on the same deployment; the router falls back."""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout.emulation import Fault
from turnout_litellm.emulator import LiteLLMEmulator

from .recorded import (
    ANTHROPIC_ANSWER,
    CALL_ANSWER,
    CHATS,
    JSON,
    SESSIONS,
    WRAPPED_429,
    Recorded,
    decisions,
    job_answers,
    lite,
    loopback,
)

PRIMARY, BACKUP = "https://primary.test/api", "https://backup.test/api"


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_a_wrapped_429_is_raised_after_one_attempt(call: Any) -> None:
    transport = Recorded({"create-and-call": [(500, JSON, WRAPPED_429)]})
    error = call([lite("lite", PRIMARY)], transport)
    assert isinstance(error, turnout.RateLimitError)
    assert (error.status, error.retryable) == (500, False)
    assert error.message.startswith("LLM call failed: 500: Failed to call provider API: OpenAI rate limit")
    assert decisions(error.attempts) == [("rate_limited", "give_up")]
    assert error.attempts[0].reason == "not retryable"
    assert transport.paths() == ["create-and-call"]


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_the_router_falls_back_at_once(call: Any) -> None:
    transport = Recorded({"create-and-call": [(500, JSON, WRAPPED_429), (200, JSON, ANTHROPIC_ANSWER)]})
    response = call([lite("lite", PRIMARY), lite("backup", BACKUP)], transport)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "backup"
    assert decisions(response.attempts) == [("rate_limited", "fallback"), (None, "done")]
    assert [r.url.host for r in transport.requests] == ["primary.test", "backup.test"]


@pytest.mark.parametrize("call", SESSIONS.values(), ids=list(SESSIONS))
def test_a_job_call_is_not_repeated(call: Any) -> None:
    transport = Recorded(job_answers(llm_call=[(500, JSON, WRAPPED_429), (200, JSON, CALL_ANSWER)]))
    _session, error = call(lite("lite", PRIMARY), transport)
    assert isinstance(error, turnout.RateLimitError)
    assert decisions(error.attempts) == [("rate_limited", "give_up")]
    assert transport.paths() == ["create", "llm-call", "complete"]


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_nine_upstream_requests_not_twenty_seven(call: Any) -> None:
    primary, backup = LiteLLMEmulator(credits=10), LiteLLMEmulator(credits=10)
    with loopback(litellm=primary, backup=backup) as fake:
        fake.script("litellm", Fault(error="upstream_429"))
        deps = [lite("lite", fake.base_url("litellm")), lite("backup", fake.base_url("backup"))]
        response = call(deps)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "backup"
    assert primary.upstream_requests == 9  # the server's own tries, and no more
    assert primary.hits == {"create-and-call": 1}
    (failed,) = primary.jobs.values()
    assert (failed.status, primary.credits_remaining) == ("FAILED", 10)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("upstream_500", "server_error"),
        ("upstream_502", "upstream_error"),
        ("upstream_503", "unavailable"),
        ("upstream_504", "timeout"),
        ("no_credentials", "server_error"),
    ],
)
def test_every_wrapped_failure_is_not_repeated(fault: str, kind: str) -> None:
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", Fault(error=fault))
        error = CHATS["Router"]([lite("lite", fake.base_url("litellm"))])
    assert isinstance(error, turnout.ProviderError)
    assert (error.kind.value, error.status, error.retryable) == (kind, 500, False)
    assert emulator.hits == {"create-and-call": 1}


def test_the_servers_own_crash_is_still_retried():
    # A plain-text 500 is not an upstream failure the server retried: the policy repeats it.
    emulator = LiteLLMEmulator()
    with loopback(litellm=emulator) as fake:
        fake.script("litellm", Fault(error="plain_500"))
        response = CHATS["Router"]([lite("lite", fake.base_url("litellm"))])
    assert isinstance(response, turnout.ChatResponse)
    assert decisions(response.attempts) == [("server_error", "retry"), (None, "done")]
