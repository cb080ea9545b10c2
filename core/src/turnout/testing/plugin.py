"""The pytest plugin of `turnout[testing]`, registered through the `pytest11` entry
point: pytest loads it in every project where turnout is installed, so it imports
nothing but pytest until a fixture is used.

- `fake_gateways`: every installed provider's emulator on one loopback HTTP server;
- `turnout_kit`: the provider under test for `turnout.testing.ProviderConformance`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from turnout.fake import FakeGateways

    from .kit import Kit

__all__ = ["fake_gateways", "turnout_kit"]

_EXTRA = 'the fake gateways need the testing extra: pip install "turnout[testing]"'


@pytest.fixture(scope="session")
def _turnout_fake_server() -> Iterator[FakeGateways]:
    try:
        from turnout.fake import FakeGateways
    except ImportError as exc:  # uvicorn or starlette missing
        raise pytest.UsageError(f"{_EXTRA} ({exc})") from None
    with FakeGateways() as fake:
        yield fake


@pytest.fixture
def fake_gateways(_turnout_fake_server: FakeGateways) -> FakeGateways:
    """Every installed provider's emulator on one loopback HTTP server, its faults and
    counters reset for each test (`turnout.fake.FakeGateways`).

    `fake_gateways.base_url("acme")` is the base URL of a deployment;
    `fake_gateways.script("acme", Fault(error="rate_limited"), None)` scripts the next
    responses' faults; `fake_gateways.requests("acme")` counts the requests it answered.
    """
    _turnout_fake_server.reset()
    return _turnout_fake_server


@pytest.fixture(scope="class")
def turnout_kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """The provider a `ProviderConformance` subclass tests, with its emulator on a
    loopback server (one per class)."""
    cls: Any = request.cls
    make = getattr(cls, "make_kit", None)
    if make is None:
        raise pytest.UsageError("turnout_kit serves subclasses of turnout.testing.ProviderConformance")
    with make() as kit:
        cls.kit = kit
        yield kit
