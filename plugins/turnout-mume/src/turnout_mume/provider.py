"""The Mume gateway: OpenAI-compatible chat completions, errors in the OpenAI envelope.

Mume (https://mume.ai/docs) documents statuses, not codes: 400 bad request,
401 unauthorized, 402 insufficient credits, 429 rate limit, 500 server error,
503 service unavailable (the provider behind Mume is temporarily unavailable).
Bodies use the OpenAI envelope `{"error": {"message", "type", "code",
"param"}}`, and the OpenAI conventions for `code` are honoured (Mume passes
upstream OpenAI-style errors on). Mid-stream errors arrive as SSE chunks
carrying an `error` object and a top-level `reqId`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import evolve

from turnout import (
    CodeRule,
    ErrorFields,
    ErrorKind,
    ErrorTable,
    HTTPResponse,
    MessageRule,
    OpenAICompatible,
    ProviderError,
    RetryPolicy,
)

__all__ = ["MUME_CODES", "MUME_ERRORS", "MUME_MESSAGE_RULES", "MUME_RETRY_POLICY", "Mume"]

K = ErrorKind

# The codes Mume's bodies and stream frames carry, OpenAI's conventions. The
# statuses alone (400, 401, 402, 403, 404, 429, 500, 503) need no row: the
# status class already gives Mume's documented kind for each.
MUME_CODES: Mapping[str, CodeRule] = {
    "invalid_api_key": CodeRule(K.AUTHENTICATION, 401, description="missing or invalid API key"),
    "insufficient_quota": CodeRule(
        K.INSUFFICIENT_CREDITS,
        429,
        description="OpenAI's 'exceeded your current quota', sent with 429: waiting cannot help",
    ),
    "model_not_found": CodeRule(K.MODEL_NOT_FOUND, 404, description="no such model (or no access to it)"),
    "rate_limit_exceeded": CodeRule(K.RATE_LIMITED, 429, description="too many requests"),
    "context_length_exceeded": CodeRule(
        K.CONTEXT_LENGTH_EXCEEDED, 400, description="the prompt is longer than the model's context"
    ),
    "content_filter": CodeRule(K.CONTENT_FILTERED, 400, description="blocked by a content filter"),
    "content_policy_violation": CodeRule(
        K.CONTENT_FILTERED, 400, description="rejected by the provider's content policy"
    ),
}

# When the body names no code (or one not in the table), its wording decides
# before the status does.
MUME_MESSAGE_RULES = (
    # "not_found, model_not_found when the message says the model".
    MessageRule(r"\bmodels?\b", K.MODEL_NOT_FOUND, {404}),
    # A 403 about money is the account, not the key's permissions.
    MessageRule(r"credit|balance|billing|payment", K.INSUFFICIENT_CREDITS, {403}),
    # OpenAI's quota message (insufficient_quota) when its code was lost on the way.
    MessageRule(r"exceeded your current quota|check your plan and billing", K.INSUFFICIENT_CREDITS, {429}),
    MessageRule(
        r"maximum context length|context length|context window|too many tokens|prompt is too long",
        K.CONTEXT_LENGTH_EXCEEDED,
        {400, 413},
    ),
    MessageRule(r"content (management )?polic|content filter|safety system", K.CONTENT_FILTERED, {400}),
)

MUME_ERRORS = ErrorTable(codes=MUME_CODES, message_rules=MUME_MESSAGE_RULES)

# The OpenAI SDK's policy, which Mume's docs use: 2 retries on 408, 409, 429,
# 5xx, timeouts and connection errors; 0.5 s doubling to at most 8 s, full
# jitter, never less than Retry-After. 409 normalizes to bad_request, which is
# not retryable: it is deliberately not repeated (see docs/providers/mume.md).
MUME_RETRY_POLICY = RetryPolicy(
    max_retries=2,
    base=0.5,
    cap=8.0,
    multiplier=2.0,
    jitter="full",
    retry_on=frozenset(
        {K.TIMEOUT, K.RATE_LIMITED, K.SERVER_ERROR, K.UPSTREAM_ERROR, K.UNAVAILABLE, K.CONNECTION}
    ),
)

_ID_LIMIT = 200


def _http_status(code: str | None) -> int | None:
    """A code that is an HTTP error status (`"503"`, or the number 503), as Mume's
    frames sometimes carry: the status the body reports for the real failure."""
    if code is None or not code.isascii() or not code.isdigit() or len(code) != 3:
        return None
    status = int(code)
    return status if 400 <= status <= 599 else None


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)[:_ID_LIMIT]


class Mume(OpenAICompatible):
    """`POST {base_url}/chat/completions` on Mume, models named `provider/model`."""

    name = "mume"
    default_base_url = "https://mume.ai/api/v1"
    chat_path = "/chat/completions"
    error_table = MUME_ERRORS
    retry_policy = MUME_RETRY_POLICY
    request_id_headers = ("x-request-id",)

    def extract_error(self, payload: Any) -> ErrorFields:
        """The OpenAI envelope, plus Mume's `reqId` and numeric status codes."""
        fields = super().extract_error(payload)
        if not isinstance(payload, Mapping):
            return fields
        request_id = fields.request_id
        if request_id is None:
            inner = payload.get("error")
            request_id = _identifier(payload.get("reqId"))
            if request_id is None and isinstance(inner, Mapping):
                request_id = _identifier(inner.get("reqId"))
        upstream = fields.upstream_status or _http_status(fields.code)
        if request_id == fields.request_id and upstream == fields.upstream_status:
            return fields
        return evolve(fields, request_id=request_id, upstream_status=upstream)

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """A chunk carrying a non-empty `error` (`{"error": {"message", "code"?}, "reqId"}`).

        The error's `request_id` is the frame's `reqId` (not the stream's header),
        and its `status` the one the table gives the frame's code, or the code
        itself when it is an HTTP status, or None. A frame without a
        recognisable code is upstream_error.
        """
        if not payload.get("error"):  # absent, null or empty: an ordinary chunk
            return None
        try:
            fields = self.extract_error(payload)
        except Exception:  # the normalizer below falls back the same way
            fields = ErrorFields()
        rule = self.error_table.rule(fields.code)
        status = rule.status if rule is not None else fields.upstream_status
        return self.normalize(status=status, headers=response.headers, body=payload)
