"""turnout provider plugin for the MythicDot API (`mythicdot`).

Registered through the `turnout` entry-point group. Nothing heavy is imported
here: the provider module is loaded by the first hook, the emulator (which
imports httpx) only by the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import turnout

if TYPE_CHECKING:
    from turnout.emulation import Emulator

__all__ = ["turnout_register_emulators", "turnout_register_providers"]

__version__ = "0.1.0"


@turnout.hookimpl
def turnout_register_providers(register: Callable[[turnout.Provider], None]) -> None:
    from .provider import MythicDot

    register(MythicDot())


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import MythicDotEmulator

    register(MythicDotEmulator())
