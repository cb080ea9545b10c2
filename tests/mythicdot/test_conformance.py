"""MythicDot passes the conformance kit (turnout.testing.ProviderConformance): hostile
responses, Retry-After, error envelopes and frames, broken streams, key hygiene and
the chat surface, over its emulator on loopback."""

from __future__ import annotations

from turnout.testing import ProviderConformance
from turnout_mythicdot.emulator import MythicDotEmulator
from turnout_mythicdot.provider import MythicDot


class TestMythicDot(ProviderConformance):
    provider = MythicDot()
    emulator = MythicDotEmulator()
