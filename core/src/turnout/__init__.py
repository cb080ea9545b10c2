"""turnout: send LLM requests through a router that retries correctly, falls back
across providers and raises one error taxonomy for every gateway.

`import turnout` loads nothing but this file: every public name is loaded on
first use (`turnout.Router`, `turnout.RateLimitError`, ...), so httpx, pluggy,
the plugins and the CLI are imported only when something needs them.

The export table is the `TYPE_CHECKING` block at the end of this file: each
`from .module import Name as Name` line there is one public name. Type checkers
read it as imports; at run time `_exports()` reads the same lines as data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


_TABLE = "# -- the export table --"


def _exports() -> dict[str, str]:
    """{public name: the private module it lives in}, read from the export table below."""
    table: dict[str, str] = {}
    with open(__file__, encoding="utf-8") as source:
        lines = source.read().split(_TABLE + "\n")[-1].splitlines()
    text = "\n" + "\n".join(line.split("#", 1)[0].strip() for line in lines)
    for statement in text.split("\nfrom .")[1:]:
        module, _, names = statement.partition(" import ")
        # `import (A as A, ...)` over several lines, or `import A as A` on one.
        names = names[1 : names.index(")")] if names.startswith("(") else names.split("\n", 1)[0]
        for item in names.split(","):
            name = item.split(" as ")[-1].strip()
            if name:
                table[name] = module.strip()
    return table


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:
    # -- the export table --
    from ._answers import (
        FINISH_REASONS as FINISH_REASONS,
        finish_reason as finish_reason,
        text_of as text_of,
        usage_from as usage_from,
    )
    from ._async_driver import (
        arun_flow as arun_flow,
        astream_flow as astream_flow,
    )
    from ._budget import (
        RetryBudget as RetryBudget,
    )
    from ._errors import (
        KIND_CLASSES as KIND_CLASSES,
        KIND_RULES as KIND_RULES,
        APIConnectionError as APIConnectionError,
        APITimeoutError as APITimeoutError,
        Attempt as Attempt,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        ConfigError as ConfigError,
        ContentFilterError as ContentFilterError,
        ContextLengthError as ContextLengthError,
        ErrorKind as ErrorKind,
        Fallback as Fallback,
        FieldError as FieldError,
        InsufficientCreditsError as InsufficientCreditsError,
        InternalServerError as InternalServerError,
        KindRule as KindRule,
        ModelNotFoundError as ModelNotFoundError,
        NoHealthyDeploymentError as NoHealthyDeploymentError,
        NotFoundError as NotFoundError,
        PermissionDeniedError as PermissionDeniedError,
        ProviderError as ProviderError,
        RateLimitError as RateLimitError,
        ResponseParseError as ResponseParseError,
        ServiceUnavailableError as ServiceUnavailableError,
        StreamInterruptedError as StreamInterruptedError,
        TurnoutError as TurnoutError,
        UpstreamError as UpstreamError,
        ValidationError as ValidationError,
        attribute_error as attribute_error,
        deadline_error as deadline_error,
        error_for as error_for,
        mask_secret as mask_secret,
        redact as redact,
    )
    from ._flow import (
        READ_EVENT as READ_EVENT,
        CallAbandoned as CallAbandoned,
        Emit as Emit,
        Flow as Flow,
        HTTPRequest as HTTPRequest,
        HTTPResponse as HTTPResponse,
        OpenStream as OpenStream,
        ReadBody as ReadBody,
        ReadEvent as ReadEvent,
        Send as Send,
        Sleep as Sleep,
    )
    from ._health import (
        BreakerConfig as BreakerConfig,
        Health as Health,
    )
    from ._hints import (
        MAX_HINT as MAX_HINT,
        parse_retry_after as parse_retry_after,
        quota_exhausted as quota_exhausted,
    )
    from ._limits import (
        DEFAULT_MAX_BODY as DEFAULT_MAX_BODY,
        DEFAULT_MAX_EVENT as DEFAULT_MAX_EVENT,
        DEFAULT_MAX_STREAM as DEFAULT_MAX_STREAM,
        ERROR_BODY_LIMIT as ERROR_BODY_LIMIT,
        CallLimits as CallLimits,
    )
    from ._models import (
        ChatChunk as ChatChunk,
        ChatRequest as ChatRequest,
        ChatResponse as ChatResponse,
        Deployment as Deployment,
        Message as Message,
        Secret as Secret,
        ToolCall as ToolCall,
        ToolCallDelta as ToolCallDelta,
        Usage as Usage,
    )
    from ._normalize import (
        CodeRule as CodeRule,
        ErrorFields as ErrorFields,
        ErrorNormalizer as ErrorNormalizer,
        ErrorTable as ErrorTable,
        MessageRule as MessageRule,
        TableNormalizer as TableNormalizer,
        extract_openai as extract_openai,
    )
    from ._checks import (
        Check as Check,
    )
    from ._observe import (
        AttemptEvent as AttemptEvent,
        BreakerEvent as BreakerEvent,
        CallEvent as CallEvent,
    )
    from ._openai import (
        OpenAICompatible as OpenAICompatible,
        OpenAIOptions as OpenAIOptions,
    )
    from ._plugins import (
        Plugins as Plugins,
        ProviderInfo as ProviderInfo,
        RetryPolicyInfo as RetryPolicyInfo,
        effective_policy as effective_policy,
        normalize_error as normalize_error,
        providers as providers,
        register_normalizer as register_normalizer,
        register_plugin as register_plugin,
        register_provider as register_provider,
        register_retry_policy as register_retry_policy,
        retry_policies as retry_policies,
    )
    from ._provider import (
        Provider as Provider,
    )
    from ._retry import (
        GiveUp as GiveUp,
        NamedPolicy as NamedPolicy,
        Retry as Retry,
        RetryOverrides as RetryOverrides,
        RetryPolicy as RetryPolicy,
        backoff as backoff,
    )
    from ._retrying import (
        retrying as retrying,
    )
    from ._router import (
        AsyncRouter as AsyncRouter,
        Router as Router,
    )
    from ._routing import (
        Route as Route,
    )
    from ._state import (
        MemoryStore as MemoryStore,
        StateStore as StateStore,
    )
    from ._stream import (
        AsyncStream as AsyncStream,
        Stream as Stream,
    )
    from ._sync_driver import (
        run_flow as run_flow,
        stream_flow as stream_flow,
    )
    from .hookspecs import (
        hookimpl as hookimpl,
    )
