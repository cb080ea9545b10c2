"""The error taxonomy: one exception tree for every gateway's failures.

    TurnoutError
    ├── ConfigError                      bad configuration, raised at construction
    ├── NoHealthyDeploymentError         nothing could be tried now
    └── ProviderError                    a normalized gateway failure (has .kind)
        ├── AuthenticationError          authentication
        ├── PermissionDeniedError        permission_denied
        ├── InsufficientCreditsError     insufficient_credits
        ├── NotFoundError                not_found
        │   └── ModelNotFoundError       model_not_found
        ├── BadRequestError              bad_request
        │   ├── ValidationError          validation
        │   ├── ContentFilterError       content_filtered
        │   └── ContextLengthError       context_length_exceeded
        ├── RateLimitError               rate_limited
        ├── APITimeoutError              timeout
        ├── APIConnectionError           connection
        ├── InternalServerError          server_error
        │   └── UpstreamError            upstream_error
        ├── ServiceUnavailableError      unavailable
        ├── StreamInterruptedError       stream_interrupted
        └── ResponseParseError           parse_error

What each kind means for retries, fallback and the breaker is data
(`KIND_RULES`), so the router, the docs and the tests read one table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from attrs import evolve, frozen

__all__ = [
    "KIND_CLASSES",
    "KIND_RULES",
    "Attempt",
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ContentFilterError",
    "ContextLengthError",
    "ErrorKind",
    "Fallback",
    "FieldError",
    "InsufficientCreditsError",
    "InternalServerError",
    "KindRule",
    "ModelNotFoundError",
    "NoHealthyDeploymentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "ResponseParseError",
    "ServiceUnavailableError",
    "StreamInterruptedError",
    "TurnoutError",
    "UpstreamError",
    "ValidationError",
    "DECISIONS",
    "MIN_SECRET",
    "attribute_error",
    "deadline_error",
    "mask_secret",
    "error_for",
    "redact",
]


class ErrorKind(enum.StrEnum):
    AUTHENTICATION = "authentication"
    PERMISSION_DENIED = "permission_denied"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    NOT_FOUND = "not_found"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    VALIDATION = "validation"
    CONTENT_FILTERED = "content_filtered"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    UPSTREAM_ERROR = "upstream_error"
    UNAVAILABLE = "unavailable"
    STREAM_INTERRUPTED = "stream_interrupted"
    PARSE_ERROR = "parse_error"


class Fallback(enum.StrEnum):
    """When the router may move a failed call to another deployment."""

    ALWAYS = "yes"
    NEVER = "no"
    CONTENT_POLICY_ROUTE = "only on a content-policy route"
    CONTEXT_WINDOW_ROUTE = "only on a context-window route"
    BEFORE_FIRST_CHUNK = "only before the first chunk reached the caller"


class TurnoutError(Exception):
    """Base of every error turnout raises."""


@frozen
class FieldError:
    """One field-level complaint from a validation error."""

    field: str
    code: str | None
    message: str


# What the router decided after an attempt (the decision record).
DECISIONS = ("done", "retry", "fallback", "give_up", "abandoned")


@frozen
class Attempt:
    """One try on one deployment, failed or not, and what the router decided after it.

    `decision` is one of "done", "retry", "fallback", "give_up", "abandoned";
    `reason` says why in a few words ("429, retry after 2.0 s", "breaker open").
    """

    deployment: str
    provider: str
    error: ProviderError | None
    elapsed: float
    waited: float = 0.0
    decision: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


_HIDDEN = "<hidden>"
_SECRET_HINTS = ("api_key", "key", "secret", "token", "password")


class ConfigError(TurnoutError):
    """Bad configuration, raised at construction, naming the path and the value.

    Values at paths that look like secrets are never shown.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        value: Any = None,
        choices: Sequence[str] | None = None,
        show_value: bool = True,
        choices_are: str = "installed",
    ) -> None:
        self.path = path
        self.choices = tuple(choices) if choices is not None else None
        leaf = (path or "").rsplit(".", 1)[-1].split("[", 1)[0].lower()
        secret = any(hint in leaf for hint in _SECRET_HINTS)
        self.value = _HIDDEN if secret else value
        text = f"{path}: {message}" if path else message
        if show_value and value is not None:
            text += f" (got {_HIDDEN if secret else _short_repr(value)})"
        if self.choices is not None:
            text += f"; {choices_are}: {', '.join(self.choices) or 'none'}"
        super().__init__(text)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProviderError(TurnoutError):
    """A gateway failure, normalized. Instances are of the subclass for their kind."""

    default_kind: ClassVar[ErrorKind] = ErrorKind.SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        provider: str = "",
        deployment: str | None = None,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        details: tuple[FieldError, ...] = (),
        partial_text: str = "",
        attempts: tuple[Attempt, ...] = (),
        extra: Mapping[str, Any] | None = None,
        maybe_processed: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind if kind is not None else self.default_kind
        self.message = message
        self.provider = provider
        self.deployment = deployment
        self.status = status
        self.code = code
        self.retryable: bool = KIND_RULES[self.kind].retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.request_id = request_id
        self.details = details
        self.partial_text = partial_text
        self.attempts = attempts
        # Provider-specific leftovers worth keeping (e.g. meshapi's provider_error).
        self.extra: Mapping[str, Any] = extra or {}
        # The request reached the gateway and may have run (a read timeout, a connection
        # dropped after it was sent): repeating it may repeat its effects.
        self.maybe_processed = maybe_processed

    @property
    def fallback(self) -> Fallback:
        return KIND_RULES[self.kind].fallback

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.deployment) if p)
        parts = [f"[{where}] " if where else "", self.kind.value]
        wire = " ".join(str(p) for p in (self.status, self.code) if p is not None)
        if wire:
            parts.append(f" ({wire})")
        parts.append(f": {self.message}")
        if self.retry_after is not None:
            parts.append(f" (retry after {self.retry_after:g}s)")
        if self.request_id:
            parts.append(f" [request_id={self.request_id}]")
        return "".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind.value!r}, provider={self.provider!r}, "
            f"deployment={self.deployment!r}, status={self.status!r}, code={self.code!r}, "
            f"message={_short_repr(self.message, 200)}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps errors picklable across process pools despite keyword-only init.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls(message)
    err.__dict__.update(state)
    return err


class AuthenticationError(ProviderError):
    default_kind = ErrorKind.AUTHENTICATION


class PermissionDeniedError(ProviderError):
    default_kind = ErrorKind.PERMISSION_DENIED


class InsufficientCreditsError(ProviderError):
    default_kind = ErrorKind.INSUFFICIENT_CREDITS


class NotFoundError(ProviderError):
    default_kind = ErrorKind.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    default_kind = ErrorKind.MODEL_NOT_FOUND


class BadRequestError(ProviderError):
    default_kind = ErrorKind.BAD_REQUEST


class ValidationError(BadRequestError):
    default_kind = ErrorKind.VALIDATION


class ContentFilterError(BadRequestError):
    default_kind = ErrorKind.CONTENT_FILTERED


class ContextLengthError(BadRequestError):
    default_kind = ErrorKind.CONTEXT_LENGTH_EXCEEDED


class RateLimitError(ProviderError):
    default_kind = ErrorKind.RATE_LIMITED


class APITimeoutError(ProviderError):
    default_kind = ErrorKind.TIMEOUT


class APIConnectionError(ProviderError):
    default_kind = ErrorKind.CONNECTION


class InternalServerError(ProviderError):
    default_kind = ErrorKind.SERVER_ERROR


class UpstreamError(InternalServerError):
    default_kind = ErrorKind.UPSTREAM_ERROR


class ServiceUnavailableError(ProviderError):
    default_kind = ErrorKind.UNAVAILABLE


class StreamInterruptedError(ProviderError):
    default_kind = ErrorKind.STREAM_INTERRUPTED


class ResponseParseError(ProviderError):
    default_kind = ErrorKind.PARSE_ERROR


class NoHealthyDeploymentError(TurnoutError):
    """No deployment of the route (or its fallbacks) may be tried before the call's
    deadline; `retry_after` is the time until the first one may, `reasons` says
    for each why it is set aside and until when."""

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        retry_after: float | None = None,
        attempts: tuple[Attempt, ...] = (),
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.route = route
        self.retry_after = retry_after
        self.attempts = attempts
        # Each deployment set aside: why and until when ("breaker open for 25.1 s more (until 12:03:04 UTC)").
        self.reasons: Mapping[str, str] = dict(reasons or {})


@frozen
class KindRule:
    """What a kind means to the router: one row of the taxonomy table."""

    exception: type[ProviderError]
    retryable: bool
    fallback: Fallback
    # Counts against the deployment's breaker (provider health, not the caller's mistake).
    health_failure: bool
    # Seconds the deployment is set aside for other calls (its key or account is wrong).
    cooldown: float = 0.0


_LONG_COOLDOWN = 600.0
_A, _N = Fallback.ALWAYS, Fallback.NEVER
KIND_RULES: Mapping[ErrorKind, KindRule] = {
    ErrorKind.AUTHENTICATION: KindRule(AuthenticationError, False, _A, False, _LONG_COOLDOWN),
    ErrorKind.PERMISSION_DENIED: KindRule(PermissionDeniedError, False, _A, False, _LONG_COOLDOWN),
    ErrorKind.INSUFFICIENT_CREDITS: KindRule(InsufficientCreditsError, False, _A, False, _LONG_COOLDOWN),
    ErrorKind.NOT_FOUND: KindRule(NotFoundError, False, _N, False),
    ErrorKind.MODEL_NOT_FOUND: KindRule(ModelNotFoundError, False, _A, False),
    ErrorKind.BAD_REQUEST: KindRule(BadRequestError, False, _N, False),
    ErrorKind.VALIDATION: KindRule(ValidationError, False, _N, False),
    ErrorKind.CONTENT_FILTERED: KindRule(ContentFilterError, False, Fallback.CONTENT_POLICY_ROUTE, False),
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: KindRule(
        ContextLengthError, False, Fallback.CONTEXT_WINDOW_ROUTE, False
    ),
    ErrorKind.RATE_LIMITED: KindRule(RateLimitError, True, _A, True),
    ErrorKind.TIMEOUT: KindRule(APITimeoutError, True, _A, True),
    ErrorKind.CONNECTION: KindRule(APIConnectionError, True, _A, True),
    ErrorKind.SERVER_ERROR: KindRule(InternalServerError, True, _A, True),
    ErrorKind.UPSTREAM_ERROR: KindRule(UpstreamError, True, _A, True),
    ErrorKind.UNAVAILABLE: KindRule(ServiceUnavailableError, True, _A, True),
    ErrorKind.STREAM_INTERRUPTED: KindRule(StreamInterruptedError, False, Fallback.BEFORE_FIRST_CHUNK, True),
    ErrorKind.PARSE_ERROR: KindRule(ResponseParseError, True, _A, True),
}

KIND_CLASSES: Mapping[ErrorKind, type[ProviderError]] = {
    kind: rule.exception for kind, rule in KIND_RULES.items()
}


# Shorter secrets are not masked: "***" in place of every "abc" would garble messages.
MIN_SECRET = 6


def redact(text: str, secret: str | None) -> str:
    """`text` with `secret` masked: gateways sometimes echo the key they rejected."""
    if not secret or len(secret) < MIN_SECRET or secret not in text:
        return text
    return text.replace(secret, "***")


def _masked(value: Any, secret: str) -> Any:
    """`value` with `secret` masked in every string it holds (however nested)."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, FieldError):
        return evolve(
            value,
            field=redact(value.field, secret),
            code=None if value.code is None else redact(value.code, secret),
            message=redact(value.message, secret),
        )
    if isinstance(value, Mapping):
        return {_masked(k, secret): _masked(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(v, secret) for v in value)
    return value


_MASKED_FIELDS = ("message", "code", "request_id", "partial_text", "details", "extra")


def mask_secret(error: ProviderError, secret: str | None) -> ProviderError:
    """Mask `secret` in every field of `error` a user can reach: message, code,
    request id, details, extra fields and the text already streamed."""
    if not secret or len(secret) < MIN_SECRET:
        return error
    for name in _MASKED_FIELDS:
        value = getattr(error, name)
        masked = _masked(value, secret)
        if masked != value:
            setattr(error, name, masked)
    if error.args != (error.message,):
        error.args = (error.message,)
    return error


def attribute_error(
    error: ProviderError, *, provider: str, deployment: str, secret: str | None = None
) -> ProviderError:
    """Name who failed, where the error does not say already, and keep the
    deployment's key out of it. The one place errors are attributed.

    The error outlives its attempt (in `attempts`, and as the error the call
    raises), so it lets go of its traceback: the provider flow's frames would
    keep that attempt's response (a body of up to `max_body`) and request alive
    for as long as the error lives, one per attempt."""
    error.provider = error.provider or provider
    error.deployment = error.deployment or deployment
    error.__traceback__ = None
    return mask_secret(error, secret)


def deadline_error(deadline: float) -> ProviderError:
    """The call's own deadline passed: not retryable, whatever was in flight."""
    return error_for(
        ErrorKind.TIMEOUT,
        f"the call's deadline of {deadline:g}s passed",
        retryable=False,
        code="deadline_exceeded",
    )


def error_for(kind: ErrorKind, message: str, **fields: Any) -> ProviderError:
    """Build the exception of `kind`'s class: the one way errors are made."""
    return KIND_CLASSES[kind](message, kind=kind, **fields)
