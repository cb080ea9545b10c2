"""turnout: send LLM requests through a router that retries correctly, falls back
across providers and raises one error taxonomy for every gateway.

`import turnout` loads only the data model and the error taxonomy. httpx,
pluggy, the plugins and the CLI are imported when first used (`Router`,
`providers()`, `normalize_error`, the `turnout` command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentFilterError,
    ContextLengthError,
    ErrorKind,
    Fallback,
    InsufficientCreditsError,
    InternalServerError,
    ModelNotFoundError,
    NoHealthyDeploymentError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    ResponseParseError,
    ServiceUnavailableError,
    StreamInterruptedError,
    TurnoutError,
    UpstreamError,
    ValidationError,
)
from ._models import (
    Attempt,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Deployment,
    FieldError,
    Message,
    Secret,
    Usage,
)

if TYPE_CHECKING:
    from ._drivers import arun_flow, astream_flow, run_flow, stream_flow
    from ._errors import KIND_CLASSES, KIND_RULES, KindRule, attribute_error, error_for, redact
    from ._flow import (
        DEFAULT_MAX_BODY,
        ERROR_BODY_LIMIT,
        READ_EVENT,
        CallAbandoned,
        Emit,
        Flow,
        HTTPRequest,
        HTTPResponse,
        OpenStream,
        ReadBody,
        ReadEvent,
        Send,
        Sleep,
    )
    from ._health import BreakerConfig, Health
    from ._normalize import CodeRule, ErrorFields, ErrorTable, MessageRule, extract_openai, parse_retry_after
    from ._openai import OpenAICompatible, text_of, usage_from
    from ._plugins import Plugins, ProviderInfo, providers, register_plugin, register_provider
    from ._provider import Provider
    from ._retry import GiveUp, Retry, RetryOverrides, RetryPolicy, effective_policy
    from ._router import AsyncRouter, AsyncStream, Router, Stream
    from ._routing import Route
    from ._state import MemoryStore, RetryBudget, StateStore
    from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_BODY",
    "ERROR_BODY_LIMIT",
    "KIND_CLASSES",
    "KIND_RULES",
    "READ_EVENT",
    "APIConnectionError",
    "APITimeoutError",
    "AsyncRouter",
    "AsyncStream",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BreakerConfig",
    "CallAbandoned",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "CodeRule",
    "ConfigError",
    "ContentFilterError",
    "ContextLengthError",
    "Deployment",
    "Emit",
    "ErrorFields",
    "ErrorKind",
    "ErrorTable",
    "Fallback",
    "FieldError",
    "Flow",
    "GiveUp",
    "HTTPRequest",
    "Health",
    "HTTPResponse",
    "InsufficientCreditsError",
    "InternalServerError",
    "KindRule",
    "MemoryStore",
    "Message",
    "MessageRule",
    "ModelNotFoundError",
    "NoHealthyDeploymentError",
    "NotFoundError",
    "OpenAICompatible",
    "OpenStream",
    "PermissionDeniedError",
    "Plugins",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "RateLimitError",
    "ReadBody",
    "ReadEvent",
    "ResponseParseError",
    "Retry",
    "RetryBudget",
    "RetryOverrides",
    "RetryPolicy",
    "Route",
    "Router",
    "Secret",
    "Send",
    "ServiceUnavailableError",
    "Sleep",
    "Stream",
    "StateStore",
    "StreamInterruptedError",
    "TurnoutError",
    "UpstreamError",
    "Usage",
    "ValidationError",
    "arun_flow",
    "effective_policy",
    "error_for",
    "astream_flow",
    "attribute_error",
    "extract_openai",
    "hookimpl",
    "normalize_error",
    "parse_retry_after",
    "providers",
    "redact",
    "register_plugin",
    "register_provider",
    "run_flow",
    "stream_flow",
    "text_of",
    "usage_from",
]

# Names loaded on first access, and the private module each lives in.
_LAZY = {
    "KIND_RULES": "_errors",
    "KIND_CLASSES": "_errors",
    "error_for": "_errors",
    "attribute_error": "_errors",
    "redact": "_errors",
    "DEFAULT_MAX_BODY": "_flow",
    "ERROR_BODY_LIMIT": "_flow",
    "parse_retry_after": "_normalize",
    "text_of": "_openai",
    "usage_from": "_openai",
    "effective_policy": "_retry",
    "KindRule": "_errors",
    "READ_EVENT": "_flow",
    "CallAbandoned": "_flow",
    "run_flow": "_drivers",
    "stream_flow": "_drivers",
    "arun_flow": "_drivers",
    "astream_flow": "_drivers",
    "Emit": "_flow",
    "Flow": "_flow",
    "HTTPRequest": "_flow",
    "HTTPResponse": "_flow",
    "OpenStream": "_flow",
    "ReadBody": "_flow",
    "ReadEvent": "_flow",
    "Send": "_flow",
    "Sleep": "_flow",
    "CodeRule": "_normalize",
    "ErrorFields": "_normalize",
    "ErrorTable": "_normalize",
    "MessageRule": "_normalize",
    "extract_openai": "_normalize",
    "OpenAICompatible": "_openai",
    "Plugins": "_plugins",
    "ProviderInfo": "_plugins",
    "providers": "_plugins",
    "register_plugin": "_plugins",
    "register_provider": "_plugins",
    "Provider": "_provider",
    "GiveUp": "_retry",
    "Retry": "_retry",
    "RetryPolicy": "_retry",
    "RetryOverrides": "_retry",
    "AsyncRouter": "_router",
    "AsyncStream": "_router",
    "Router": "_router",
    "Stream": "_router",
    "Route": "_routing",
    "BreakerConfig": "_health",
    "Health": "_health",
    "MemoryStore": "_state",
    "RetryBudget": "_state",
    "StateStore": "_state",
    "hookimpl": "hookspecs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def normalize_error(
    provider: str,
    *,
    status: int | None = None,
    headers: Any = None,
    body: Any = None,
) -> ProviderError:
    """The normalized error a provider's gateway means by this response. Sans-IO:
    nothing is sent. `body` may be bytes, str or already-parsed JSON."""
    from ._plugins import default_plugins

    return (
        default_plugins()
        .provider(provider, path="provider")
        .normalize(status=status, headers=dict(headers or {}), body=body)
    )
