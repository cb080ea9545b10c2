"""The core's own test provider passes the kit (the kit's own tests, against broken
providers, are tests/core/test_kit.py)."""

from __future__ import annotations

from turnout.testing import ProviderConformance

from .acme import Acme, AcmeEmulator


class TestAcme(ProviderConformance):
    provider = Acme()
    emulator = AcmeEmulator()
