"""Every failure as OpenAI's error envelope, so any OpenAI SDK raises its own error class.

`{"error": {"message", "type", "code", "param"}}`: `code` is turnout's kind
(`rate_limited`, `unavailable`, ...) and the status is the kind's usual one
(the table below, data the tests and docs read). `Retry-After` (and
`retry-after-ms`, which the OpenAI SDKs read first) is sent when the wait is
known. `x-should-retry: false` on every answer the router gave: it has spent
its retries, fallbacks and deadline on the call, and an SDK retrying on top
would multiply them. Only a server that is shutting down says `true` (another
worker or instance behind the load balancer can take the call).

Upstream keys never leave the server: the router masks a deployment's key in
its errors already, and `Scrubber` masks every configured key in anything
this module sends, in case a gateway echoed another one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen

from turnout._errors import ErrorKind, NoHealthyDeploymentError, ProviderError, redact

__all__ = [
    "KIND_REPLIES",
    "Reply",
    "Scrubber",
    "bad_request",
    "envelope",
    "error_reply",
    "from_router",
]


@frozen
class KindReply:
    """How one kind is answered: the HTTP status and OpenAI's `type`."""

    status: int
    type: str


_INVALID = "invalid_request_error"
KIND_REPLIES: Mapping[str, KindReply] = {
    ErrorKind.AUTHENTICATION: KindReply(401, "authentication_error"),
    ErrorKind.PERMISSION_DENIED: KindReply(403, "permission_error"),
    ErrorKind.INSUFFICIENT_CREDITS: KindReply(402, "insufficient_quota"),
    ErrorKind.NOT_FOUND: KindReply(404, "not_found_error"),
    ErrorKind.MODEL_NOT_FOUND: KindReply(404, _INVALID),
    ErrorKind.BAD_REQUEST: KindReply(400, _INVALID),
    ErrorKind.VALIDATION: KindReply(422, _INVALID),
    ErrorKind.CONTENT_FILTERED: KindReply(400, _INVALID),
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: KindReply(400, _INVALID),
    ErrorKind.RATE_LIMITED: KindReply(429, "rate_limit_error"),
    ErrorKind.TIMEOUT: KindReply(504, "timeout_error"),
    ErrorKind.CONNECTION: KindReply(502, "api_error"),
    ErrorKind.SERVER_ERROR: KindReply(500, "server_error"),
    ErrorKind.UPSTREAM_ERROR: KindReply(502, "server_error"),
    ErrorKind.UNAVAILABLE: KindReply(503, "server_error"),
    ErrorKind.STREAM_INTERRUPTED: KindReply(502, "server_error"),
    ErrorKind.PARSE_ERROR: KindReply(502, "server_error"),
    # Not kinds of ProviderError, but answered the same way.
    "no_healthy_deployment": KindReply(503, "server_error"),
    "shutting_down": KindReply(503, "server_error"),
    "request_too_large": KindReply(413, _INVALID),
    "internal_error": KindReply(500, "server_error"),
}


@frozen
class Reply:
    """An error answer, ready to send: status, JSON body and headers (lower-case)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    # The code it carries (metrics count errors by it).
    code: str

    def frame(self) -> bytes:
        """The same error as one SSE event (a stream that fails after its first chunk)."""
        return b"data: " + self.body + b"\n\n"


class Scrubber:
    """Masks every upstream key in text about to leave the server."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = redact(text, secret)
        return text


def envelope(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": KIND_REPLIES[kind].type, "code": kind, "param": param}}


def error_reply(
    message: str,
    kind: str,
    *,
    request_id: str,
    param: str | None = None,
    retry_after: float | None = None,
    should_retry: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Reply:
    body = envelope(message, kind, param)
    if extra:
        body["error"]["turnout"] = dict(extra)
    headers = [
        ("x-request-id", request_id),
        ("x-should-retry", "true" if should_retry else "false"),
    ]
    if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
        headers.append(("retry-after", str(math.ceil(retry_after))))
        headers.append(("retry-after-ms", str(math.ceil(retry_after * 1000))))
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Reply(KIND_REPLIES[kind].status, data, tuple(headers), kind)


def bad_request(message: str, *, request_id: str, param: str | None = None) -> Reply:
    """The caller's mistake (malformed JSON, no messages, an unknown parameter form)."""
    return error_reply(message, ErrorKind.BAD_REQUEST, request_id=request_id, param=param)


def _attempts(error: ProviderError | NoHealthyDeploymentError) -> list[dict[str, Any]]:
    return [
        {
            "deployment": a.deployment,
            "kind": None if a.error is None else a.error.kind.value,
            "decision": a.decision,
            "reason": a.reason,
        }
        for a in error.attempts
    ]


def from_router(error: Exception, *, request_id: str, scrub: Scrubber) -> Reply:
    """What a call through the router raised, as the envelope. The router has spent its
    retries on it: `x-should-retry: false`."""
    if isinstance(error, ProviderError):
        extra: dict[str, Any] = {"attempts": _attempts(error)}
        if error.deployment:
            extra["deployment"] = error.deployment
        if error.code is not None:
            extra["provider_code"] = scrub(str(error.code))
        if error.request_id:
            extra["upstream_request_id"] = scrub(error.request_id)
        # `str(error)` names the provider and deployment, the gateway's status and code, the
        # wait and the request id: a 401 from a gateway must not read as the caller's key.
        return error_reply(
            scrub(str(error)),
            error.kind,
            request_id=request_id,
            retry_after=error.retry_after,
            extra=extra,
        )
    if isinstance(error, NoHealthyDeploymentError):
        return error_reply(
            scrub(str(error)),
            "no_healthy_deployment",
            request_id=request_id,
            retry_after=error.retry_after,
            extra={"attempts": _attempts(error), "reasons": dict(error.reasons)},
        )
    raise TypeError(f"not an error of the router: {type(error).__name__}")
