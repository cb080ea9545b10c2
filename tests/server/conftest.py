"""Fixtures of the server tests: the fake gateways in this process (their faults
scripted by the tests), `turnout serve` in another, and the OpenAI SDK between.
`fake_server`, `fake` and `wire` are the integration tests' own."""

from __future__ import annotations

from tests.integration.conftest import fake, fake_server, wire

__all__ = ["fake", "fake_server", "wire"]
