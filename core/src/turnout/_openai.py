"""The OpenAI-compatible codec that most gateways specialize.

Wire payloads are parsed by hand rather than structured with cattrs: every
field of a hostile body must be type-checked anyway, and chunk decoding is the
streaming hot path (one call per token batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from attrs import field, frozen

from ._answers import MAP, Malformed, finish_reason, text_of, tool_call_deltas, tool_calls, usage_from
from ._checks import Check
from ._errors import ErrorKind, ProviderError, error_for
from ._flow import (
    ERROR_BODY_LIMIT,
    READ_EVENT,
    Emit,
    Flow,
    HTTPRequest,
    HTTPResponse,
    OpenStream,
    ReadBody,
    Send,
)
from ._json import event as event_json
from ._json import loads
from ._models import ChatChunk, ChatRequest, ChatResponse, Deployment, ToolCallDelta
from ._provider import Provider, whole_chunk

__all__ = ["CAPABILITIES", "OpenAICompatible", "OpenAIOptions", "text_of", "usage_from"]

# What an OpenAI-compatible API carries: all of it.
CAPABILITIES = frozenset({"tools", "tool_streaming", "content_parts", "response_format"})


def _header_value(value: str) -> bool:
    return all(" " <= c <= "~" or c == "\t" for c in value)


HeaderValue = Annotated[str, Check(_header_value, "holds characters a header cannot carry")]


@frozen
class OpenAIOptions:
    """Options of an OpenAI-compatible deployment: headers on every request, and
    default chat parameters (the call's own win)."""

    headers: dict[str, HeaderValue] = field(factory=dict)
    params: dict[str, Any] = field(factory=dict)


def named(chunk: ChatChunk, request_id: str) -> ChatChunk:
    """`chunk` named by the stream's request id (made directly: `attrs.evolve` costs
    twice as much, once per chunk)."""
    return ChatChunk(
        chunk.delta,
        chunk.finish_reason,
        chunk.usage,
        request_id,
        chunk.tool_calls,
        chunk.refusal,
        chunk.model,
    )


class OpenAICompatible(Provider):
    """`POST {base_url}{chat_path}` with the OpenAI request, response, SSE and error shapes.

    A gateway plugin subclasses it, sets `name`, `default_base_url`,
    `error_table` and `retry_policy`, and overrides the few hooks where its
    gateway differs (`extract_error`, `is_error_envelope`, `stream_error`, `payload`).
    """

    chat_path: ClassVar[str] = "/chat/completions"
    # Whether a stream may end by a clean close without `[DONE]` or a finish_reason.
    clean_close_ends_stream: ClassVar[bool] = False
    options_type: ClassVar[type | None] = OpenAIOptions
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES

    # -- requests ------------------------------------------------------------

    def payload(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": deployment.model,
            "messages": [m.to_wire() for m in request.messages],
        }
        payload.update(self.openai_options(deployment).params)
        payload.update(request.params)
        if stream:
            payload["stream"] = True
        payload.update(request.extra_body)
        return payload

    def openai_options(self, deployment: Deployment) -> OpenAIOptions:
        options: Any = self.typed_options(deployment, self.options_type or OpenAIOptions)
        assert isinstance(options, OpenAIOptions)
        return options

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = dict(self.auth_headers(deployment))
        headers.update({k.lower(): v for k, v in self.openai_options(deployment).headers.items()})
        return headers

    def request(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        headers = self.headers(deployment)
        if stream:
            headers["accept"] = "text/event-stream"
        # A chat completion creates nothing on the gateway: repeating one after an unknown
        # outcome costs tokens again but does no harm (as the OpenAI SDK retries it).
        return HTTPRequest.json(
            "POST",
            self.base_url(deployment) + self.chat_path,
            self.payload(deployment, request, stream=stream),
            headers=headers,
            repeatable=True,
        )

    # -- responses -----------------------------------------------------------

    def json_body(self, response: HTTPResponse, what: str = "response") -> Any:
        """The body as JSON, or parse_error (too large, not JSON, nested past the stack)."""
        if response.truncated:
            raise self.parse_error(f"the {what} body is larger than allowed", response)
        try:
            return loads(response.body)
        except (ValueError, RecursionError):
            raise self.parse_error(f"the {what} body is not JSON", response) from None

    def parse_completion(self, response: HTTPResponse) -> ChatResponse:
        payload = self.json_body(response)
        if isinstance(payload, Mapping) and "choices" not in payload and self.is_error_envelope(payload):
            # A gateway that reports an error with a 2xx status.
            raise self.normalize(status=None, headers=response.headers, body=payload)
        choices = payload.get("choices") if isinstance(payload, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise self.parse_error("the response has no choices", response)
        message = choices[0].get("message")
        # A null content is a real answer (a refusal, tool calls); a missing one is not.
        if not isinstance(message, Mapping) or not ("content" in message or "tool_calls" in message):
            raise self.parse_error("the response's message has no content", response)
        content = text_of(message.get("content"))
        refusal = message.get("refusal")
        try:
            if content is None:
                raise Malformed("its content is neither text nor content parts")
            if refusal is not None and not isinstance(refusal, str):
                raise Malformed("its refusal is not text")
            calls = tool_calls(message)
        except Malformed as problem:
            raise self.parse_error(f"the response's message is malformed: {problem}", response) from None
        body_id, model = payload.get("id"), payload.get("model")
        return ChatResponse(
            content=content,
            finish_reason=finish_reason(choices[0].get("finish_reason")),
            usage=usage_from(payload.get("usage")),
            model=model if isinstance(model, str) else None,
            request_id=self.request_id(response.headers) or (body_id if isinstance(body_id, str) else None),
            tool_calls=calls,
            refusal=refusal,
            message=message,
            raw=payload,
            headers=response.headers,
        )

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        return next((headers[h] for h in self.request_id_headers if h in headers), None)

    def chunk_from(self, payload: Mapping[str, Any]) -> ChatChunk | None:
        """The chunk an OpenAI `chat.completion.chunk` carries, or None if it carries
        nothing (a role-only first chunk, a keep-alive object). Raises `Malformed`."""
        return self._chunk(payload, None)

    def _chunk(self, payload: Mapping[str, Any], request_id: str | None) -> ChatChunk | None:
        """`chunk_from`, named by `request_id` (else the chunk's own id). The streaming
        hot path: one call per event, so checks go exact type first."""
        choices = payload.get("choices")
        text, finish, refusal = "", None, None
        deltas: tuple[ToolCallDelta, ...] = ()
        if type(choices) is list and choices and isinstance(choices[0], MAP):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, MAP):
                content = delta.get("content")
                if type(content) is str:
                    text = content
                elif content is not None:
                    text = text_of(content) or ""
                piece = delta.get("refusal")
                if piece is not None:
                    refusal = piece if isinstance(piece, str) and piece else None
                if "tool_calls" in delta:
                    deltas = tool_call_deltas(delta)
            reason = choice.get("finish_reason")
            if reason is not None:
                finish = finish_reason(reason)
        usage = payload.get("usage")
        if usage is not None:
            usage = usage_from(usage)
        if not text and finish is None and usage is None and not deltas and refusal is None:
            return None
        model = payload.get("model")
        if request_id is None:
            chunk_id = payload.get("id")
            request_id = chunk_id if type(chunk_id) is str else None
        return ChatChunk(
            text,
            finish,
            usage,
            request_id,
            deltas,
            refusal,
            model if type(model) is str else None,
        )

    def is_error_envelope(self, payload: Mapping[str, Any]) -> bool:
        """Whether a JSON object the gateway sent with a 2xx status (a whole body, or
        one stream event) is its error envelope rather than an answer. Default:
        OpenAI's, an `error` key (a whole body with `choices` is an answer anyway).
        Such a body is raised as `normalize(status=None, headers=..., body=payload)`."""
        return "error" in payload

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """The error an in-band frame reports, or None when the frame is not an error
        (it is then read as a chunk). The router raises what it returns."""
        if not self.is_error_envelope(payload):
            return None
        return self.normalize(status=None, headers=response.headers, body=payload)

    # -- flows ---------------------------------------------------------------

    def chat(self, deployment: Deployment, request: ChatRequest) -> Flow[ChatResponse]:
        response: HTTPResponse = yield Send(self.request(deployment, request, stream=False))
        if not response.ok:
            raise self.error_from(response)
        return self.parse_completion(response)

    def stream(self, deployment: Deployment, request: ChatRequest) -> Flow[None]:
        head: HTTPResponse = yield OpenStream(self.request(deployment, request, stream=True))
        if not head.ok:
            failed: HTTPResponse = yield ReadBody(ERROR_BODY_LIMIT)
            raise self.error_from(failed)
        if head.content_type != "text/event-stream":
            yield from self._whole_body_stream(head)
            return
        finished = False
        # The gateway's request id (a header) names every chunk; else each chunk's own id.
        request_id = self.request_id(head.headers)
        # A subclass reading chunks its own way is called as such; else the fast path.
        own_chunks = type(self).chunk_from is OpenAICompatible.chunk_from
        stream_error, chunk_of = self.stream_error, self._chunk  # looked up once, not per event
        while True:
            event = yield READ_EVENT
            if event is None:
                if finished or self.clean_close_ends_stream:
                    return
                raise error_for(
                    ErrorKind.STREAM_INTERRUPTED,
                    "the stream ended without [DONE] or a finish_reason",
                    provider=self.name,
                    status=head.status,
                )
            data = event.data
            if data == "[DONE]":
                return
            if not data:
                continue
            try:
                payload = event_json(data)
            except (ValueError, RecursionError):
                raise self.parse_error("a stream event is not JSON", head) from None
            if type(payload) is not dict:
                raise self.parse_error("a stream event is not a JSON object", head)
            error = stream_error(payload, head)
            if error is not None:
                raise error
            try:
                if own_chunks:
                    chunk = chunk_of(payload, request_id)
                else:
                    chunk = self.chunk_from(payload)
                    if chunk is not None and request_id is not None and chunk.request_id != request_id:
                        chunk = named(chunk, request_id)
            except Malformed as problem:
                raise self.parse_error(f"a stream event is malformed: {problem}", head) from None
            if chunk is not None:
                if chunk.finish_reason is not None:
                    finished = True
                yield Emit(chunk)

    def _whole_body_stream(self, head: HTTPResponse) -> Flow[None]:
        """A gateway that ignored `stream`: a whole completion is one chunk, anything else
        is parse_error (never an empty success)."""
        response: HTTPResponse = yield ReadBody()
        yield Emit(whole_chunk(self.parse_completion(response)))
