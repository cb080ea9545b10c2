"""SaaS-LiteLLM's Jobs API as a turnout provider: a pure codec and its sans-IO flows.

A router call is one job, created, called and completed by the server in one
request (`POST /jobs/create-and-call`, or `/jobs/create-and-call-stream`).
A multi-call job (`turnout_litellm.JobSession`) is written here as four flows
that the session drives: `create_job`, `job_call`, `job_stream` and
`complete_job`. No flow touches a socket; none retries.

Errors are FastAPI envelopes, `{"detail": "text"}` or, for request
validation, `{"detail": [{"type", "loc", "msg", "input"?, "ctx"?}]}`; the
server wraps upstream failures in a 500 whose detail carries the upstream
`Error code: NNN`, and a broken stream ends with a `{"error": ...}` frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, TypeGuard
from urllib.parse import quote

from attrs import evolve, field, frozen

from turnout import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Check,
    CodeRule,
    ConfigError,
    Deployment,
    ErrorFields,
    ErrorKind,
    ErrorTable,
    FieldError,
    Flow,
    HTTPRequest,
    HTTPResponse,
    MessageRule,
    OpenAICompatible,
    OpenAIOptions,
    ProviderError,
    RetryPolicy,
    Send,
    Usage,
    extract_openai,
)

__all__ = [
    "COMPLETE_TIMEOUT",
    "CREATE_AND_CALL_TIMEOUT",
    "CREATE_TIMEOUT",
    "DEFAULT_JOB_TYPE",
    "LITELLM_ERRORS",
    "LITELLM_RETRY",
    "LLM_CALL_TIMEOUT",
    "STREAM_TIMEOUT",
    "JobCallRequest",
    "JobResult",
    "LiteLLM",
    "upstream_status",
]

DEFAULT_JOB_TYPE = "turnout"

# Per-endpoint timeouts (seconds). Streams arrive all at once after the whole
# generation, so the streaming read timeout must cover the generation.
CREATE_TIMEOUT = 10.0
LLM_CALL_TIMEOUT = 60.0
COMPLETE_TIMEOUT = 30.0
CREATE_AND_CALL_TIMEOUT = 60.0
STREAM_TIMEOUT = 120.0

# The server wraps upstream failures: `LLM call failed: 500: Failed to call
# provider API: ... Error code: 429 - {...}`, or httpx's own wording when it
# went through the LiteLLM proxy: `Client error '429 Too Many Requests' for url ...`.
_UPSTREAM_PATTERNS = (
    re.compile(r"Error code:\s*(\d{3})\b"),
    re.compile(r"(?:Client|Server) error '(\d{3})\b"),
)


def upstream_status(text: str) -> int | None:
    """The upstream HTTP status a wrapped error message reports, if any (the innermost)."""
    for pattern in _UPSTREAM_PATTERNS:
        found = pattern.findall(text[:8192])
        if found:
            status = int(found[-1])
            return status if 400 <= status <= 599 else None
    return None


_K = ErrorKind
LITELLM_ERRORS = ErrorTable(
    codes={
        # SaaS-LiteLLM has no error codes of its own; these are the upstream
        # providers' codes it forwards verbatim in `{"error": {...}}` stream frames.
        "rate_limit_exceeded": CodeRule(_K.RATE_LIMITED, description="OpenAI upstream, in a stream frame"),
        "rate_limit_error": CodeRule(_K.RATE_LIMITED, description="Anthropic upstream, in a stream frame"),
        "overloaded_error": CodeRule(_K.UNAVAILABLE, description="Anthropic upstream, in a stream frame"),
        "api_error": CodeRule(_K.SERVER_ERROR, description="Anthropic upstream, in a stream frame"),
        "context_length_exceeded": CodeRule(_K.CONTEXT_LENGTH_EXCEEDED, description="OpenAI upstream"),
        "RESOURCE_EXHAUSTED": CodeRule(_K.RATE_LIMITED, description="Gemini upstream, in a stream frame"),
        "UNAVAILABLE": CodeRule(_K.UNAVAILABLE, description="Gemini upstream, in a stream frame"),
    },
    message_rules=[
        # 403 means one of several things; the wording tells which.
        MessageRule(r"\bcredits?\b", _K.INSUFFICIENT_CREDITS, {403}),
        MessageRule(r"\b(?:suspended|paused)\b", _K.PERMISSION_DENIED, {403}),
        MessageRule(r"does not belong to", _K.PERMISSION_DENIED, {403}),
        MessageRule(r"does not have access|not found or inactive", _K.PERMISSION_DENIED, {403}),
        # Upstream wording kept in a wrapped 500 or a stream frame.
        MessageRule(r"context_length_exceeded|maximum context length", _K.CONTEXT_LENGTH_EXCEEDED),
        MessageRule(r"content_policy_violation|content management policy", _K.CONTENT_FILTERED),
    ],
    statuses={
        400: _K.BAD_REQUEST,
        401: _K.AUTHENTICATION,
        403: _K.PERMISSION_DENIED,
        404: _K.NOT_FOUND,
        422: _K.VALIDATION,
        429: _K.RATE_LIMITED,
        500: _K.SERVER_ERROR,
        503: _K.UNAVAILABLE,
    },
)

# 429, 500, 503, timeouts and connection errors; 1 s doubling to 32 s, ±25 %, 3 attempts.
LITELLM_RETRY = RetryPolicy(
    max_retries=2,
    base=1.0,
    cap=32.0,
    multiplier=2.0,
    jitter="symmetric",
    jitter_ratio=0.25,
    retry_on=frozenset(
        {
            _K.RATE_LIMITED,
            _K.SERVER_ERROR,
            # An upstream 502 wrapped in the server's 500: still a 500 on the wire.
            _K.UPSTREAM_ERROR,
            _K.UNAVAILABLE,
            _K.TIMEOUT,
            _K.CONNECTION,
        }
    ),
    retry_statuses=frozenset({429, 500, 503}),
)

# Upstream finish reasons in OpenAI's words, so every frame shape reads the same.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
}


def _finish(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _FINISH_REASONS.get(value, value.lower())


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: Any) -> int:
    return value if _is_count(value) else 0


def _text(content: Any) -> str | None:
    """Message content as text: a string, None (a tool call), or the text parts of a list."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- error extraction ----------------------------------------------------------


def _field_errors(items: Sequence[Any]) -> tuple[FieldError, ...]:
    """pydantic v2 (`type: "missing"`) and v1 (`type: "value_error.missing"`) items alike."""
    found: list[FieldError] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        loc = item.get("loc")
        if isinstance(loc, list | tuple):
            path = ".".join(str(part) for part in loc if isinstance(part, str | int))
        else:
            path = str(loc) if isinstance(loc, str | int) else ""
        code = item.get("type")
        message = item.get("msg")
        found.append(
            FieldError(
                path[:200],
                code[:100] if isinstance(code, str) else None,
                message[:300] if isinstance(message, str) else "",
            )
        )
    return tuple(found)


def _from_detail(detail: Any) -> ErrorFields:
    if isinstance(detail, str):
        return ErrorFields(message=detail, upstream_status=upstream_status(detail))
    if isinstance(detail, list):
        details = _field_errors(detail)
        if not details:
            return ErrorFields()
        shown = "; ".join(f"{d.field}: {d.message}" if d.field else d.message for d in details[:5])
        more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
        return ErrorFields(
            message=f"request validation failed: {shown}{more}",
            details=details,
            kind=ErrorKind.VALIDATION,
        )
    if isinstance(detail, Mapping):
        # Some deployments raise HTTPException(detail={...}).
        message = next(
            (detail[k] for k in ("message", "msg", "error", "detail") if isinstance(detail.get(k), str)), None
        )
        code = next((detail[k] for k in ("code", "type") if isinstance(detail.get(k), str)), None)
        return ErrorFields(
            code=code, message=message, upstream_status=upstream_status(message) if message else None
        )
    if detail is None or isinstance(detail, bool):
        return ErrorFields()
    if isinstance(detail, int | float):
        return ErrorFields(message=str(detail))
    return ErrorFields()


def _from_error(payload: Mapping[str, Any]) -> ErrorFields:
    error = payload.get("error")
    if isinstance(error, str):
        return ErrorFields(message=error, upstream_status=upstream_status(error))
    if not isinstance(error, Mapping):
        return ErrorFields()
    fields = extract_openai(payload)
    raw_code = error.get("code")
    status: int | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        # Gemini: {"code": 429, "message", "status": "RESOURCE_EXHAUSTED"}.
        status = raw_code if 400 <= raw_code <= 599 else None
        code = _str(error.get("status")) or _str(error.get("type"))
        fields = evolve(fields, code=code)
    if status is None and fields.message:
        status = upstream_status(fields.message)
    return evolve(fields, upstream_status=status)


def extract_litellm(payload: Any) -> ErrorFields:
    """The FastAPI `detail` envelope, and the `{"error": ...}` frames of its streams."""
    if not isinstance(payload, Mapping):
        return ErrorFields()
    if "detail" in payload:
        return _from_detail(payload["detail"])
    if "error" in payload:
        return _from_error(payload)
    return extract_openai(payload)


# -- data ----------------------------------------------------------------------


@frozen
class JobCallRequest(ChatRequest):
    """A chat request made inside an open job: sent to `/jobs/{job_id}/llm-call(-stream)`."""

    job_id: str = field(kw_only=True)
    # The model alias or group for this call; None: the deployment's model.
    model: str | None = field(default=None, kw_only=True)


@frozen
class JobResult:
    """What `/jobs/{id}/complete` reported: the job's final status and its costs."""

    job_id: str
    status: str
    # As the server returns them: total_calls, successful_calls, failed_calls,
    # total_tokens, total_cost_usd, avg_latency_ms, credit_applied, credits_remaining.
    costs: Mapping[str, Any] = field(factory=dict)
    calls: tuple[Mapping[str, Any], ...] = ()
    completed_at: str | None = None

    @property
    def total_calls(self) -> int | None:
        return self._int("total_calls")

    @property
    def total_tokens(self) -> int | None:
        return self._int("total_tokens")

    @property
    def credits_remaining(self) -> int | None:
        return self._int("credits_remaining")

    @property
    def credit_applied(self) -> bool | None:
        value = self.costs.get("credit_applied")
        return value if isinstance(value, bool) else None

    @property
    def total_cost_usd(self) -> float | None:
        value = self.costs.get("total_cost_usd")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    def _int(self, name: str) -> int | None:
        value = self.costs.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- the provider ----------------------------------------------------------------


def _filled(value: str) -> bool:
    return bool(value.strip())


NonEmpty = Annotated[str, Check(_filled, "must be a non-empty string")]


@frozen
class LiteLLMOptions(OpenAIOptions):
    """A SaaS-LiteLLM deployment's options: the team its key belongs to (required),
    the job type of router calls, and the codec's `headers` and `params`."""

    team_id: NonEmpty = field(kw_only=True)
    job_type: NonEmpty = field(default=DEFAULT_JOB_TYPE, kw_only=True)


class LiteLLM(OpenAICompatible):
    """SaaS-LiteLLM: one router call is one job; multi-call jobs go through `JobSession`."""

    name = "litellm"
    # Self-hosted: there is no public URL (e.g. http://localhost:8003/api).
    default_base_url = ""
    chat_path = "/jobs/create-and-call"
    stream_path: ClassVar[str] = "/jobs/create-and-call-stream"
    # Streams end with [DONE] (OpenAI upstreams) or just a clean close (Anthropic, Gemini).
    clean_close_ends_stream = True
    options_type = LiteLLMOptions
    error_table = LITELLM_ERRORS
    retry_policy = LITELLM_RETRY

    # -- configuration -------------------------------------------------------

    def check_deployment(self, deployment: Deployment, path: str) -> None:
        super().check_deployment(deployment, path)  # the options, typed (team_id required)
        if not deployment.base_url:
            raise ConfigError(
                "SaaS-LiteLLM has no public URL: set it to your server's API root "
                "(e.g. http://localhost:8003/api)",
                path=f"{path}.base_url",
            )
        if not deployment.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                "must be an http:// or https:// URL", path=f"{path}.base_url", value=deployment.base_url
            )

    def litellm_options(self, deployment: Deployment) -> LiteLLMOptions:
        return self.typed_options(deployment, LiteLLMOptions)

    def team_id(self, deployment: Deployment) -> str:
        return self.litellm_options(deployment).team_id

    def job_type(self, deployment: Deployment) -> str:
        return self.litellm_options(deployment).job_type

    # -- requests ------------------------------------------------------------

    def call_params(self, deployment: Deployment, request: ChatRequest) -> dict[str, Any]:
        """Sampling parameters (temperature, max_tokens, top_p, stop, job_metadata, ...):
        the deployment's `params` option, then the call's own."""
        params: dict[str, Any] = {}
        defaults = deployment.options.get("params")
        if isinstance(defaults, Mapping):
            params.update(defaults)
        params.update(request.params)
        # The endpoint decides whether the answer streams.
        params.pop("stream", None)
        stop = params.get("stop")
        if isinstance(stop, str):
            params["stop"] = [stop]  # the server takes a list only
        return params

    def payload(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        messages = [m.to_wire() for m in request.messages]
        params = self.call_params(deployment, request)
        if isinstance(request, JobCallRequest):
            # Job-level fields belong to /jobs/create, not to a call.
            for name in ("team_id", "job_type", "job_metadata", "user_id"):
                params.pop(name, None)
            return {**params, "model": request.model or deployment.model, "messages": messages}
        return {
            **params,
            "team_id": self.team_id(deployment),
            "job_type": self.job_type(deployment),
            "model": deployment.model,
            "messages": messages,
        }

    def request(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        base = self.base_url(deployment)
        if isinstance(request, JobCallRequest):
            url = f"{base}/jobs/{quote(request.job_id, safe='')}/llm-call" + ("-stream" if stream else "")
            timeout = STREAM_TIMEOUT if stream else LLM_CALL_TIMEOUT
        else:
            url = base + (self.stream_path if stream else self.chat_path)
            timeout = STREAM_TIMEOUT if stream else CREATE_AND_CALL_TIMEOUT
        headers = self.headers(deployment)
        if stream:
            headers["accept"] = "text/event-stream"
        return HTTPRequest.json(
            "POST", url, self.payload(deployment, request, stream=stream), headers=headers, timeout=timeout
        )

    # -- responses -----------------------------------------------------------

    def _json_object(self, response: HTTPResponse) -> Mapping[str, Any]:
        if response.truncated:
            raise self.parse_error("the response body is larger than allowed", response)
        try:
            payload = json.loads(response.body)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
            raise self.parse_error("the response body is not JSON", response) from None
        if not isinstance(payload, Mapping):
            raise self.parse_error("the response body is not a JSON object", response)
        return payload

    def parse_completion(self, response: HTTPResponse) -> ChatResponse:
        """`create-and-call` (`job_id`) and `llm-call` (`call_id`) answers alike:
        `{"response": {"content", "finish_reason"}, "metadata": {"tokens_used", "latency_ms", "model"}}`."""
        payload = self._json_object(response)
        if "choices" in payload:
            # A whole OpenAI completion (a proxy answering for the server).
            return super().parse_completion(response)
        answer = payload.get("response")
        if not isinstance(answer, Mapping):
            if "detail" in payload or "error" in payload:
                # An error reported with a 2xx status.
                raise self.normalize(status=None, headers=response.headers, body=payload)
            raise self.parse_error("the response has no `response` object", response)
        if payload.get("status") == "failed":
            message = _str(payload.get("error_message")) or "the job failed"
            raise self.normalize(status=None, headers=response.headers, body={"detail": message})
        content = _text(answer.get("content"))
        if content is None:
            raise self.parse_error("the response's content is not text", response)
        metadata = payload.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        tokens = metadata.get("tokens_used")
        usage = Usage(0, 0, tokens) if _is_count(tokens) else None
        return ChatResponse(
            content=content,
            finish_reason=_str(answer.get("finish_reason")),
            usage=usage,
            model=_str(metadata.get("model")),
            request_id=_str(payload.get("job_id")) or _str(payload.get("call_id")),
        )

    def chunk_from(self, payload: Mapping[str, Any]) -> ChatChunk | None:
        """Frames are the upstream's own JSON: OpenAI, Anthropic or Gemini."""
        if "choices" in payload:
            return super().chunk_from(payload)
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta")
            text = delta.get("text") if isinstance(delta, Mapping) else None
            return ChatChunk(text) if isinstance(text, str) and text else None
        if kind == "message_delta":
            delta = payload.get("delta")
            finish = _finish(delta.get("stop_reason")) if isinstance(delta, Mapping) else None
            usage_in = payload.get("usage")
            usage = None
            if isinstance(usage_in, Mapping):
                prompt, completion = (
                    _count(usage_in.get("input_tokens")),
                    _count(usage_in.get("output_tokens")),
                )
                usage = Usage(prompt, completion, prompt + completion)
            if finish is None and usage is None:
                return None
            return ChatChunk("", finish, usage)
        candidates = payload.get("candidates")
        if isinstance(candidates, list):
            return self._gemini_chunk(candidates, payload.get("usageMetadata"))
        return None

    @staticmethod
    def _gemini_chunk(candidates: list[Any], usage_in: Any) -> ChatChunk | None:
        text = ""
        finish = None
        first = candidates[0] if candidates else None
        if isinstance(first, Mapping):
            content = first.get("content")
            parts = content.get("parts") if isinstance(content, Mapping) else None
            if isinstance(parts, list):
                text = _text(parts) or ""
            finish = _finish(first.get("finishReason"))
        usage = None
        if isinstance(usage_in, Mapping):
            prompt = _count(usage_in.get("promptTokenCount"))
            completion = _count(usage_in.get("candidatesTokenCount"))
            usage = Usage(prompt, completion, _count(usage_in.get("totalTokenCount")) or prompt + completion)
        if not text and finish is None and usage is None:
            return None
        return ChatChunk(text, finish, usage)

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """`{"error": "text"}` (the server's own) or `{"error": {...}}` (an upstream's)."""
        error = payload.get("error")
        if not error or not isinstance(error, str | Mapping):
            return None
        return self.normalize(status=None, headers=response.headers, body=payload)

    # -- errors --------------------------------------------------------------

    def extract_error(self, payload: Any) -> ErrorFields:
        return extract_litellm(payload)

    # -- job flows (driven by JobSession; never retried here) ----------------

    def create_job(
        self,
        deployment: Deployment,
        *,
        job_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Flow[str]:
        """`POST /jobs/create` → the new job's id."""
        body: dict[str, Any] = {
            "team_id": self.team_id(deployment),
            "job_type": job_type or self.job_type(deployment),
            "metadata": dict(metadata or {}),
        }
        if user_id is not None:
            body["user_id"] = user_id
        response: HTTPResponse = yield Send(
            HTTPRequest.json(
                "POST",
                f"{self.base_url(deployment)}/jobs/create",
                body,
                headers=self.headers(deployment),
                timeout=CREATE_TIMEOUT,
            )
        )
        if not response.ok:
            raise self.error_from(response)
        job_id = self._json_object(response).get("job_id")
        if not isinstance(job_id, str) or not job_id or len(job_id) > 200:
            raise self.parse_error("the created job has no job_id", response)
        return job_id

    def job_call(self, deployment: Deployment, request: JobCallRequest) -> Flow[ChatResponse]:
        """`POST /jobs/{id}/llm-call` → the answer (request_id = the call's id)."""
        return self.chat(deployment, request)

    def job_stream(self, deployment: Deployment, request: JobCallRequest) -> Flow[None]:
        """`POST /jobs/{id}/llm-call-stream`: emits the chunks."""
        return self.stream(deployment, request)

    def complete_job(
        self,
        deployment: Deployment,
        job_id: str,
        *,
        status: str = "completed",
        error_message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Flow[JobResult]:
        """`POST /jobs/{id}/complete`. Not idempotent on the server (a repeat charges
        again): send it once and never retry it."""
        if status not in ("completed", "failed"):
            raise ValueError(f"a job is completed as 'completed' or 'failed', not {status!r}")
        body: dict[str, Any] = {"status": status, "error_message": error_message}
        if metadata:
            body["metadata"] = dict(metadata)
        response: HTTPResponse = yield Send(
            HTTPRequest.json(
                "POST",
                f"{self.base_url(deployment)}/jobs/{quote(job_id, safe='')}/complete",
                body,
                headers=self.headers(deployment),
                timeout=COMPLETE_TIMEOUT,
            )
        )
        if not response.ok:
            raise self.error_from(response)
        payload = self._json_object(response)
        costs = payload.get("costs")
        calls = payload.get("calls")
        return JobResult(
            job_id=_str(payload.get("job_id")) or job_id,
            status=_str(payload.get("status")) or status,
            costs=dict(costs) if isinstance(costs, Mapping) else {},
            calls=tuple(dict(c) for c in calls if isinstance(c, Mapping)) if isinstance(calls, list) else (),
            completed_at=_str(payload.get("completed_at")),
        )
