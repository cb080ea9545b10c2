"""Fixtures for the integration tests: one fake-gateway server over real loopback HTTP
for the whole session, reset before each test, and deployments pointing at it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import turnout
from turnout.fake import FakeGateways

from .chatkit import Wire, wire_fixture

PROVIDERS = ("meshapi", "mume", "litellm", "mythicdot", "modelroute")
MODELS = {
    "meshapi": "openai/gpt-4o-mini",
    "mume": "openai/gpt-4.1-mini",
    "litellm": "ChatAgent",
    "mythicdot": "mythic-4",
    "modelroute": "mr-chat-1",
}
# Fast backoff, so a retry waits the server's Retry-After and little more.
FAST = turnout.RetryOverrides(base=0.01, cap=0.02)


def modelroute_key() -> str:
    body = hashlib.sha256(b"integration").hexdigest()
    return f"sk_{body}_{zlib.crc32(body.encode()):08x}"


KEYS = {
    "meshapi": "rsk_integration_key",
    "mume": "mume-integration-key",
    "litellm": "sk-litellm-integration",
    "mythicdot": "sk-mythic-integration",
    "modelroute": modelroute_key(),
}
OPTIONS: dict[str, dict[str, Any]] = {
    "litellm": {"team_id": "team_integration"},
    "modelroute": {"poll_interval": 0.01},
}


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeGateways]:
    with FakeGateways(seed=1234) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeGateways) -> Iterator[FakeGateways]:
    """The session's fake gateways, with no faults, no script and no requests counted."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def deployment(fake: FakeGateways, provider: str, name: str | None = None, **kw: Any) -> turnout.Deployment:
    kw.setdefault("api_key", KEYS[provider])
    kw.setdefault("base_url", fake.base_url(provider))
    kw.setdefault("options", OPTIONS.get(provider, {}))
    kw.setdefault("retry_policy", FAST)
    return turnout.Deployment(name or provider, provider, MODELS[provider], **kw)


def config_toml(fake: FakeGateways, providers: tuple[str, ...] = PROVIDERS, routes: str = "") -> str:
    """A router configuration file for `turnout chat`, pointing at the fake gateways."""
    parts = ["deadline = 20.0", ""]
    for provider in providers:
        parts += [
            "[[deployments]]",
            f'name = "{provider}"',
            f'provider = "{provider}"',
            f'model = "{MODELS[provider]}"',
            f'api_key = "{KEYS[provider]}"',
            f'base_url = "{fake.base_url(provider)}"',
        ]
        options = OPTIONS.get(provider)
        if options:
            inline = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in options.items())
            parts.append(f"options = {{ {inline} }}")
        parts += ["retry = { base = 0.01, cap = 0.02 }", ""]
    return "\n".join(parts) + routes


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m turnout ...` with stdout a pipe (so: plain text); `env` adds variables."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100", **(env or {})}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=Path(__file__).parent,
        check=False,
    )


@pytest.fixture
def wire(fake: FakeGateways) -> Iterator[Wire]:
    """What the fake gateways receive during the test, as sent, and their replies."""
    yield from wire_fixture(fake)
