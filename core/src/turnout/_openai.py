"""The OpenAI-compatible codec that most gateways specialize.

Wire payloads are parsed by hand rather than structured with cattrs: every
field of a hostile body must be type-checked anyway, and chunk decoding is the
streaming hot path (one call per token batch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

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
from ._models import ChatChunk, ChatRequest, ChatResponse, Deployment, Usage
from ._provider import Provider

__all__ = ["OpenAICompatible", "text_of", "usage_from"]


def usage_from(value: Any) -> Usage | None:
    if not isinstance(value, Mapping):
        return None

    def count(name: str) -> int:
        number = value.get(name)
        return number if isinstance(number, int) and not isinstance(number, bool) else 0

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    return Usage(prompt, completion, count("total_tokens") or prompt + completion)


def text_of(content: Any) -> str | None:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = [
            part.get("text")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return "".join(parts)  # type: ignore[arg-type]
    return None


class OpenAICompatible(Provider):
    """`POST {base_url}{chat_path}` with the OpenAI request, response, SSE and error shapes.

    A gateway plugin subclasses it, sets `name`, `default_base_url`,
    `error_table` and `retry_policy`, and overrides the few hooks where its
    gateway differs (`stream_error`, `extract_error`, `payload`).
    """

    chat_path: ClassVar[str] = "/chat/completions"
    # Whether a stream may end by a clean close without `[DONE]` or a finish_reason.
    clean_close_ends_stream: ClassVar[bool] = False
    option_names: ClassVar[frozenset[str]] = frozenset({"headers", "params"})

    # -- requests ------------------------------------------------------------

    def payload(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": deployment.model,
            "messages": [m.to_wire() for m in request.messages],
        }
        defaults = deployment.options.get("params")
        if isinstance(defaults, Mapping):
            payload.update(defaults)
        payload.update(request.params)
        if stream:
            payload["stream"] = True
        return payload

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = dict(self.auth_headers(deployment))
        extra = deployment.options.get("headers")
        if isinstance(extra, Mapping):
            headers.update({str(k).lower(): str(v) for k, v in extra.items()})
        return headers

    def request(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        headers = self.headers(deployment)
        if stream:
            headers["accept"] = "text/event-stream"
        return HTTPRequest.json(
            "POST",
            self.base_url(deployment) + self.chat_path,
            self.payload(deployment, request, stream=stream),
            headers=headers,
        )

    # -- responses -----------------------------------------------------------

    def parse_completion(self, response: HTTPResponse) -> ChatResponse:
        if response.truncated:
            raise self.parse_error("the response body is larger than allowed", response)
        try:
            payload = json.loads(response.body)
        except (ValueError, RecursionError):
            raise self.parse_error("the response body is not JSON", response) from None
        if isinstance(payload, Mapping) and "error" in payload and "choices" not in payload:
            # A gateway that reports an error with a 2xx status.
            raise self.normalize(status=None, headers=response.headers, body=payload)
        choices = payload.get("choices") if isinstance(payload, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise self.parse_error("the response has no choices", response)
        choice = choices[0]
        message = choice.get("message")
        # A null content is a real answer (a refusal, tool calls); a missing one is not.
        has_content = isinstance(message, Mapping) and "content" in message
        content = text_of(message["content"]) if has_content else None  # type: ignore[index]
        if content is None:
            raise self.parse_error("the response's message has no text content", response)
        finish = choice.get("finish_reason")
        request_id = next(
            (response.headers[h] for h in self.request_id_headers if h in response.headers), None
        )
        body_id = payload.get("id")
        model = payload.get("model")
        return ChatResponse(
            content=content,
            finish_reason=finish if isinstance(finish, str) else None,
            usage=usage_from(payload.get("usage")),
            model=model if isinstance(model, str) else None,
            request_id=request_id or (body_id if isinstance(body_id, str) else None),
        )

    def chunk_from(self, payload: Mapping[str, Any]) -> ChatChunk | None:
        """The chunk an OpenAI `chat.completion.chunk` carries, or None if it carries nothing."""
        choices = payload.get("choices")
        delta_text = ""
        finish = None
        if isinstance(choices, list) and choices:
            choice = choices[0]
            if isinstance(choice, Mapping):
                delta = choice.get("delta")
                if isinstance(delta, Mapping):
                    text = delta.get("content")
                    if isinstance(text, str):
                        delta_text = text
                finish = choice.get("finish_reason")
                if not isinstance(finish, str):
                    finish = None
        usage = usage_from(payload.get("usage"))
        if not delta_text and finish is None and usage is None:
            return None
        return ChatChunk(delta_text, finish, usage)

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """The error an in-band frame reports, if it is an error frame."""
        if "error" not in payload:
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
                payload = json.loads(data)
            except (ValueError, RecursionError):
                raise self.parse_error("a stream event is not JSON", head) from None
            if not isinstance(payload, Mapping):
                raise self.parse_error("a stream event is not a JSON object", head)
            error = self.stream_error(payload, head)
            if error is not None:
                raise error
            chunk = self.chunk_from(payload)
            if chunk is not None:
                if chunk.finish_reason is not None:
                    finished = True
                yield Emit(chunk)

    def _whole_body_stream(self, head: HTTPResponse) -> Flow[None]:
        """A gateway that ignored `stream`: a whole completion is one chunk, anything else
        is parse_error (never an empty success)."""
        response: HTTPResponse = yield ReadBody()
        completion = self.parse_completion(response)
        yield Emit(
            ChatChunk(completion.content, completion.finish_reason, completion.usage, completion.request_id)
        )
