"""Mume passes the conformance kit (turnout.testing.ProviderConformance): hostile
responses, Retry-After, error envelopes and frames, broken streams, key hygiene and
the chat surface, over its emulator on loopback."""

from __future__ import annotations

from turnout.testing import ProviderConformance
from turnout_mume.emulator import MumeEmulator
from turnout_mume.provider import Mume


class TestMume(ProviderConformance):
    provider = Mume()
    emulator = MumeEmulator()
