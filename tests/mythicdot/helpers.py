"""Shared pieces of the MythicDot tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import turnout
from turnout_mythicdot.emulator import MythicDotEmulator

HOST = "mythic.test"
BASE_URL = f"https://{HOST}/v1"
KEY = "sk-mythic-Zq8vT3kPd9XwL2rN5sY7"


class NoJitter(random.Random):
    """Full jitter drawn at its lowest: the backoff is 0 and only Retry-After is waited."""

    def uniform(self, a: float, b: float) -> float:
        return a


def deployment(name: str = "mythic", host: str = HOST, **kwargs: Any) -> turnout.Deployment:
    kwargs.setdefault("api_key", KEY)
    return turnout.Deployment(name, "mythicdot", "mythic-4", base_url=f"https://{host}/v1", **kwargs)


def emulators(hosts: Sequence[str] = (HOST,)) -> dict[str, MythicDotEmulator]:
    return {host: MythicDotEmulator() for host in hosts}
