"""The MeshAPI provider: OpenAI-compatible chat on `{base_url}/v1/chat/completions`.

MeshAPI's error envelope is `{"error": {"code", "message", "request_id"?,
"retry_after_seconds"?, "provider_error"?, "details"?}}` (`error_code` is
accepted as an alias of `code`); the request id also comes in `X-Request-Id`
and the wait in `Retry-After`. Mid-stream errors are `data:` frames holding the
same envelope. The codes, their statuses and kinds are `MESHAPI_CODES`: the
documentation's table is generated from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from turnout import (
    CodeRule,
    ErrorFields,
    ErrorKind,
    ErrorTable,
    FieldError,
    HTTPResponse,
    OpenAICompatible,
    ProviderError,
    RetryPolicy,
)

__all__ = ["DEFAULT_BASE_URL", "MESHAPI_CODES", "MeshAPI", "extract_meshapi"]

DEFAULT_BASE_URL = "https://api.meshapi.ai"

# MeshAPI's documented codes (its SDKs' error tables), in the order they document them.
# `upstream_error`, `gateway_timeout` and `internal_error` arrive with status 500;
# `parse_error` and `stream_interrupted` have no status of their own (the SDK raises
# them when a body cannot be parsed or a stream's connection drops).
MESHAPI_CODES: Mapping[str, CodeRule] = {
    "unauthorized": CodeRule(ErrorKind.AUTHENTICATION, 401, description="Invalid or missing key"),
    "forbidden": CodeRule(ErrorKind.PERMISSION_DENIED, 403, description="Key suspended"),
    "not_found": CodeRule(ErrorKind.NOT_FOUND, 404, description="Resource not found"),
    "model_not_found": CodeRule(ErrorKind.MODEL_NOT_FOUND, 404, description="Model not found"),
    "spend_limit_exceeded": CodeRule(
        ErrorKind.INSUFFICIENT_CREDITS, 402, description="Account balance at zero or spend cap reached"
    ),
    "validation_error": CodeRule(ErrorKind.VALIDATION, 422, description="Bad request body"),
    "unprocessable_entity": CodeRule(ErrorKind.VALIDATION, 422, description="Bad request body"),
    "rate_limit_exceeded": CodeRule(ErrorKind.RATE_LIMITED, 429, description="RPM or RPD limit hit"),
    "upstream_error": CodeRule(ErrorKind.UPSTREAM_ERROR, 500, description="The model provider failed"),
    "gateway_timeout": CodeRule(ErrorKind.TIMEOUT, 500, description="The model provider timed out"),
    "internal_error": CodeRule(ErrorKind.SERVER_ERROR, 500, description="MeshAPI failed"),
    "parse_error": CodeRule(ErrorKind.PARSE_ERROR, None, description="A body that could not be parsed"),
    "stream_interrupted": CodeRule(
        ErrorKind.STREAM_INTERRUPTED, None, description="Mid-stream connection dropped"
    ),
}

# Field errors kept from one body, and the length of each of their texts.
_MAX_DETAILS = 50
_TEXT_LIMIT = 500


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str | None:
    """A scalar as text (numbers included); None for anything structured, booleans or null."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(value: Any) -> float | None:
    """`retry_after_seconds` as a finite, non-negative float, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _field_name(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ".".join(str(part) for part in value[:20] if _text(part) is not None)
    return _text(value, 200) or ""


def _first(item: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = item.get(name)
        if value is not None:
            return value
    return None


def _field_errors(value: Any) -> tuple[FieldError, ...]:
    """`details` as FieldErrors: a list of `{field|loc|param|path, code|type, message|msg}`
    objects or strings, or a mapping of field -> message(s)."""
    found: list[FieldError] = []
    if isinstance(value, Mapping):
        for key, messages in list(value.items())[:_MAX_DETAILS]:
            if isinstance(messages, list):
                text = "; ".join(t for t in (_text(m) for m in messages[:10]) if t is not None)
            else:
                text = _text(messages) or ""
            found.append(FieldError(_field_name(key), None, text))
    elif isinstance(value, list):
        for item in value[:_MAX_DETAILS]:
            if isinstance(item, Mapping):
                found.append(
                    FieldError(
                        _field_name(_first(item, "field", "loc", "param", "path")),
                        _text(_first(item, "code", "type"), 200),
                        _text(_first(item, "message", "msg")) or "",
                    )
                )
            elif (line := _text(item)) is not None:
                found.append(FieldError("", None, line))
    return tuple(found)


def extract_meshapi(payload: Any) -> ErrorFields:
    """Read MeshAPI's envelope out of any parsed JSON, however malformed.

    Also accepted: a flat envelope (`{"code", "message"}`), a string `error`, and
    FastAPI's own `{"detail": "..."}` / `{"detail": [...]}` bodies, which some of
    MeshAPI's endpoints answer with. Anything else yields empty fields, so the
    status decides.
    """
    if not isinstance(payload, Mapping):
        return ErrorFields()
    error = payload.get("error")
    envelope: Mapping[str, Any] = error if isinstance(error, Mapping) else payload
    code = _text(_first(envelope, "code", "error_code"), 200)
    if code is None and envelope is not payload:
        code = _text(_first(payload, "code", "error_code"), 200)
    detail = payload.get("detail")
    message = (
        _text(envelope.get("message"))
        or _text(error)
        or _text(detail)
        or (_text(payload.get("message")) if envelope is not payload else None)
    )
    request_id = _text(envelope.get("request_id"), 200) or _text(payload.get("request_id"), 200)
    retry_after = _seconds(envelope.get("retry_after_seconds"))
    if retry_after is None:
        retry_after = _seconds(payload.get("retry_after_seconds"))
    details = _field_errors(envelope.get("details"))
    if not details and isinstance(detail, list):
        details = _field_errors(detail)
    extra: dict[str, Any] = {}
    provider_error = envelope.get("provider_error")
    if provider_error is not None:
        extra["provider_error"] = provider_error
    return ErrorFields(
        code=code,
        message=message,
        request_id=request_id,
        retry_after=retry_after,
        details=details,
        extra=extra,
    )


class MeshAPI(OpenAICompatible):
    """MeshAPI (https://meshapi.ai): `POST {base_url}/v1/chat/completions` with `Bearer rsk_...`."""

    name = "meshapi"
    default_base_url = DEFAULT_BASE_URL
    chat_path = "/v1/chat/completions"
    error_table = ErrorTable(codes=MESHAPI_CODES)
    # The policy MeshAPI's SDKs ship: non-streaming requests only, on 429/502/503/504
    # (never a 500), 3 retries, 0.5 s doubling to at most 30 s, ±20 % jitter, and at
    # least the server's Retry-After.
    retry_policy = RetryPolicy(
        max_retries=3,
        base=0.5,
        cap=30.0,
        jitter="symmetric",
        jitter_ratio=0.2,
        retry_statuses=frozenset({429, 502, 503, 504}),
        retry_streams=False,
    )

    def extract_error(self, payload: Any) -> ErrorFields:
        return extract_meshapi(payload)

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """A frame is an error when it holds a non-null `error` (MeshAPI's SDKs read it so)."""
        if payload.get("error") is None:
            return None
        return self.normalize(status=None, headers=response.headers, body=payload)
