# The one export table of `turnout`: every public name, once, with the module it lives in.
# Type checkers read it as the package's interface; `__init__.py` reads it at import to
# load each name on first use (so `import turnout` stays light).

from ._async_driver import arun_flow as arun_flow
from ._async_driver import astream_flow as astream_flow
from ._errors import (
    KIND_CLASSES as KIND_CLASSES,
)
from ._errors import (
    KIND_RULES as KIND_RULES,
)
from ._errors import (
    APIConnectionError as APIConnectionError,
)
from ._errors import (
    APITimeoutError as APITimeoutError,
)
from ._errors import (
    Attempt as Attempt,
)
from ._errors import (
    AuthenticationError as AuthenticationError,
)
from ._errors import (
    BadRequestError as BadRequestError,
)
from ._errors import (
    ConfigError as ConfigError,
)
from ._errors import (
    ContentFilterError as ContentFilterError,
)
from ._errors import (
    ContextLengthError as ContextLengthError,
)
from ._errors import (
    ErrorKind as ErrorKind,
)
from ._errors import (
    Fallback as Fallback,
)
from ._errors import (
    FieldError as FieldError,
)
from ._errors import (
    InsufficientCreditsError as InsufficientCreditsError,
)
from ._errors import (
    InternalServerError as InternalServerError,
)
from ._errors import (
    KindRule as KindRule,
)
from ._errors import (
    ModelNotFoundError as ModelNotFoundError,
)
from ._errors import (
    NoHealthyDeploymentError as NoHealthyDeploymentError,
)
from ._errors import (
    NotFoundError as NotFoundError,
)
from ._errors import (
    PermissionDeniedError as PermissionDeniedError,
)
from ._errors import (
    ProviderError as ProviderError,
)
from ._errors import (
    RateLimitError as RateLimitError,
)
from ._errors import (
    ResponseParseError as ResponseParseError,
)
from ._errors import (
    ServiceUnavailableError as ServiceUnavailableError,
)
from ._errors import (
    StreamInterruptedError as StreamInterruptedError,
)
from ._errors import (
    TurnoutError as TurnoutError,
)
from ._errors import (
    UpstreamError as UpstreamError,
)
from ._errors import (
    ValidationError as ValidationError,
)
from ._errors import (
    attribute_error as attribute_error,
)
from ._errors import (
    deadline_error as deadline_error,
)
from ._errors import (
    error_for as error_for,
)
from ._errors import (
    mask_secret as mask_secret,
)
from ._errors import (
    redact as redact,
)
from ._flow import (
    READ_EVENT as READ_EVENT,
)
from ._flow import (
    CallAbandoned as CallAbandoned,
)
from ._flow import (
    Emit as Emit,
)
from ._flow import (
    Flow as Flow,
)
from ._flow import (
    HTTPRequest as HTTPRequest,
)
from ._flow import (
    HTTPResponse as HTTPResponse,
)
from ._flow import (
    OpenStream as OpenStream,
)
from ._flow import (
    ReadBody as ReadBody,
)
from ._flow import (
    ReadEvent as ReadEvent,
)
from ._flow import (
    Send as Send,
)
from ._flow import (
    Sleep as Sleep,
)
from ._health import BreakerConfig as BreakerConfig
from ._health import Health as Health
from ._limits import (
    DEFAULT_MAX_BODY as DEFAULT_MAX_BODY,
)
from ._limits import (
    DEFAULT_MAX_EVENT as DEFAULT_MAX_EVENT,
)
from ._limits import (
    ERROR_BODY_LIMIT as ERROR_BODY_LIMIT,
)
from ._limits import (
    CallLimits as CallLimits,
)
from ._models import (
    ChatChunk as ChatChunk,
)
from ._models import (
    ChatRequest as ChatRequest,
)
from ._models import (
    ChatResponse as ChatResponse,
)
from ._models import (
    Deployment as Deployment,
)
from ._models import (
    Message as Message,
)
from ._models import (
    Secret as Secret,
)
from ._models import (
    Usage as Usage,
)
from ._normalize import (
    CodeRule as CodeRule,
)
from ._normalize import (
    ErrorFields as ErrorFields,
)
from ._normalize import (
    ErrorTable as ErrorTable,
)
from ._normalize import (
    MessageRule as MessageRule,
)
from ._normalize import (
    extract_openai as extract_openai,
)
from ._normalize import (
    parse_retry_after as parse_retry_after,
)
from ._openai import OpenAICompatible as OpenAICompatible
from ._openai import text_of as text_of
from ._openai import usage_from as usage_from
from ._plugins import (
    Plugins as Plugins,
)
from ._plugins import (
    ProviderInfo as ProviderInfo,
)
from ._plugins import (
    normalize_error as normalize_error,
)
from ._plugins import (
    providers as providers,
)
from ._plugins import (
    register_plugin as register_plugin,
)
from ._plugins import (
    register_provider as register_provider,
)
from ._provider import Provider as Provider
from ._retry import (
    GiveUp as GiveUp,
)
from ._retry import (
    Retry as Retry,
)
from ._retry import (
    RetryOverrides as RetryOverrides,
)
from ._retry import (
    RetryPolicy as RetryPolicy,
)
from ._retry import (
    effective_policy as effective_policy,
)
from ._retrying import retrying as retrying
from ._router import AsyncRouter as AsyncRouter
from ._router import Router as Router
from ._routing import Route as Route
from ._state import MemoryStore as MemoryStore
from ._state import RetryBudget as RetryBudget
from ._state import StateStore as StateStore
from ._stream import AsyncStream as AsyncStream
from ._stream import Stream as Stream
from ._sync_driver import run_flow as run_flow
from ._sync_driver import stream_flow as stream_flow
from .hookspecs import hookimpl as hookimpl

__version__: str
__all__: list[str]
