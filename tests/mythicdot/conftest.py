from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import turnout
from turnout.emulation import FaultScript, mock_transport
from turnout_mythicdot.emulator import MythicDotEmulator
from turnout_mythicdot.provider import MythicDot

from .helpers import HOST, NoJitter, deployment, emulators


@pytest.fixture
def provider() -> MythicDot:
    return MythicDot()


@pytest.fixture
def emulator() -> MythicDotEmulator:
    return MythicDotEmulator()


@pytest.fixture
def make_router() -> Iterator[Callable[..., turnout.Router]]:
    made: list[turnout.Router] = []

    def make(
        faults: FaultScript | None = None,
        deployments: Sequence[turnout.Deployment] | None = None,
        hosts: Sequence[str] = (HOST,),
        **kwargs: Any,
    ) -> turnout.Router:
        kwargs.setdefault("rng", NoJitter())
        router = turnout.Router(
            list(deployments or [deployment()]),
            transport=mock_transport(emulators(hosts), faults),
            **kwargs,
        )
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()
