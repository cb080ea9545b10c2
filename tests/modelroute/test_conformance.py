"""ModelRoute passes the conformance kit (turnout.testing.ProviderConformance): hostile
responses, Retry-After, error envelopes and frames, broken streams, key hygiene and
the chat surface, over its emulator on loopback."""

from __future__ import annotations

from turnout.testing import ProviderConformance
from turnout_modelroute.emulator import ModelRouteEmulator
from turnout_modelroute.provider import ModelRoute


class TestModelRoute(ProviderConformance):
    provider = ModelRoute()
    emulator = ModelRouteEmulator()
