"""turnout-acme: Acme's in-house gateway for turnout, an example plugin built only on
turnout's public API. Installed, it registers the provider `acme`, its emulator and
the named retry policy `acme-patient`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import turnout

if TYPE_CHECKING:
    from turnout import Provider, RetryPolicy
    from turnout.emulation import Emulator

__all__: list[str] = []


# --8<-- [start:hooks]
@turnout.hookimpl
def turnout_register_providers(register: Callable[[Provider], None]) -> None:
    from .provider import Acme

    register(Acme())


@turnout.hookimpl
def turnout_register_retry_policies(register: Callable[[str, RetryPolicy], None]) -> None:
    from .policy import ACME_PATIENT

    register("acme-patient", ACME_PATIENT)


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import AcmeEmulator

    register(AcmeEmulator())


# --8<-- [end:hooks]
