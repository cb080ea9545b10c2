from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import turnout
from turnout.emulation import mock_transport
from turnout.testing.server import EmulatorServer
from turnout_mume.emulator import MumeEmulator
from turnout_mume.provider import Mume

from .helpers import mume_deployment


@pytest.fixture
def plugins() -> turnout.Plugins:
    """Only Mume, registered in code: router tests do not depend on what else is installed."""
    found = turnout.Plugins(entry_points=False)
    found.add_provider(Mume())
    return found


@pytest.fixture
def emulator() -> MumeEmulator:
    return MumeEmulator()


@pytest.fixture
def make_router(plugins: turnout.Plugins, emulator: MumeEmulator) -> Iterator[Callable[..., turnout.Router]]:
    made: list[turnout.Router] = []

    def make(
        faults: Any = None, deployments: list[turnout.Deployment] | None = None, **kw: Any
    ) -> turnout.Router:
        kw.setdefault("transport", mock_transport({"mume.test": emulator}, faults))
        router = turnout.Router(deployments or [mume_deployment()], plugins=plugins, **kw)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


@pytest.fixture
async def make_async_router(
    plugins: turnout.Plugins, emulator: MumeEmulator
) -> AsyncIterator[Callable[..., turnout.AsyncRouter]]:
    made: list[turnout.AsyncRouter] = []

    def make(
        faults: Any = None, deployments: list[turnout.Deployment] | None = None, **kw: Any
    ) -> turnout.AsyncRouter:
        kw.setdefault("transport", mock_transport({"mume.test": emulator}, faults))
        router = turnout.AsyncRouter(deployments or [mume_deployment()], plugins=plugins, **kw)
        made.append(router)
        return router

    yield make
    for router in made:
        await router.aclose()


@pytest.fixture
def mume_server() -> Iterator[EmulatorServer]:
    """The Mume emulator on a real loopback socket, shut down after the test."""
    server = EmulatorServer(MumeEmulator()).start()
    try:
        yield server
    finally:
        server.close()
