"""SaaS-LiteLLM's Jobs API as a turnout provider: a pure codec and its sans-IO flows.

A router call is one job, created, called and completed by the server in one
request (`POST /jobs/create-and-call`, or `/jobs/create-and-call-stream`).
A multi-call job (`turnout_litellm.JobSession`) is written here as four flows
that the session drives: `create_job`, `job_call`, `job_stream` and
`complete_job`. No flow touches a socket; none retries.

What the real server (v1.0.2) does and this codec answers for:

- a call is not idempotent: the server finishes it, and charges the job, even
  after the client gave up waiting. create-and-call and llm-call (and their
  streams) are declared not safe to repeat, so after a read timeout or a
  connection lost once the request was sent they are never sent to the same
  deployment again; `/complete` is never repeated at all;
- it carries only a few parameters (`CALL_PARAMETERS`, `JOB_CALL_PARAMETERS`)
  and drops the rest silently, and drops the tool calls of an answer: a request
  needing more is reported by `unsupported`, so the router never sends it here;
- it sends job statuses in upper case (`COMPLETED`), upstream finish reasons
  as the upstream said them (`end_turn`), and only a total of tokens.

Errors and their table live in `turnout_litellm.errors`, stream frames in
`turnout_litellm.frames`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeGuard
from urllib.parse import quote

from attrs import field, frozen

from turnout import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Check,
    ConfigError,
    Deployment,
    ErrorFields,
    Flow,
    HTTPRequest,
    HTTPResponse,
    OpenAICompatible,
    OpenAIOptions,
    ProviderError,
    Send,
    Usage,
    finish_reason,
    text_of,
)

from .errors import LITELLM_ERRORS, LITELLM_RETRY, extract_litellm, upstream_status
from .frames import anthropic_chunk, gemini_chunk, hold_usage

__all__ = [
    "CALL_PARAMETERS",
    "COMPLETE_TIMEOUT",
    "CREATE_AND_CALL_TIMEOUT",
    "CREATE_TIMEOUT",
    "DEFAULT_JOB_TYPE",
    "JOB_CALL_PARAMETERS",
    "LITELLM_ERRORS",
    "LITELLM_RETRY",
    "LLM_CALL_TIMEOUT",
    "STREAM_TIMEOUT",
    "JobCallRequest",
    "JobResult",
    "LiteLLM",
    "check_job_id",
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

# The call parameters the server carries to every upstream (OpenAI, Anthropic and
# Gemini aliases alike), besides the identity fields turnout sets itself, or keeps
# on the job (`job_metadata`, `user_id`, `purpose`, `call_metadata`). Anything else
# (`response_format`, `seed`, `n`, penalties, ...) it drops, silently or for some
# upstreams only: a request that needs it is never sent here.
CALL_PARAMETERS = frozenset(
    {"temperature", "max_tokens", "top_p", "stop", "job_metadata", "user_id", "purpose"}
)
JOB_CALL_PARAMETERS = frozenset({"temperature", "max_tokens", "top_p", "stop", "purpose", "call_metadata"})
# Parameters `turnout` already reports as features ("tools", "response_format").
_FEATURE_PARAMETERS = frozenset({"tools", "functions", "tool_choice", "function_call", "response_format"})
# The endpoint decides whether an answer streams.
_IGNORED_PARAMETERS = frozenset({"stream"})


def check_job_id(job_id: Any) -> str:
    """A job id as the server accepts it (a UUID), else ValueError: anything else gets a
    plain-text 500 from the server, which would look like its own failure."""
    try:
        uuid.UUID(job_id)
    except (TypeError, ValueError, AttributeError):
        shown = repr(job_id) if len(repr(job_id)) <= 60 else repr(job_id)[:57] + "..."
        raise ValueError(f"a SaaS-LiteLLM job id is a UUID, not {shown}") from None
    return str(job_id)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- data ----------------------------------------------------------------------


def _job_id(instance: Any, attribute: Any, value: Any) -> None:
    check_job_id(value)


@frozen
class JobCallRequest(ChatRequest):
    """A chat request made inside an open job: sent to `/jobs/{job_id}/llm-call(-stream)`.
    `job_id` must be a UUID (ValueError otherwise, before anything is sent)."""

    job_id: str = field(kw_only=True, validator=_job_id)
    # The model alias or group for this call; None: the deployment's model.
    model: str | None = field(default=None, kw_only=True)


def _lower(value: str) -> str:
    return value.lower()


@frozen
class JobResult:
    """What `/jobs/{id}/complete` reported: the job's final status and its costs.

    `status` is `"completed"` or `"failed"`, in lower case whatever the server's
    casing (v1.0.2 answers `"COMPLETED"`)."""

    job_id: str
    status: str = field(converter=_lower)
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
    # Content parts are passed on verbatim; tool calls are dropped from the answers,
    # and `response_format` reaches OpenAI upstreams only.
    capabilities = frozenset({"content_parts"})
    error_table = LITELLM_ERRORS
    retry_policy = LITELLM_RETRY

    # -- configuration -------------------------------------------------------

    def check_deployment(self, deployment: Deployment, path: str) -> None:
        super().check_deployment(deployment, path)  # the options, typed (team_id required)
        known = CALL_PARAMETERS | JOB_CALL_PARAMETERS
        for name in self.openai_options(deployment).params:
            if name not in known:
                raise ConfigError(
                    f"SaaS-LiteLLM drops this parameter; it carries {', '.join(sorted(known))}",
                    path=f"{path}.options.params.{name}",
                    value=name,
                )
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

    def unsupported(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> list[str]:
        """Tools (the answers drop tool calls), `response_format`, and any parameter the
        endpoint does not carry to every upstream: `parameter 'seed'`."""
        missing = super().unsupported(deployment, request, stream=stream)
        carried = JOB_CALL_PARAMETERS if isinstance(request, JobCallRequest) else CALL_PARAMETERS
        skip = carried | _FEATURE_PARAMETERS | _IGNORED_PARAMETERS
        return missing + [f"parameter {name!r}" for name in request.params if name not in skip]

    # -- requests ------------------------------------------------------------

    def call_params(self, deployment: Deployment, request: ChatRequest) -> dict[str, Any]:
        """Call parameters (temperature, max_tokens, top_p, stop, job_metadata, ...): those
        of the deployment's `params` option this endpoint carries, then the call's own."""
        carried = JOB_CALL_PARAMETERS if isinstance(request, JobCallRequest) else CALL_PARAMETERS
        defaults = self.openai_options(deployment).params
        params: dict[str, Any] = {k: v for k, v in defaults.items() if k in carried}
        params.update(request.params)
        for name in _IGNORED_PARAMETERS:
            params.pop(name, None)
        stop = params.get("stop")
        if isinstance(stop, str):
            params["stop"] = [stop]  # the server takes a list only
        return params

    def payload(self, deployment: Deployment, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        messages = [m.to_wire() for m in request.messages]
        params = self.call_params(deployment, request)
        if isinstance(request, JobCallRequest):
            identity: dict[str, Any] = {"model": request.model or deployment.model, "messages": messages}
        else:
            identity = {
                "team_id": self.team_id(deployment),
                "job_type": self.job_type(deployment),
                "model": deployment.model,
                "messages": messages,
            }
        # The deployment's identity wins over a parameter; the caller's extra_body over all.
        return {**params, **identity, **request.extra_body}

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
        # Not safe to repeat: the server finishes the call and charges it even when
        # the client has gone (a read timeout, a dropped connection).
        return HTTPRequest.json(
            "POST",
            url,
            self.payload(deployment, request, stream=stream),
            headers=headers,
            timeout=timeout,
            repeatable=False,
        )

    # -- responses -----------------------------------------------------------

    def _json_object(self, response: HTTPResponse) -> Mapping[str, Any]:
        payload = self.json_body(response)
        if not isinstance(payload, Mapping):
            raise self.parse_error("the response body is not a JSON object", response)
        return payload

    def parse_completion(self, response: HTTPResponse) -> ChatResponse:
        """`create-and-call` (`job_id`) and `llm-call` (`call_id`) answers alike:
        `{"response": {"content", "finish_reason"}, "metadata": {"tokens_used", "latency_ms", "model"}}`.
        The finish reason is given in OpenAI's words (`end_turn` is `stop`); only the
        total of tokens is reported (prompt and completion are unknown: None)."""
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
        status = payload.get("status")
        if isinstance(status, str) and status.lower() == "failed":
            message = _str(payload.get("error_message")) or "the job failed"
            raise self.normalize(status=None, headers=response.headers, body={"detail": message})
        content = text_of(answer.get("content"))
        if content is None:
            raise self.parse_error("the response's content is not text", response)
        metadata = payload.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        tokens = metadata.get("tokens_used")
        return ChatResponse(
            content=content,
            finish_reason=finish_reason(answer.get("finish_reason")),
            usage=Usage(total_tokens=tokens) if _is_count(tokens) else None,
            model=_str(metadata.get("model")),
            request_id=_str(payload.get("job_id")) or _str(payload.get("call_id")),
            message={"role": "assistant", "content": content},
            raw=payload,
            headers=dict(response.headers),
        )

    def chunk_from(self, payload: Mapping[str, Any]) -> ChatChunk | None:
        """Frames are the upstream's own JSON: OpenAI, Anthropic or Gemini."""
        if "choices" in payload:
            return super().chunk_from(payload)
        if "type" in payload:
            return anthropic_chunk(payload)
        return gemini_chunk(payload)

    def stream_error(self, payload: Mapping[str, Any], response: HTTPResponse) -> ProviderError | None:
        """`{"error": "text"}` (the server's own) or `{"error": {...}}` (an upstream's).
        Either comes once the call has started: it may have run upstream (and be
        charged), so it is never repeated on the same deployment."""
        error = payload.get("error")
        if not error or not isinstance(error, str | Mapping):
            return None
        found = self.normalize(status=None, headers=response.headers, body=payload)
        found.retryable = False
        found.maybe_processed = True
        if _BROKEN_STREAM in found.message:
            found.message += f" ({_BROKEN_STREAM_HINT})"
            found.args = (found.message,)
        return found

    def stream(self, deployment: Deployment, request: ChatRequest) -> Flow[None]:
        return hold_usage(super().stream(deployment, request))

    # -- errors --------------------------------------------------------------

    def extract_error(self, payload: Any) -> ErrorFields:
        return extract_litellm(payload)

    def error_from(self, response: HTTPResponse) -> ProviderError:
        """The normalized error; FastAPI's bare `Not Found` (no route there) says what to
        check, as it is not the server's `Job not found`."""
        error = super().error_from(response)
        if response.status == 404 and error.message == "Not Found":
            error.message = f"Not Found ({_NO_ROUTE})"
            error.args = (error.message,)
        return error

    # -- job flows (driven by JobSession; never retried here) ----------------

    def create_job(
        self,
        deployment: Deployment,
        *,
        job_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Flow[str]:
        """`POST /jobs/create` → the new job's id. Safe to repeat: a job created by a
        request whose answer was lost stays pending and costs nothing."""
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
                repeatable=True,
            )
        )
        if not response.ok:
            raise self.error_from(response)
        job_id = self._json_object(response).get("job_id")
        try:
            return check_job_id(job_id)
        except ValueError:
            raise self.parse_error("the created job's job_id is not a UUID", response) from None

    def job_call(self, deployment: Deployment, request: JobCallRequest) -> Flow[ChatResponse]:
        """`POST /jobs/{id}/llm-call` → the answer (request_id = the call's id)."""
        return self.chat(deployment, request)

    def job_stream(self, deployment: Deployment, request: JobCallRequest) -> Flow[None]:
        """`POST /jobs/{id}/llm-call-stream`: emits the chunks. Broken on the server up to
        v1.0.2 at least: every such stream ends in an error frame."""
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
        again, every other time): send it once and never retry it."""
        if status not in ("completed", "failed"):
            raise ValueError(f"a job is completed as 'completed' or 'failed', not {status!r}")
        check_job_id(job_id)
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
                repeatable=False,
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


_NO_ROUTE = (
    "no such endpoint: check the deployment's base_url, the server's API root with its /api "
    "(e.g. http://localhost:8003/api)"
)
# What v1.0.2's llm-call-stream says on every call, after the upstream call ran.
_BROKEN_STREAM = "does not support the asynchronous context manager protocol"
_BROKEN_STREAM_HINT = (
    "SaaS-LiteLLM's /jobs/{id}/llm-call-stream is broken on this server (v1.0.2): "
    "use job.chat, or a router's stream (create-and-call-stream)"
)
