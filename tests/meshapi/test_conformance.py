"""MeshAPI passes the conformance kit (turnout.testing.ProviderConformance): hostile
responses, Retry-After, error envelopes and frames, broken streams, key hygiene and
the chat surface, over its emulator on loopback."""

from __future__ import annotations

from turnout.testing import ProviderConformance
from turnout_meshapi.emulator import MeshAPIEmulator
from turnout_meshapi.provider import MeshAPI


class TestMeshAPI(ProviderConformance):
    provider = MeshAPI()
    emulator = MeshAPIEmulator()
