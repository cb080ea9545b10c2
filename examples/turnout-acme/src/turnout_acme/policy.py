"""A named retry policy for Acme's deployments: configuration says `retry_policy = "acme-patient"`."""

from __future__ import annotations

from turnout import ErrorKind, RetryPolicy

# --8<-- [start:policy]
# Batch jobs ride out Acme's quota windows: up to five retries of what a wait
# cures, never sooner than the gateway's retry_in_ms, none of a crash or a refusal.
ACME_PATIENT = RetryPolicy(
    max_retries=5,
    base=1.0,
    cap=30.0,
    retry_on=[ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT, ErrorKind.CONNECTION],
)
# --8<-- [end:policy]
