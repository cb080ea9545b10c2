"""SaaS-LiteLLM passes the conformance kit (turnout.testing.ProviderConformance): hostile
responses, Retry-After, error envelopes and frames, broken streams, key hygiene and
the chat surface, over its emulator on loopback."""

from __future__ import annotations

from turnout.testing import ProviderConformance
from turnout_litellm.emulator import LiteLLMEmulator
from turnout_litellm.provider import LiteLLM


class TestLiteLLM(ProviderConformance):
    provider = LiteLLM()
    emulator = LiteLLMEmulator()
