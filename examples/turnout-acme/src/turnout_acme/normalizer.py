"""Acme's errors: `{"status": "error", "reason": "QUOTA", "retry_in_ms": 1500}`.

The reasons are data (an `ErrorTable` of `CodeRule`s), the envelope is read by
an extractor, and the two together are an `ErrorNormalizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turnout import CodeRule, ErrorFields, ErrorKind, ErrorTable, TableNormalizer

# --8<-- [start:reasons]
# Each reason Acme documents: its kind, and the status Acme sends it with (the
# status an error frame or a 200 carrying this reason is given; emulators use it).
REASONS = {
    "AUTH": CodeRule(ErrorKind.AUTHENTICATION, 401, description="unknown or revoked key"),
    "FORBIDDEN": CodeRule(ErrorKind.PERMISSION_DENIED, 403, description="the team may not use the model"),
    "BUDGET": CodeRule(ErrorKind.INSUFFICIENT_CREDITS, 402, description="the team's budget is spent"),
    "NO_MODEL": CodeRule(ErrorKind.MODEL_NOT_FOUND, 404, description="no such model"),
    "INVALID": CodeRule(ErrorKind.BAD_REQUEST, 400, description="the request is malformed"),
    "TOO_LONG": CodeRule(ErrorKind.CONTEXT_LENGTH_EXCEEDED, 400, description="over the context window"),
    "BLOCKED": CodeRule(ErrorKind.CONTENT_FILTERED, 400, description="moderation refused it"),
    "QUOTA": CodeRule(ErrorKind.RATE_LIMITED, 429, description="over the team's rate; see retry_in_ms"),
    "OVERLOADED": CodeRule(ErrorKind.UNAVAILABLE, 503, description="no capacity right now"),
    "UPSTREAM": CodeRule(ErrorKind.UPSTREAM_ERROR, 502, description="the model's provider failed"),
    "TIMEOUT": CodeRule(ErrorKind.TIMEOUT, 504, description="the model took too long"),
    # A crash of the gateway itself: Acme's runbook says it is not worth repeating.
    "INTERNAL": CodeRule(ErrorKind.SERVER_ERROR, 500, retryable=False, description="the gateway crashed"),
}
ERRORS = ErrorTable(codes=REASONS, case_sensitive=True)
# --8<-- [end:reasons]


# --8<-- [start:extract]
def extract_acme(payload: Any) -> ErrorFields:
    """The fields of Acme's envelope. `payload` is whatever JSON the body held: a
    dict, a list, a string, a number. Nothing here may assume its shape."""
    if not isinstance(payload, Mapping) or payload.get("status") != "error":
        return ErrorFields()
    reason, message = payload.get("reason"), payload.get("message")
    wait = payload.get("retry_in_ms")
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        wait = None
    request_id = payload.get("request_id")
    return ErrorFields(
        code=reason if isinstance(reason, str) else None,
        message=message if isinstance(message, str) else None,
        retry_after=wait / 1000 if wait is not None else None,  # ErrorFields.retry_after: seconds
        request_id=request_id if isinstance(request_id, str) else None,
    )


# The ErrorNormalizer of Acme's gateway: `normalize(*, status, headers, body)`.
NORMALIZER = TableNormalizer("acme", ERRORS, extract_acme, request_id_headers=("x-acme-request",))
# --8<-- [end:extract]
