"""Error normalization as data: a plugin declares a table, this module does the rest.

The pipeline, for any (status, headers, body) or stream error frame:

1. the body is decoded defensively (never trusted to be JSON, UTF-8, small or
   well-formed) and the provider's *extractor* pulls an `ErrorFields` out of it;
2. the kind comes from, in order: the extractor's explicit kind, the provider's
   code table, its message rules, an upstream status found in the body, its
   status overrides, and finally the status class (`STATUS_KINDS`);
3. `retryable` is the body's own flag, else the code's, else the kind's;
   `retry_after` the largest of the body's and the headers' hints.
"""

from __future__ import annotations

import http
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen

from ._errors import ErrorKind, FieldError, ProviderError, error_for
from ._hints import bounded, parse_retry_after

__all__ = [
    "MESSAGE_LIMIT",
    "PARSE_LIMIT",
    "STATUS_KINDS",
    "CodeRule",
    "ErrorFields",
    "ErrorNormalizer",
    "ErrorTable",
    "Extractor",
    "MessageRule",
    "TableNormalizer",
    "decode_body",
    "extract_openai",
    "kind_for_status",
    "normalize",
    "request_id_from",
    "truncate",
]

# Bodies longer than this are not parsed as JSON: no envelope is that large.
PARSE_LIMIT = 1024 * 1024
# Messages are cut here so an error never carries a page of HTML.
MESSAGE_LIMIT = 500

STATUS_KINDS: Mapping[int, ErrorKind] = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.INSUFFICIENT_CREDITS,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    422: ErrorKind.VALIDATION,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.SERVER_ERROR,
    502: ErrorKind.UPSTREAM_ERROR,
    503: ErrorKind.UNAVAILABLE,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.UNAVAILABLE,
}


# Kinds a body's coarse category may give over its status: each says something no
# status says (a 429 for quota, a 400 for a context window, a 404 for a model).
REFINING_KINDS = frozenset(
    {
        ErrorKind.INSUFFICIENT_CREDITS,
        ErrorKind.CONTEXT_LENGTH_EXCEEDED,
        ErrorKind.CONTENT_FILTERED,
        ErrorKind.MODEL_NOT_FOUND,
        ErrorKind.VALIDATION,
    }
)


def kind_for_status(status: int | None) -> ErrorKind:
    """The kind a status alone implies, when the body says nothing usable."""
    if status is None:
        return ErrorKind.UPSTREAM_ERROR
    kind = STATUS_KINDS.get(status)
    if kind is not None:
        return kind
    if 400 <= status < 500:
        return ErrorKind.BAD_REQUEST
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    # 1xx/2xx/3xx reaching a normalizer: the gateway (or a proxy) answered
    # something that is not a result. Redirects are never followed with a key.
    return ErrorKind.UPSTREAM_ERROR


@frozen
class CodeRule:
    """One row of a provider's documented error table."""

    kind: ErrorKind
    # The status the gateway documents for this code (docs and emulators use it).
    status: int | None = None
    # The gateway's documented retryability when it differs from the kind's default.
    retryable: bool | None = None
    description: str = ""


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.IGNORECASE)


def _statuses(value: Iterable[int] | None) -> frozenset[int] | None:
    return None if value is None else frozenset(value)


@frozen
class MessageRule:
    """Classify by wording when the gateway gives no code (e.g. 403 "credits")."""

    pattern: re.Pattern[str] = field(converter=_compile)
    kind: ErrorKind
    statuses: frozenset[int] | None = field(default=None, converter=_statuses)

    def matches(self, status: int | None, message: str) -> bool:
        if self.statuses is not None and status not in self.statuses:
            return False
        return self.pattern.search(message) is not None


@frozen
class ErrorFields:
    """What an extractor found in an error body; every field optional."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    details: tuple[FieldError, ...] = ()
    # An extractor that knows better than the tables (rare) sets the kind itself.
    kind: ErrorKind | None = None
    # A status the body reports for the real failure upstream (SaaS-LiteLLM wraps them).
    upstream_status: int | None = None
    extra: Mapping[str, Any] = field(factory=dict)
    # A coarse class the body gives (the OpenAI envelope's `type`): it refines the
    # status's kind only where it says more (see `ErrorTable.kind_for`).
    category: str | None = None


Extractor = Callable[[Any], ErrorFields]


@runtime_checkable
class ErrorNormalizer(Protocol):
    """What turns one failed response into a `ProviderError`: every `Provider` is one,
    and a plugin may put another in front of an installed provider
    (`turnout_register_normalizers`).

    `status` is the HTTP status, or None for an error reported in-band (a stream's
    error frame, a 2xx body that is an error envelope, a failed job); `headers`
    have lower-case names; `body` is bytes, str or already-parsed JSON, and never
    to be trusted (HTML, empty, not UTF-8, truncated, huge). It returns the error,
    an instance of the class for its kind (`turnout.error_for`), and never raises.
    """

    def normalize(
        self,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> ProviderError: ...


@frozen
class ErrorTable:
    """A provider's error documentation as data: codes, wording and status overrides."""

    codes: Mapping[str, CodeRule] = field(factory=dict)
    message_rules: Sequence[MessageRule] = ()
    statuses: Mapping[int, ErrorKind] = field(factory=dict)
    # Codes are compared case-insensitively unless the gateway documents otherwise.
    case_sensitive: bool = False
    _folded: Mapping[str, CodeRule] = field(init=False, repr=False, eq=False)

    @_folded.default
    def _fold_codes(self) -> Mapping[str, CodeRule]:
        return {k.lower(): v for k, v in self.codes.items()}

    def rule(self, code: str | None) -> CodeRule | None:
        if code is None:
            return None
        rule = self.codes.get(code)
        if rule is None and not self.case_sensitive:
            rule = self._folded.get(code.lower())
        return rule

    def kind_for(self, status: int | None, fields: ErrorFields) -> tuple[ErrorKind, CodeRule | None]:
        if fields.kind is not None:
            return fields.kind, None
        rule = self.rule(fields.code)
        if rule is not None:
            return rule.kind, rule
        message = fields.message or ""
        for message_rule in self.message_rules:
            if message_rule.matches(status, message):
                return message_rule.kind, None
        # A category (`type`) names a kind only where it says more than the status
        # (`insufficient_quota` on a 429), or where there is no status (an in-band
        # error): `server_error` on a 503 is still unavailable.
        category = self.rule(fields.category)
        if category is not None and (status is None or category.kind in REFINING_KINDS):
            return category.kind, category
        # A status the body reports for the real failure upstream counts only when the
        # gateway itself reports a server error (or an in-band one): a 4xx is the caller's.
        effective = status
        if fields.upstream_status is not None and (status is None or status >= 500):
            effective = fields.upstream_status
        if effective is not None and effective in self.statuses:
            return self.statuses[effective], None
        return kind_for_status(effective), None


def decode_body(body: bytes | str | Mapping[str, Any] | Sequence[Any] | None) -> tuple[Any, str]:
    """(parsed JSON or None, text) for any body, however hostile."""
    if body is None:
        return None, ""
    if isinstance(body, Mapping | list | tuple):
        return body, ""
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        text = raw[:PARSE_LIMIT].decode("utf-8", errors="replace")
        if len(raw) > PARSE_LIMIT:
            return None, text
    else:
        text = str(body)
        if len(text) > PARSE_LIMIT:
            return None, text[:PARSE_LIMIT]
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped), text
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the C stack
            pass
    return None, text


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _text_message(text: str) -> str:
    """A readable one-liner from a non-JSON body (an HTML page from a proxy, say)."""
    head = text[:8192]
    if "<" in head and ">" in head:
        title = _TITLE.search(head)
        head = title.group(1) if title else _TAGS.sub(" ", head)
    return _SPACE.sub(" ", head).strip()


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    return str(value)


def request_id_from(headers: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return truncate(value, 200)
    return None


def extract_openai(payload: Any) -> ErrorFields:
    """The OpenAI envelope `{"error": {"message", "type", "code", "param"}}` and its
    common degradations (a string `error`, a top-level `message`)."""
    if not isinstance(payload, Mapping):
        return ErrorFields()
    error = payload.get("error", payload)
    if isinstance(error, str):
        return ErrorFields(message=error)
    if not isinstance(error, Mapping):
        return ErrorFields(message=_as_str(payload.get("message")))
    code = _as_str(error.get("code"))
    category = _as_str(error.get("type"))
    message = _as_str(error.get("message"))
    param = _as_str(error.get("param"))
    details = (FieldError(param, code or category, message or ""),) if param else ()
    extra = {k: error[k] for k in ("type", "param") if error.get(k) is not None}
    return ErrorFields(
        code=code,
        message=message,
        request_id=_as_str(error.get("request_id")),
        details=details,
        extra=extra,
        category=category,
    )


def normalize(
    provider: str,
    table: ErrorTable,
    *,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | Mapping[str, Any] | Sequence[Any] | None = None,
    extract: Extractor = extract_openai,
    request_id_headers: Sequence[str] = ("x-request-id",),
    now: float | None = None,
) -> ProviderError:
    """Build the normalized error for one failed response or error frame. Never raises."""
    lower = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    payload, text = decode_body(body)
    try:
        fields = extract(payload) if payload is not None else ErrorFields()
    except Exception:  # an extractor must not turn a gateway error into a crash
        fields = ErrorFields()
    if not isinstance(fields, ErrorFields):  # a plugin's extractor returned the wrong type
        fields = ErrorFields()  # type: ignore[unreachable]
    kind, rule = table.kind_for(status, fields)
    message = fields.message or _text_message(text)
    if not message:
        message = _status_message(status)
    if status is not None and 300 <= status < 400 and "location" in lower:
        message = f"{message} (redirect to {truncate(lower['location'], 200)} not followed)"
    retryable = fields.retryable
    if retryable is None and rule is not None:
        retryable = rule.retryable
    hints = [h for h in (bounded(fields.retry_after), parse_retry_after(lower, now=now)) if h is not None]
    code = fields.code or fields.category  # the body's own name for it, when it has one
    if status is None and rule is not None:
        # An in-band error (stream frame, failed job) carries its code's documented status.
        status = rule.status
    return error_for(
        kind,
        truncate(message),
        provider=provider,
        status=status,
        code=truncate(code, 200) if code is not None else None,
        retryable=retryable,
        retry_after=max(hints) if hints else None,
        request_id=_bounded_id(fields.request_id) or request_id_from(lower, request_id_headers),
        details=_bounded_details(fields.details),
        extra=fields.extra,
    )


# An error carries what a person or a log needs, never a body's worth: a request id of
# a few hundred characters at most, and the first few field errors, each bounded.
MAX_DETAILS = 20


def _bounded_id(value: str | None) -> str | None:
    return truncate(value, 200) if value else value


def _bounded_details(details: tuple[FieldError, ...]) -> tuple[FieldError, ...]:
    return tuple(
        FieldError(
            truncate(str(d.field), 200),
            None if d.code is None else truncate(str(d.code), 200),
            truncate(str(d.message)),
        )
        for d in tuple(details)[:MAX_DETAILS]
        if isinstance(d, FieldError)
    )


class ReadsTable:
    """`normalize` as an error table reads: written once for `TableNormalizer` and
    every `Provider`, each of which says where its table is (`table_reading`)."""

    __slots__ = ()

    def table_reading(self) -> tuple[str, ErrorTable, Extractor, Sequence[str]]:
        """The provider read for, its error table, the extractor of its envelope and
        the headers that carry a request id."""
        raise NotImplementedError

    def normalize(
        self,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> ProviderError:
        """The error a failed response (or, with `status=None`, an in-band error: a
        stream frame, a 2xx error envelope) means, as the table says. Never raises."""
        provider, table, extract, request_ids = self.table_reading()
        return normalize(
            provider,
            table,
            status=status,
            headers=headers,
            body=body,
            extract=extract,
            request_id_headers=request_ids,
        )


@frozen
class TableNormalizer(ReadsTable):
    """An `ErrorNormalizer` made of data: the provider it reads for, its error table,
    the extractor of its envelope and the headers that carry a request id. What
    every `Provider.normalize` is; a plugin that reads another gateway's errors
    (`turnout_register_normalizers`) can be one too."""

    provider: str
    table: ErrorTable
    extract: Extractor = extract_openai
    request_id_headers: Sequence[str] = ("x-request-id",)

    def table_reading(self) -> tuple[str, ErrorTable, Extractor, Sequence[str]]:
        return self.provider, self.table, self.extract, self.request_id_headers


# Phrases Python 3.13 renamed (RFC 9110), kept as every earlier Python and most
# gateways and SDKs say them, so a message does not depend on the interpreter.
_PHRASES = {
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
}


def _status_message(status: int | None) -> str:
    if status is None:
        return "the gateway reported an error without a message"
    phrase = _PHRASES.get(status)
    if phrase is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            return f"HTTP {status}"
    return f"HTTP {status} {phrase}"
