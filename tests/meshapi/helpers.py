"""Shared pieces of the meshapi tests: MeshAPI's documented table, typed here from
DESIGN.md § meshapi (not read from the plugin), a key and a model."""

from __future__ import annotations

from collections.abc import Mapping

# code: (documented status, kind). parse_error and stream_interrupted have no status.
DOCUMENTED: Mapping[str, tuple[int | None, str]] = {
    "unauthorized": (401, "authentication"),
    "forbidden": (403, "permission_denied"),
    "not_found": (404, "not_found"),
    "model_not_found": (404, "model_not_found"),
    "spend_limit_exceeded": (402, "insufficient_credits"),
    "validation_error": (422, "validation"),
    "unprocessable_entity": (422, "validation"),
    "rate_limit_exceeded": (429, "rate_limited"),
    "upstream_error": (500, "upstream_error"),
    "gateway_timeout": (500, "timeout"),
    "internal_error": (500, "server_error"),
    "parse_error": (None, "parse_error"),
    "stream_interrupted": (None, "stream_interrupted"),
}

KEY = "rsk_01JTESTSECRETKEYVALUE0000000"
MODEL = "openai/gpt-4o-mini"
