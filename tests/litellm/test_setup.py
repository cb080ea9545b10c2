"""Issue 20, item 9: what the docs must say, and the one mistake the server words badly
(a base_url without its /api gets FastAPI's bare `Not Found`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import turnout
from turnout_litellm import LiteLLM
from turnout_litellm.emulator import LiteLLMEmulator

from .recorded import CHATS, JSON, NOT_FOUND, Recorded, lite, loopback
from .test_plugin import load_gen_tables

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "providers" / "litellm.md"


@pytest.mark.parametrize("call", CHATS.values(), ids=list(CHATS))
def test_a_base_url_without_its_api_says_what_to_check(call: Any) -> None:
    transport = Recorded({"create-and-call": [(404, JSON, NOT_FOUND)]})
    error = call([lite("lite", "https://lite.test")], transport)
    assert isinstance(error, turnout.NotFoundError)
    assert error.message.startswith("Not Found (no such endpoint: check the deployment's base_url")
    assert "/api" in error.message


def test_over_the_emulator():
    with loopback(litellm=LiteLLMEmulator()) as fake:
        error = CHATS["Router"]([lite("lite", fake.url("litellm"))])  # the root, not /api
    assert isinstance(error, turnout.NotFoundError)
    assert "check the deployment's base_url" in error.message


def test_the_servers_own_404s_are_left_as_they_are():
    transport = Recorded({"create-and-call": [(404, JSON, b'{"detail":"Team \'t\' not found"}')]})
    error = CHATS["Router"]([lite("lite", "https://lite.test/api")], transport)
    assert error.message == "Team 't' not found"


@pytest.mark.parametrize(
    "fact",
    [
        "no job id",  # a streamed call
        "still charged",  # an upstream error mid-stream
        "does not stop the charge",  # a client deadline
        "Not Found",  # a wrong base_url, and what to check
        "broken",  # llm-call-stream on v1.0.2
        "v1.0.2",
        "not safe to repeat",
        "LLM call failed",
        "COMPLETED",
        "unsupported_feature",
    ],
)
def test_the_page_states_the_servers_behaviour(fact: str) -> None:
    prose = " ".join(PAGE.read_text().replace("*", "").split())
    assert fact in prose


def test_the_generated_table_is_still_made_from_the_plugins_table():
    table = load_gen_tables().provider_table(LiteLLM())
    assert (
        "| `overloaded_error` |  | `unavailable` | yes | yes | Anthropic upstream, in a stream frame |"
        in table
    )
    assert '--8<-- "litellm.md"' in PAGE.read_text()
