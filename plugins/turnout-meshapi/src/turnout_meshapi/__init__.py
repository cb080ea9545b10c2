"""turnout-meshapi: the MeshAPI gateway (https://meshapi.ai) for turnout.

Registered through the `turnout` entry-point group. Importing this package
stays light: the provider module is imported when turnout first asks for
providers, and the emulator (which needs httpx) only when it asks for emulators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import turnout

if TYPE_CHECKING:
    from turnout import Provider
    from turnout.emulation import Emulator

    from .emulator import MeshAPIEmulator
    from .provider import MeshAPI

__version__ = "0.1.0"

__all__ = ["MeshAPI", "MeshAPIEmulator", "turnout_register_emulators", "turnout_register_providers"]

_LAZY = {"MeshAPI": "provider", "MeshAPIEmulator": "emulator"}


@turnout.hookimpl
def turnout_register_providers(register: Callable[[Provider], None]) -> None:
    from .provider import MeshAPI

    register(MeshAPI())


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import MeshAPIEmulator

    register(MeshAPIEmulator())


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout_meshapi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
