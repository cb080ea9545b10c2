"""Acme's gateway: OpenAI-compatible requests, answers and streams; its own errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turnout import OpenAICompatible, ProviderError, RetryPolicy

from .normalizer import ERRORS, NORMALIZER


# --8<-- [start:provider]
class Acme(OpenAICompatible):
    name = "acme"  # what Deployment.provider names
    default_base_url = "https://llm.acme.internal/v1"
    error_table = ERRORS
    request_id_headers = ("x-acme-request",)
    # Its default; the named policy "acme-patient" (policy.py) is one configuration away.
    retry_policy = RetryPolicy(max_retries=2, base=0.5, cap=8.0)

    def normalize(
        self, *, status: int | None, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> ProviderError:
        """Every error Acme sends: HTTP errors, stream error frames, 200s with its envelope."""
        return NORMALIZER.normalize(status=status, headers=headers, body=body)

    def is_error_envelope(self, payload: Mapping[str, Any]) -> bool:
        """Acme sometimes answers 200 with its error envelope, and ends streams with it."""
        return payload.get("status") == "error"


# --8<-- [end:provider]
