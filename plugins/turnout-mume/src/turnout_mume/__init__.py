"""turnout provider plugin for the Mume gateway.

Kept light on purpose: the provider module is imported only when turnout asks
for providers, and the emulator (which imports httpx) only when it asks for
emulators.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import turnout

if TYPE_CHECKING:
    from turnout.emulation import Emulator

    from .emulator import MumeEmulator
    from .provider import Mume

__all__ = ["Mume", "MumeEmulator", "turnout_register_emulators", "turnout_register_providers"]

__version__ = "0.1.0"


@turnout.hookimpl
def turnout_register_providers(register: Callable[[turnout.Provider], None]) -> None:
    from .provider import Mume

    register(Mume())


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import MumeEmulator

    register(MumeEmulator())


# `from turnout_mume import Mume` works, without importing anything until used.
_LAZY = {"Mume": ".provider", "MumeEmulator": ".emulator"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
