"""SaaS-LiteLLM's errors as data: its table, and the extractor of its envelopes.

The server answers with FastAPI envelopes, `{"detail": "text"}` or, for
request validation, `{"detail": [{"type", "loc", "msg", "input"?, "ctx"?}]}`.
It has no error codes of its own. Two of its habits shape what turnout does:

- it wraps every failure of a call in `500 {"detail": "LLM call failed: ..."}`,
  keeping the upstream's `Error code: NNN` (or httpx's `Client error '429 ...'`)
  in the text. By then the server has already tried the upstream nine times
  (three rounds of the provider SDK's three tries, about 7 s): the error is
  classified by the upstream status but marked not retryable, so it is never
  repeated on the same deployment (the router falls back, as its kind says);
- a stream that fails once it has started ends with an in-band
  `{"error": "text"}` frame (the server's own) or the upstream's own error
  object, passed on verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import evolve

from turnout import (
    CodeRule,
    ErrorFields,
    ErrorKind,
    ErrorTable,
    FieldError,
    MessageRule,
    RetryPolicy,
    extract_openai,
)

__all__ = [
    "LITELLM_ERRORS",
    "LITELLM_RETRY",
    "WRAPPED_FAILURE",
    "extract_litellm",
    "upstream_status",
]

# The server wraps upstream failures: `LLM call failed: 500: Failed to call
# provider API: OpenAI rate limit: Error code: 429 - {...}`, or httpx's own wording
# when it read the upstream itself: `Client error '429 Too Many Requests' for url ...`.
_UPSTREAM_PATTERNS = (
    re.compile(r"Error code:\s*(\d{3})\b"),
    re.compile(r"(?:Client|Server) error '(\d{3})\b"),
)
# How the server begins the detail of a call that failed after its own retries.
WRAPPED_FAILURE = "LLM call failed:"


def upstream_status(text: str) -> int | None:
    """The upstream HTTP status a wrapped error message reports, if any (the innermost)."""
    for pattern in _UPSTREAM_PATTERNS:
        found = pattern.findall(text[:8192])
        if found:
            status = int(found[-1])
            return status if 400 <= status <= 599 else None
    return None


_K = ErrorKind
LITELLM_ERRORS = ErrorTable(
    codes={
        # SaaS-LiteLLM has no error codes of its own; these are the upstream
        # providers' codes it forwards verbatim in `{"error": {...}}` stream frames.
        "rate_limit_exceeded": CodeRule(_K.RATE_LIMITED, description="OpenAI upstream, in a stream frame"),
        "rate_limit_error": CodeRule(_K.RATE_LIMITED, description="Anthropic upstream, in a stream frame"),
        "overloaded_error": CodeRule(_K.UNAVAILABLE, description="Anthropic upstream, in a stream frame"),
        "api_error": CodeRule(_K.SERVER_ERROR, description="Anthropic upstream, in a stream frame"),
        "context_length_exceeded": CodeRule(_K.CONTEXT_LENGTH_EXCEEDED, description="OpenAI upstream"),
        "RESOURCE_EXHAUSTED": CodeRule(_K.RATE_LIMITED, description="Gemini upstream, in a stream frame"),
        "UNAVAILABLE": CodeRule(_K.UNAVAILABLE, description="Gemini upstream, in a stream frame"),
    },
    message_rules=[
        # 403 means one of several things; the wording tells which.
        MessageRule(r"\bcredits?\b", _K.INSUFFICIENT_CREDITS, {403}),
        MessageRule(r"\b(?:suspended|paused)\b", _K.PERMISSION_DENIED, {403}),
        MessageRule(r"does not belong to", _K.PERMISSION_DENIED, {403}),
        MessageRule(r"does not have access|not found or inactive", _K.PERMISSION_DENIED, {403}),
        # Upstream wording kept in a wrapped 500 or a stream frame.
        MessageRule(r"context_length_exceeded|maximum context length", _K.CONTEXT_LENGTH_EXCEEDED),
        MessageRule(r"content_policy_violation|content management policy", _K.CONTENT_FILTERED),
    ],
    statuses={
        400: _K.BAD_REQUEST,
        401: _K.AUTHENTICATION,
        403: _K.PERMISSION_DENIED,
        404: _K.NOT_FOUND,
        422: _K.VALIDATION,
        429: _K.RATE_LIMITED,
        500: _K.SERVER_ERROR,
        503: _K.UNAVAILABLE,
    },
)

# 429, 500, 503, timeouts and connection errors; 1 s doubling to 32 s, ±25 %, 3 attempts.
# What it repeats in practice: the server's own plain 500s, a proxy's 429 or 503, and
# transport failures of requests that are safe to repeat. A wrapped upstream failure
# says retryable=False (the server retried it already), and create-and-call and
# llm-call are never repeated once they may have run (HTTPRequest.repeatable).
LITELLM_RETRY = RetryPolicy(
    max_retries=2,
    base=1.0,
    cap=32.0,
    multiplier=2.0,
    jitter="symmetric",
    jitter_ratio=0.25,
    retry_on=frozenset(
        {
            _K.RATE_LIMITED,
            _K.SERVER_ERROR,
            _K.UPSTREAM_ERROR,
            _K.UNAVAILABLE,
            _K.TIMEOUT,
            _K.CONNECTION,
        }
    ),
    retry_statuses=frozenset({429, 500, 503}),
)


def _field_errors(items: Sequence[Any]) -> tuple[FieldError, ...]:
    """pydantic v2 (`type: "missing"`) and v1 (`type: "value_error.missing"`) items alike."""
    found: list[FieldError] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        loc = item.get("loc")
        if isinstance(loc, list | tuple):
            path = ".".join(str(part) for part in loc if isinstance(part, str | int))
        else:
            path = str(loc) if isinstance(loc, str | int) else ""
        code = item.get("type")
        message = item.get("msg")
        found.append(
            FieldError(
                path[:200],
                code[:100] if isinstance(code, str) else None,
                message[:300] if isinstance(message, str) else "",
            )
        )
    return tuple(found)


def _from_text(text: str) -> ErrorFields:
    """A detail in words: a wrapped call failure is never to be repeated."""
    wrapped = text.startswith(WRAPPED_FAILURE)
    return ErrorFields(
        message=text, upstream_status=upstream_status(text), retryable=False if wrapped else None
    )


def _from_detail(detail: Any) -> ErrorFields:
    if isinstance(detail, str):
        return _from_text(detail)
    if isinstance(detail, list):
        details = _field_errors(detail)
        if not details:
            return ErrorFields()
        shown = "; ".join(f"{d.field}: {d.message}" if d.field else d.message for d in details[:5])
        more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
        return ErrorFields(
            message=f"request validation failed: {shown}{more}",
            details=details,
            kind=ErrorKind.VALIDATION,
        )
    if isinstance(detail, Mapping):
        # Some deployments raise HTTPException(detail={...}).
        message = next(
            (detail[k] for k in ("message", "msg", "error", "detail") if isinstance(detail.get(k), str)), None
        )
        code = next((detail[k] for k in ("code", "type") if isinstance(detail.get(k), str)), None)
        return ErrorFields(
            code=code, message=message, upstream_status=upstream_status(message) if message else None
        )
    if isinstance(detail, int | float) and not isinstance(detail, bool):
        return ErrorFields(message=str(detail))
    return ErrorFields()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _from_error(payload: Mapping[str, Any]) -> ErrorFields:
    error = payload.get("error")
    if isinstance(error, str):
        return ErrorFields(message=error, upstream_status=upstream_status(error))
    if not isinstance(error, Mapping):
        return ErrorFields()
    fields = extract_openai(payload)
    raw_code = error.get("code")
    status: int | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        # Gemini: {"code": 429, "message", "status": "RESOURCE_EXHAUSTED"}.
        status = raw_code if 400 <= raw_code <= 599 else None
        code = _str(error.get("status")) or _str(error.get("type"))
        fields = evolve(fields, code=code)
    if status is None and fields.message:
        status = upstream_status(fields.message)
    return evolve(fields, upstream_status=status)


def extract_litellm(payload: Any) -> ErrorFields:
    """The FastAPI `detail` envelope, and the `{"error": ...}` frames of its streams."""
    if not isinstance(payload, Mapping):
        return ErrorFields()
    if "detail" in payload:
        return _from_detail(payload["detail"])
    if "error" in payload:
        return _from_error(payload)
    return extract_openai(payload)
