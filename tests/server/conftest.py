"""Fixtures of the server tests: the fake gateways in this process (their faults
scripted by the tests), `turnout serve` in another, and the OpenAI SDK between."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.chatkit import Wire, wire_fixture
from turnout.fake import FakeGateways


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeGateways]:
    with FakeGateways(seed=2222) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeGateways) -> Iterator[FakeGateways]:
    """The fake gateways with no faults, no script and no request counted."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def wire(fake: FakeGateways) -> Iterator[Wire]:
    """What the fake gateways received during the test, as sent."""
    yield from wire_fixture(fake)
