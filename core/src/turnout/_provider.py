"""The provider abstraction: a pure codec plus, where needed, a multi-step flow.

A provider never touches a socket or an event loop. `chat` and `stream` are
generators that yield commands (see `turnout._flow`) and receive their results;
the router drives them with `httpx.Client` or `httpx.AsyncClient`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from ._errors import ErrorKind, ProviderError, error_for
from ._flow import Emit, Flow, HTTPResponse
from ._models import ChatChunk, ChatRequest, ChatResponse, Deployment, ToolCallDelta
from ._normalize import ErrorFields, ErrorTable, Extractor, ReadsTable, extract_openai
from ._retry import RetryPolicy

__all__ = ["Provider", "needed_features", "whole_chunk"]


def whole_chunk(response: ChatResponse) -> ChatChunk:
    """A whole answer as one chunk (a gateway that cannot stream, or ignored `stream`)."""
    deltas = tuple(
        ToolCallDelta(index, call.id, call.name, call.arguments)
        for index, call in enumerate(response.tool_calls)
    )
    return ChatChunk(
        response.content,
        response.finish_reason,
        response.usage,
        response.request_id,
        deltas,
        response.refusal,
        response.model,
    )


# Typed options per deployment options mapping (kept with the mapping, so an id is
# never mistaken for another's), and the converter that makes them.
_TYPED: dict[int, tuple[Mapping[str, Any], Any]] = {}
_TYPED_LIMIT = 4096
_CONVERTER: Any = None
T = TypeVar("T")


_TOOL_PARAMS = ("tools", "functions", "tool_choice", "function_call")
_TOOL_ROLES = ("tool", "function")


def needed_features(request: ChatRequest, *, stream: bool) -> list[str]:
    """What carrying `request` faithfully takes: "tools" (tool definitions, or tool
    calls and results in the history), "tool_streaming", "content_parts" (content
    other than text), "response_format". (Every call asks: one pass over the messages.)"""
    params = request.params
    tools = bool(params) and any(params.get(k) for k in _TOOL_PARAMS)
    parts = False
    for m in request.messages:
        if not tools and (
            m.role in _TOOL_ROLES or (m.extra and ("tool_calls" in m.extra or "function_call" in m.extra))
        ):
            tools = True
        if not parts and isinstance(m.content, list):
            parts = any(isinstance(p, Mapping) and p.get("type") != "text" for p in m.content)
    features = []
    if tools:
        features.append("tools")
        if stream:
            features.append("tool_streaming")
    if parts:
        features.append("content_parts")
    if params and params.get("response_format") is not None:
        features.append("response_format")
    return features


class Provider(ReadsTable):
    """Base class of every provider. Subclasses set the class attributes and `chat`.

    Instances are registered by plugins through the `turnout_register_providers`
    hook, or by users with `turnout.register_provider(...)`.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    error_table: ClassVar[ErrorTable] = ErrorTable()
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    request_id_headers: ClassVar[Sequence[str]] = ("x-request-id",)
    # The deployment's `options` as an attrs class (fields with defaults, conditions
    # written as `Annotated[..., Check(...)]`), structured by cattrs at construction.
    options_type: ClassVar[type | None] = None
    # Without `options_type`: the keys the options may hold; anything else is a ConfigError.
    option_names: ClassVar[frozenset[str]] = frozenset()
    # What the gateway carries faithfully besides text ("tools", "tool_streaming",
    # "content_parts", "response_format"): a request needing more is never sent to it.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    # -- configuration -------------------------------------------------------

    def check_deployment(self, deployment: Deployment, path: str) -> None:
        """Raise ConfigError for a deployment this provider cannot serve.

        `path` names the deployment in the user's configuration
        (`deployments[2]`); errors append the field to it. With `options_type`
        set, the options are structured into it (unknown keys, wrong types and
        failed checks name their path); else only `option_names` are allowed.
        """
        from ._errors import ConfigError

        if self.options_type is not None:
            self.typed_options(deployment, self.options_type, path=path)
            return
        unknown = sorted(set(deployment.options) - self.option_names)
        if unknown:
            raise ConfigError(
                f"unknown option for provider {self.name!r}"
                + (f"; known: {', '.join(sorted(self.option_names))}" if self.option_names else ""),
                path=f"{path}.options.{unknown[0]}",
                value=unknown[0],
            )

    def typed_options(self, deployment: Deployment, cls: type[T], *, path: str = "deployment") -> T:
        """`deployment.options` structured as `cls` (checked at construction, so a
        call never fails here); made once per deployment."""
        options = deployment.options
        cached = _TYPED.get(id(options))
        if cached is not None and cached[0] is options and type(cached[1]) is cls:
            return cached[1]
        from ._structure import make_converter, structure

        global _CONVERTER
        if _CONVERTER is None:
            _CONVERTER = make_converter()
        typed = structure(_CONVERTER, dict(options), cls, root=f"{path}.options")
        if len(_TYPED) >= _TYPED_LIMIT:
            _TYPED.clear()
        _TYPED[id(options)] = (options, typed)
        return typed

    def base_url(self, deployment: Deployment) -> str:
        return (deployment.base_url or self.default_base_url).rstrip("/")

    def auth_headers(self, deployment: Deployment) -> dict[str, str]:
        key = deployment.key()
        return {"authorization": f"Bearer {key}"} if key else {}

    def unsupported(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> list[str]:
        """What of `request` this deployment cannot carry (the router then skips it)."""
        return [f for f in needed_features(request, stream=stream) if f not in self.capabilities]

    # -- errors --------------------------------------------------------------

    def extract_error(self, payload: Any) -> ErrorFields:
        """Pull code, message, ids and hints out of a parsed error body."""
        return extract_openai(payload)

    def table_reading(self) -> tuple[str, ErrorTable, Extractor, Sequence[str]]:
        """`normalize` reads `error_table` through `extract_error`."""
        return self.name, self.error_table, self.extract_error, self.request_id_headers

    def error_from(self, response: HTTPResponse) -> ProviderError:
        return self.normalize(status=response.status, headers=response.headers, body=response.body)

    def parse_error(self, message: str, response: HTTPResponse | None = None) -> ProviderError:
        """A body that is not what the gateway documents."""
        headers = response.headers if response is not None else {}
        request_id = next((headers[h] for h in self.request_id_headers if h in headers), None)
        return error_for(
            ErrorKind.PARSE_ERROR,
            message,
            provider=self.name,
            status=response.status if response is not None else None,
            request_id=request_id,
        )

    # -- flows ---------------------------------------------------------------

    def chat(self, deployment: Deployment, request: ChatRequest) -> Flow[ChatResponse]:
        raise NotImplementedError

    def stream(self, deployment: Deployment, request: ChatRequest) -> Flow[None]:
        """Stream the answer. By default: the whole answer as one chunk, for
        gateways that cannot stream (the caller's code stays the same)."""
        response = yield from self.chat(deployment, request)
        yield Emit(whole_chunk(response))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
