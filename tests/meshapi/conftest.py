from __future__ import annotations

import pytest

from turnout_meshapi.emulator import MeshAPIEmulator
from turnout_meshapi.provider import MeshAPI


@pytest.fixture
def provider() -> MeshAPI:
    return MeshAPI()


@pytest.fixture
def emulator() -> MeshAPIEmulator:
    return MeshAPIEmulator()
