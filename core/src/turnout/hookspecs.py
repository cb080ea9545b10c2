"""Hook specifications: what a turnout plugin may contribute.

A plugin is a module with `@turnout.hookimpl` functions, registered through
the `turnout` entry-point group (or in code with `turnout.register_plugin`).
Each hook receives a `register` callback and calls it once per thing it
contributes, as simonw/llm's plugins do. Every hook here is documented in
docs/plugins.md; a test fails when one is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._provider import Provider
    from .emulation import Emulator

__all__ = ["hookimpl", "hookspec", "turnout_register_emulators", "turnout_register_providers"]

hookspec = pluggy.HookspecMarker("turnout")
hookimpl = pluggy.HookimplMarker("turnout")


@hookspec
def turnout_register_providers(register: Callable[[Provider], None]) -> None:
    """Register providers: call `register(provider)` once for each `Provider` instance.

    A provider carries its codec, its error table and its default retry policy.
    """


@hookspec
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    """Register wire-format emulators: call `register(emulator)` once for each.

    An emulator answers requests exactly as its gateway would, with injectable
    faults; tests and the fake-gateway server use it instead of the network.
    """
