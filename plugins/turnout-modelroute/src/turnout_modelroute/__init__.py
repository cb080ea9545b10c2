"""turnout provider plugin for ModelRoute's asynchronous executions API (`modelroute`).

Registered through the `turnout` entry-point group. Nothing heavy is imported
here: the provider module is loaded by the first hook, the emulator (which
imports httpx) only by the second. `turnout_modelroute.webhooks` verifies and
parses ModelRoute's callbacks.
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
    from .provider import ModelRoute

    register(ModelRoute())


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import ModelRouteEmulator

    register(ModelRouteEmulator())
