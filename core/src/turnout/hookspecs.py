"""Hook specifications: what a turnout plugin may contribute.

A plugin is a module with `@turnout.hookimpl` functions, registered through
the `turnout` entry-point group (or in code with `turnout.register_plugin`).
Each hook receives a `register` callback and calls it once per thing it
contributes, as simonw/llm's plugins do. Every hook here is documented in
docs/plugins.md; a test fails when one is not.

Precedence (docs/plugins.md): what the user registers in code wins over
installed plugins; two installed distributions claiming one provider,
normalizer or policy name are a `ConfigError` naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._normalize import ErrorNormalizer
    from ._provider import Provider
    from ._retry import RetryPolicy
    from .emulation import Emulator

__all__ = [
    "hookimpl",
    "hookspec",
    "turnout_register_emulators",
    "turnout_register_normalizers",
    "turnout_register_observers",
    "turnout_register_providers",
    "turnout_register_retry_policies",
]

hookspec = pluggy.HookspecMarker("turnout")
hookimpl = pluggy.HookimplMarker("turnout")


@hookspec
def turnout_register_providers(register: Callable[[Provider], None]) -> None:
    """Register providers: call `register(provider)` once for each `Provider` instance.

    A provider carries its codec, its error table and its default retry policy.
    """


@hookspec
def turnout_register_normalizers(register: Callable[[str, ErrorNormalizer], None]) -> None:
    """Replace the error normalizer of an installed provider: call
    `register(provider_name, normalizer)`, `normalizer` being any object with
    `normalize(*, status, headers, body) -> ProviderError` (`turnout.ErrorNormalizer`).

    For a gateway you do not own seen through something that rewrites its
    errors (a company proxy in front of MeshAPI): the provider's requests and
    answers stay its own, its errors are read your way.
    """


@hookspec
def turnout_register_retry_policies(register: Callable[[str, RetryPolicy], None]) -> None:
    """Register named retry policies: call `register(name, policy)` once for each.

    Configuration refers to them by name (`retry_policy = "patient"` on the
    router, a route or a deployment); a named policy replaces the provider's
    default where it is set.
    """


@hookspec
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    """Register wire-format emulators: call `register(emulator)` once for each.

    An emulator answers requests exactly as its gateway would, with injectable
    faults; tests and the fake-gateway server use it instead of the network.
    """


@hookspec
def turnout_register_observers(register: Callable[[object], None]) -> None:
    """Register observers: call `register(observer)` once for each, an object with
    `on_attempt(event)` and/or `on_call(event)` (every method optional).

    Installed observers are on for every router (`TURNOUT_DISABLE_PLUGINS`
    turns a plugin off); an observer that raises is logged and ignored.
    """
