"""Verify and parse ModelRoute's webhook callbacks.

ModelRoute signs each callback: `X-Signature` is the hex HMAC-SHA256, keyed by
your webhook secret, of `"{X-Signature-Timestamp}.{raw body}"`, and
`X-Signature-Timestamp` is the unix time it was sent. Verify with the raw
bytes you received (not a re-serialized JSON object):

    from turnout_modelroute.webhooks import WebhookVerifier, WebhookSignatureError

    verifier = WebhookVerifier(secret)
    try:
        event = verifier.construct_event(request.body, request.headers)
    except WebhookSignatureError:
        return 400
    if event.error is not None:
        ...  # a turnout.ProviderError, normalized as the router would raise it

Signatures are compared in constant time, and a timestamp more than
`tolerance` seconds (default 300) away from the clock is refused, so a
captured callback cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import field, frozen

from turnout import ProviderError, TurnoutError

from .provider import ModelRoute, cancelled_error, expired_error

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ExecutionEvent",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "WebhookTimestampError",
    "WebhookVerifier",
    "construct_event",
    "parse_event",
    "sign",
    "verify",
]

_PROVIDER = ModelRoute()

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
DEFAULT_TOLERANCE = 300.0

Secret = str | bytes


class WebhookError(TurnoutError):
    """A callback that must not be trusted or cannot be read."""


class WebhookSignatureError(WebhookError):
    """The signature is missing, malformed or does not match the body and timestamp."""


class WebhookTimestampError(WebhookSignatureError):
    """The timestamp is missing, malformed, or outside the tolerance (a replay)."""


class WebhookPayloadError(WebhookError):
    """The callback is authentic but its body is not an execution event."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(body: str | bytes, secret: Secret, timestamp: int | str) -> str:
    """The `X-Signature` ModelRoute sends for `body` at `timestamp`."""
    message = f"{timestamp}.".encode() + _bytes(body)
    return hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lower = name.lower()
    for key, value in items:
        if str(key).lower() == lower:
            return str(value)
    return None


def _secrets(secret: Secret | Iterable[Secret]) -> list[bytes]:
    found = [_bytes(secret)] if isinstance(secret, str | bytes) else [_bytes(s) for s in secret]
    if not found or not all(found):
        raise ValueError("a webhook secret is required")
    return found


def verify(
    body: str | bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    secret: Secret | Iterable[Secret],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Callable[[], float] = time.time,
) -> None:
    """Raise `WebhookSignatureError` (or its `WebhookTimestampError`) unless the
    callback is authentic and fresh. `secret` may be a list (during a rotation:
    any one matching is enough)."""
    keys = _secrets(secret)
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if signature is None or not signature.strip():
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
    if stamp is None or not stamp.strip():
        raise WebhookTimestampError(f"the {TIMESTAMP_HEADER} header is missing")
    stamp = stamp.strip()
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookTimestampError(f"the {TIMESTAMP_HEADER} header is not unix seconds") from None
    given = signature.strip().lower().encode("utf-8", errors="replace")
    matched = False
    for key in keys:
        # Constant time, and every secret is tried: timing says nothing about which failed.
        matched |= hmac.compare_digest(given, sign(body, key, stamp).encode())
    if not matched:
        raise WebhookSignatureError("the signature does not match the body and timestamp")
    age = clock() - sent_at
    if abs(age) > tolerance:
        raise WebhookTimestampError(
            f"the callback's timestamp is {abs(age):.0f}s in the {'past' if age > 0 else 'future'}, "
            f"outside the tolerance of {tolerance:g}s"
        )


@frozen
class ExecutionEvent:
    """One callback about one execution.

    `status` is the execution's (`COMPLETED`, `FAILED`, ...); `output_text` its
    answer when it completed; `error` the normalized `turnout.ProviderError` it
    failed with (kind, code, retryable, details, as the router would raise it),
    or for `EXPIRED` / `CANCELLED` the error the router gives those.
    """

    type: str
    execution_id: str
    status: str | None
    output_text: str | None = None
    error: ProviderError | None = field(default=None, eq=False)
    created_at: datetime | None = None
    id: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, eq=False, repr=False)


def _when(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_event(body: str | bytes | Mapping[str, Any]) -> ExecutionEvent:
    """Parse a callback body (verify it first): `{"id", "type", "created_at",
    "data": {"id", "status", "output": {"text"}, "error": {...}}}`. The execution
    may also sit at the top level, with `execution_id` for its id."""
    if isinstance(body, Mapping):
        payload: Any = body
    else:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookPayloadError("the callback body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise WebhookPayloadError("the callback body is not a JSON object")
    data = payload.get("data")
    if isinstance(data, Mapping):
        execution: Mapping[str, Any] = data
        if isinstance(data.get("execution"), Mapping):
            execution = data["execution"]
        execution_id = _str(execution.get("execution_id")) or _str(execution.get("id"))
        event_id = _str(payload.get("id"))
    else:
        execution = payload
        execution_id = _str(payload.get("execution_id")) or _str(payload.get("id"))
        event_id = _str(payload.get("event_id"))
    if execution_id is None:
        raise WebhookPayloadError("the callback names no execution")
    status = _str(execution.get("status"))
    event_type = _str(payload.get("type")) or (f"execution.{status.lower()}" if status else None)
    if event_type is None:
        raise WebhookPayloadError("the callback has no type")
    output = execution.get("output")
    text = output.get("text") if isinstance(output, Mapping) else None
    return ExecutionEvent(
        type=event_type,
        execution_id=execution_id,
        status=status,
        output_text=text if isinstance(text, str) else None,
        error=_event_error(status, execution, execution_id),
        created_at=_when(payload.get("created_at", execution.get("created_at"))),
        id=event_id,
        raw=payload,
    )


def _event_error(status: str | None, execution: Mapping[str, Any], execution_id: str) -> ProviderError | None:
    if status == "FAILED" or (status is None and execution.get("error") is not None):
        return _PROVIDER.execution_error(execution.get("error"), execution_id)
    if status == "EXPIRED":
        return expired_error(execution_id)
    if status == "CANCELLED":
        return cancelled_error(execution_id)
    return None


def construct_event(
    body: str | bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    secret: Secret | Iterable[Secret],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Callable[[], float] = time.time,
) -> ExecutionEvent:
    """`verify`, then `parse_event`: the one call a webhook handler needs."""
    verify(body, headers, secret, tolerance=tolerance, clock=clock)
    return parse_event(body)


class WebhookVerifier:
    """A secret (or several, during a rotation), a tolerance and a clock, bound once."""

    def __init__(
        self,
        secret: Secret | Iterable[Secret],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = _secrets(secret)
        self.tolerance = tolerance
        self.clock = clock

    def verify(self, body: str | bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        verify(body, headers, self._secrets, tolerance=self.tolerance, clock=self.clock)

    def construct_event(
        self, body: str | bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> ExecutionEvent:
        self.verify(body, headers)
        return parse_event(body)

    def __repr__(self) -> str:
        return f"WebhookVerifier(secrets=<{len(self._secrets)} hidden>, tolerance={self.tolerance:g})"
