# The one export table of `turnout`: every public name, once, with the module it lives in.
# Type checkers read it as the package's interface; `__init__.py` reads it at import to
# load each name on first use (so `import turnout` stays light).

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

__version__: str
__all__: list[str]
