"""An emulator of SaaS-LiteLLM's Jobs API, for tests and `turnout serve-fake`.

It keeps jobs, their calls and the team's credits, and answers as the FastAPI
server does: `{"detail": ...}` envelopes, pydantic v2 validation errors, 500s
wrapping an upstream `Error code: NNN`, a plain-text `Internal Server Error`
for a job id that is not a UUID, and streams whose frames are the upstream's
own JSON — Anthropic frames for models named `anthropic/...`, Gemini frames
for `gemini/...`, OpenAI chunks (ending in `[DONE]`) otherwise — preceded by a
`: keepalive` comment on the create-and-call stream.

It records every `/complete` a job receives (`completions(job_id)`), so tests
can assert that a failed job was completed exactly once; as on the real
server, each `completed` completion charges a credit. Thread-safe.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field

from turnout.emulation import (
    DemoDeployment,
    DemoScenario,
    EmulatedRequest,
    EmulatedResponse,
    Emulator,
    Fault,
    sse,
)

__all__ = ["EmulatedJob", "LiteLLMEmulator"]

_JOB_PATH = re.compile(r"/jobs/([^/]+)/(llm-call-stream|llm-call|complete)$")
_COMPLETED_AT = "2025-01-01T00:00:00"
_LATENCY_MS = 42
_PROMPT_TOKENS = 5

# Status of each named error, and its FastAPI detail (None: rendered specially).
_STATUS_DETAILS: Mapping[str, tuple[int, Any]] = {
    "400": (400, "Invalid message format"),
    "401": (401, "Invalid API key"),
    "403": (403, "Team 'team_test' is suspended. Contact your administrator."),
    "404": (404, "Job not found"),
    "422": (422, None),
    "429": (429, "Rate limit exceeded"),
    "500": (500, "Internal server error"),
    "503": (503, "Service temporarily unavailable"),
}

_UPSTREAM_BODIES = {
    429: "{'error': {'message': 'Rate limit reached for requests', 'type': 'requests', "
    "'param': None, 'code': 'rate_limit_exceeded'}}",
    500: "{'error': {'message': 'The server had an error while processing your request.', "
    "'type': 'server_error', 'param': None, 'code': None}}",
    502: "{'error': {'message': 'Bad gateway.', 'type': 'server_error', 'param': None, 'code': None}}",
    503: "{'error': {'message': 'The engine is currently overloaded, please try again later', "
    "'type': 'server_error', 'param': None, 'code': None}}",
    504: "{'error': {'message': 'Request timed out.', 'type': 'server_error', 'param': None, 'code': None}}",
}


def _upstream_detail(status: int) -> str:
    body = _UPSTREAM_BODIES.get(status, "{'error': {'message': 'upstream failure'}}")
    return f"LLM call failed: 500: Failed to call provider API: Error code: {status} - {body}"


_SCENARIOS: Mapping[str, tuple[int, Any]] = {
    "credits": (
        403,
        "Insufficient credits. Team has 0 credits remaining, but 1 required. Allocated: 100, Used: 100",
    ),
    "no_credit_account": (403, "No credit account found for team 'team_test'"),
    "team_suspended": (403, "Team 'team_test' is suspended. Contact your administrator."),
    "team_paused": (403, "Team 'team_test' is paused. Contact your administrator."),
    "wrong_team": (403, "API key does not belong to team 'team_test'"),
    "job_other_team": (403, "Job does not belong to your team"),
    "model_access": (403, "Team 'team_test' does not have access to model group 'ChatAgent'"),
    "model_inactive": (403, "Model group 'ChatAgent' not found or inactive"),
    "missing_auth": (401, "Missing Authorization header. Expected: 'Authorization: Bearer sk-xxx...'"),
    "job_not_found": (404, "Job not found"),
    "team_not_found": (404, "Team 'team_test' not found"),
    "route_not_found": (404, "Not Found"),
    "validation_v2": (422, None),
    "validation_v1": (422, None),
    "upstream_429": (500, _upstream_detail(429)),
    "upstream_500": (500, _upstream_detail(500)),
    "upstream_502": (500, _upstream_detail(502)),
    "upstream_503": (500, _upstream_detail(503)),
    "upstream_504": (500, _upstream_detail(504)),
    "proxy_429": (
        500,
        "LLM call failed: Client error '429 Too Many Requests' for url "
        "'http://litellm-proxy:4000/chat/completions'",
    ),
    "plain_500": (500, None),
}

# ErrorKind values, rendered as the server would produce them.
_KINDS: Mapping[str, str] = {
    "bad_request": "400",
    "authentication": "401",
    "permission_denied": "team_suspended",
    "insufficient_credits": "credits",
    "not_found": "404",
    "validation": "validation_v2",
    "rate_limited": "429",
    "server_error": "500",
    "unavailable": "503",
    "upstream_error": "upstream_502",
    "timeout": "upstream_504",
}

_V2_ERRORS = [
    {
        "type": "missing",
        "loc": ["body", "team_id"],
        "msg": "Field required",
        "input": {"job_type": "chat", "model": "ChatAgent"},
    },
    {
        "type": "string_type",
        "loc": ["body", "messages", 0, "content"],
        "msg": "Input should be a valid string",
        "input": 42,
    },
    {
        "type": "less_than_equal",
        "loc": ["body", "temperature"],
        "msg": "Input should be less than or equal to 2",
        "input": 7,
        "ctx": {"le": 2.0},
    },
]
_V1_ERRORS = [
    {"loc": ["body", "messages"], "msg": "field required", "type": "value_error.missing"},
    {
        "loc": ["body", "stop", 1],
        "msg": "str type expected",
        "type": "type_error.str",
    },
]


@define
class EmulatedJob:
    """One job's server-side state."""

    job_id: str
    team_id: str
    job_type: str
    status: str = "pending"
    # One entry per llm-call: {"call_id", "model", "tokens", "error"}.
    calls: list[dict[str, Any]] = field(factory=list)
    # Every /complete received, in order: {"status", "error_message"}.
    completions: list[dict[str, Any]] = field(factory=list)
    credits_charged: int = 0


class LiteLLMEmulator(Emulator):
    """SaaS-LiteLLM's Jobs API. `keys` maps virtual keys to their team (None: any
    key, of the team the request names); `credits` is the team's balance."""

    provider = "litellm"
    # Self-hosted, so no default base URL says it: the API is under `http://host:8003/api`.
    base_path = "/api"

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        credits: int = 1000,
        team_status: str = "active",
        model_groups: Sequence[str] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.keys = dict(keys) if keys is not None else None
        self.credits_remaining = credits
        self.credits_allocated = credits
        self.team_status = team_status
        # Model aliases/groups the team may use (None: any).
        self.model_groups = set(model_groups) if model_groups is not None else None
        self.jobs: dict[str, EmulatedJob] = {}
        self._counter = 0
        # Requests per endpoint name ("create", "llm-call", "complete", ...).
        self.hits: dict[str, int] = {}

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("ChatAgent", "sk-demo", options={"team_id": "team_demo"})

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        return (DemoScenario("breaker", "SaaS-LiteLLM answers every request 503.", "mythicdot"),)

    # -- bookkeeping ---------------------------------------------------------

    def _next_uuid(self) -> str:
        self._counter += 1
        return str(uuid.UUID(int=self._counter))

    def job(self, job_id: str) -> EmulatedJob:
        with self._lock:
            return self.jobs[job_id]

    def completions(self, job_id: str) -> list[dict[str, Any]]:
        """Every `/complete` the job received, in order."""
        with self._lock:
            return [dict(c) for c in self.jobs[job_id].completions]

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    def _costs(self, job: EmulatedJob) -> dict[str, Any]:
        calls = job.calls
        ok = [c for c in calls if not c["error"]]
        tokens = sum(c["tokens"] for c in calls)
        return {
            "total_calls": len(calls),
            "successful_calls": len(ok),
            "failed_calls": len(calls) - len(ok),
            "total_tokens": tokens,
            "total_cost_usd": round(tokens * 0.000002, 6),
            "avg_latency_ms": _LATENCY_MS if calls else 0,
            "credit_applied": job.credits_charged > 0,
            "credits_remaining": self.credits_remaining,
        }

    def _charge(self, job: EmulatedJob) -> None:
        # As the DESIGN records for the real server: each `completed` completion charges.
        self.credits_remaining -= 1
        job.credits_charged += 1

    # -- the API -------------------------------------------------------------

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        with self._lock:
            return self._respond(request, fault)

    def _respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        path = request.path.rstrip("/")
        job_match = _JOB_PATH.search(path)
        if path.endswith("/jobs/create-and-call-stream"):
            endpoint = "create-and-call-stream"
        elif path.endswith("/jobs/create-and-call"):
            endpoint = "create-and-call"
        elif path.endswith("/jobs/create"):
            endpoint = "create"
        elif job_match is not None:
            endpoint = job_match.group(2)
        else:
            return self._detail(404, "Not Found")
        if request.method != "POST":
            return self._detail(405, "Method Not Allowed")
        self._hit(endpoint)
        team = self._authenticate(request)
        if isinstance(team, EmulatedResponse):
            return team
        payload = request.json()
        if request.body and payload is None:
            return self._validation(
                [
                    {
                        "type": "json_invalid",
                        "loc": ["body", 0],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": "Expecting value"},
                    }
                ]
            )
        if not isinstance(payload, Mapping):
            return self._validation(
                [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
            )
        if job_match is not None:
            job_id = job_match.group(1)
            try:
                uuid.UUID(job_id)
            except ValueError:
                # The real server calls uuid.UUID(job_id) unguarded.
                return self._plain_500()
            job = self.jobs.get(job_id)
            if job is None:
                return self._detail(404, "Job not found")
            if team is not None and job.team_id != team:
                return self._detail(403, "Job does not belong to your team")
            if endpoint == "complete":
                return self._complete(job, payload)
            return self._call(job, payload, fault, stream=endpoint == "llm-call-stream")
        return self._create(endpoint, team, payload, fault)

    def _authenticate(self, request: EmulatedRequest) -> str | EmulatedResponse | None:
        header = request.headers.get("authorization")
        if not header:
            return self.render_error("missing_auth")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return self._detail(
                401, "Invalid Authorization header format. Expected: 'Authorization: Bearer sk-xxx...'"
            )
        if self.keys is None:
            return None
        team = self.keys.get(parts[1])
        if team is None:
            return self._detail(401, "Invalid API key")
        return team

    def _check_team(self, team: str | None, team_id: str) -> EmulatedResponse | None:
        if team is not None and team_id != team:
            return self._detail(403, f"API key does not belong to team '{team_id}'")
        if self.team_status != "active":
            return self._detail(403, f"Team '{team_id}' is {self.team_status}. Contact your administrator.")
        if self.credits_remaining < 1:
            return self._detail(
                403,
                f"Insufficient credits. Team has {self.credits_remaining} credits remaining, "
                f"but 1 required. Allocated: {self.credits_allocated}, "
                f"Used: {self.credits_allocated - self.credits_remaining}",
            )
        return None

    def _check_model(self, team_id: str, model: str) -> EmulatedResponse | None:
        if self.model_groups is not None and model not in self.model_groups:
            return self._detail(403, f"Team '{team_id}' does not have access to model group '{model}'")
        return None

    def _create(
        self, endpoint: str, team: str | None, payload: Mapping[str, Any], fault: Fault
    ) -> EmulatedResponse:
        required = ["team_id", "job_type"]
        if endpoint != "create":
            required += ["model", "messages"]
        errors = [
            {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": dict(payload)}
            for name in required
            if name not in payload
        ]
        errors += self._check_types(payload)
        if errors:
            return self._validation(errors)
        team_id = str(payload["team_id"])
        refused = self._check_team(team, team_id)
        if refused is not None:
            return refused
        job = EmulatedJob(self._next_uuid(), team_id, str(payload["job_type"]))
        self.jobs[job.job_id] = job
        if endpoint == "create":
            return EmulatedResponse.json(
                200, {"job_id": job.job_id, "status": job.status, "created_at": _COMPLETED_AT}
            )
        job.status = "in_progress"
        model = str(payload["model"])
        refused = self._check_model(team_id, model)
        if refused is not None:
            job.status = "failed"
            return refused
        text = self._answer(payload)
        if endpoint == "create-and-call-stream":
            return self._stream(job, model, text, fault, keepalive=True, complete=True)
        call = self._record_call(job, model, text, None)
        job.status = "completed"
        self._charge(job)
        return EmulatedResponse.json(
            200,
            {
                "job_id": job.job_id,
                "status": "completed",
                "response": {"content": text, "finish_reason": "stop"},
                "metadata": {"tokens_used": call["tokens"], "latency_ms": _LATENCY_MS, "model": model},
                "costs": self._costs(job),
                "completed_at": _COMPLETED_AT,
            },
        )

    def _call(
        self, job: EmulatedJob, payload: Mapping[str, Any], fault: Fault, *, stream: bool
    ) -> EmulatedResponse:
        errors = [
            {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": dict(payload)}
            for name in ("model", "messages")
            if name not in payload
        ]
        errors += self._check_types(payload)
        if errors:
            return self._validation(errors)
        if job.status == "pending":
            job.status = "in_progress"
        model = str(payload["model"])
        refused = self._check_model(job.team_id, model)
        if refused is not None:
            return refused
        text = self._answer(payload)
        if stream:
            return self._stream(job, model, text, fault, keepalive=False, complete=False)
        call = self._record_call(job, model, text, None)
        return EmulatedResponse.json(
            200,
            {
                "call_id": call["call_id"],
                "response": {"content": text, "finish_reason": "stop"},
                "metadata": {"tokens_used": call["tokens"], "latency_ms": _LATENCY_MS, "model": model},
            },
        )

    def _complete(self, job: EmulatedJob, payload: Mapping[str, Any]) -> EmulatedResponse:
        status = payload.get("status")
        if status not in ("completed", "failed"):
            return self._validation(
                [
                    {
                        "type": "literal_error",
                        "loc": ["body", "status"],
                        "msg": "Input should be 'completed' or 'failed'",
                        "input": status,
                        "ctx": {"expected": "'completed' or 'failed'"},
                    }
                ]
            )
        message = payload.get("error_message")
        job.completions.append({"status": status, "error_message": message})
        job.status = str(status)
        if status == "completed":
            self._charge(job)
        return EmulatedResponse.json(
            200,
            {
                "job_id": job.job_id,
                "status": job.status,
                "completed_at": _COMPLETED_AT,
                "costs": self._costs(job),
                "calls": [
                    {
                        "call_id": c["call_id"],
                        "purpose": None,
                        "model_group": c["model"],
                        "tokens": c["tokens"],
                        "latency_ms": _LATENCY_MS,
                        "error": c["error"],
                    }
                    for c in job.calls
                ],
            },
        )

    @staticmethod
    def _check_types(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        messages = payload.get("messages")
        if "messages" in payload and not isinstance(messages, list):
            errors.append(
                {
                    "type": "list_type",
                    "loc": ["body", "messages"],
                    "msg": "Input should be a valid list",
                    "input": messages,
                }
            )
        elif isinstance(messages, list):
            for index, message in enumerate(messages):
                if not isinstance(message, Mapping):
                    errors.append(
                        {
                            "type": "dict_type",
                            "loc": ["body", "messages", index],
                            "msg": "Input should be a valid dictionary",
                            "input": message,
                        }
                    )
        temperature = payload.get("temperature")
        if temperature is not None and (
            isinstance(temperature, bool) or not isinstance(temperature, int | float)
        ):
            errors.append(
                {
                    "type": "float_parsing",
                    "loc": ["body", "temperature"],
                    "msg": "Input should be a valid number, unable to parse string as a number",
                    "input": temperature,
                }
            )
        stop = payload.get("stop")
        if stop is not None and not isinstance(stop, list):
            errors.append(
                {
                    "type": "list_type",
                    "loc": ["body", "stop"],
                    "msg": "Input should be a valid list",
                    "input": stop,
                }
            )
        return errors

    def _answer(self, payload: Mapping[str, Any]) -> str:
        last = ""
        messages = payload.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, Mapping) and isinstance(message.get("content"), str):
                    last = message["content"]
        return f"echo: {last}"

    def _record_call(self, job: EmulatedJob, model: str, text: str, error: str | None) -> dict[str, Any]:
        tokens = 0 if error else _PROMPT_TOKENS + len(text.split())
        call = {"call_id": self._next_uuid(), "model": model, "tokens": tokens, "error": error}
        job.calls.append(call)
        return call

    # -- streams -------------------------------------------------------------

    def _stream(
        self, job: EmulatedJob, model: str, text: str, fault: Fault, *, keepalive: bool, complete: bool
    ) -> EmulatedResponse:
        pieces = self.words(text)
        shape = model.split("/", 1)[0] if "/" in model else "openai"
        request_id = f"chatcmpl-{self._counter + 1:06d}"
        content = [self._frame(shape, model, request_id, piece) for piece in pieces]
        if fault.stream_error is not None:
            at = min(fault.stream_error_after, len(content))
            chunks = [*content[:at], self.error_frame(fault.stream_error)]
            self._record_call(job, model, text, fault.stream_error)
            if complete:
                job.status = "failed"
        else:
            chunks = [*content, *self._ending(shape, model, request_id, len(pieces))]
            self._record_call(job, model, text, None)
            if complete and fault.drop_after is None:
                job.status = "completed"
                self._charge(job)
        drop_after = fault.drop_after
        if keepalive:
            chunks.insert(0, b": keepalive\n\n")
            drop_after = None if drop_after is None else drop_after + 1
        return EmulatedResponse.stream(chunks, drop_after=drop_after)

    @staticmethod
    def _frame(shape: str, model: str, request_id: str, piece: str) -> bytes:
        if shape == "anthropic":
            return sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
        if shape == "gemini":
            return sse(
                {"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}]}
            )
        return sse(
            {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        )

    @staticmethod
    def _ending(shape: str, model: str, request_id: str, words: int) -> list[bytes]:
        if shape == "anthropic":
            # Anthropic ends with message_stop and a clean close: no [DONE].
            return [
                sse({"type": "content_block_stop", "index": 0}),
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": words},
                    }
                ),
                sse({"type": "message_stop"}),
            ]
        if shape == "gemini":
            # Gemini's last chunk carries the finish reason; then the body just ends.
            return [
                sse(
                    {
                        "candidates": [
                            {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP"}
                        ],
                        "usageMetadata": {
                            "promptTokenCount": _PROMPT_TOKENS,
                            "candidatesTokenCount": words,
                            "totalTokenCount": _PROMPT_TOKENS + words,
                        },
                    }
                )
            ]
        return [
            sse(
                {
                    "id": request_id,
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            ),
            b"data: [DONE]\n\n",
        ]

    def error_frame(self, error: str) -> bytes:
        """The frame the server sends when the upstream fails mid-stream: `{"error": str(e)}`,
        or (`anthropic_overloaded`) an upstream's own error object."""
        if error == "anthropic_overloaded":
            return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        if error == "gemini_429":
            return sse({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})
        if error == "text":
            return sse({"error": "upstream stream ended unexpectedly"})
        status, detail = self._resolve(error)
        if isinstance(detail, str) and ("Error code:" in detail or "error '" in detail):
            text = detail  # already an upstream failure, as the server words it
        else:
            text = _upstream_detail(status)
        return sse({"error": text.removeprefix("LLM call failed: ").removeprefix("500: ")})

    # -- errors --------------------------------------------------------------

    @staticmethod
    def _detail(status: int, detail: Any, headers: Sequence[tuple[str, str]] = ()) -> EmulatedResponse:
        return EmulatedResponse.json(status, {"detail": detail}, headers)

    def _validation(self, errors: list[dict[str, Any]]) -> EmulatedResponse:
        return self._detail(422, errors)

    @staticmethod
    def _plain_500() -> EmulatedResponse:
        return EmulatedResponse(
            500, (("content-type", "text/plain; charset=utf-8"),), b"Internal Server Error"
        )

    @staticmethod
    def _resolve(error: str) -> tuple[int, Any]:
        name = _KINDS.get(error, error)
        found = _STATUS_DETAILS.get(name) or _SCENARIOS.get(name)
        if found is None:
            raise ValueError(f"unknown SaaS-LiteLLM error {error!r}; known: {', '.join(_all_names())}")
        return found

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        """`error`: a status ("403"), an ErrorKind value ("insufficient_credits") or a
        scenario ("credits", "team_suspended", "validation_v1", "upstream_429", "plain_500", ...)."""
        name = _KINDS.get(error, error)
        status, detail = self._resolve(error)
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        if request_id is not None:
            headers.append(("x-request-id", request_id))
        if name == "plain_500":
            plain = self._plain_500()
            return EmulatedResponse(plain.status, (*plain.headers, *headers), plain.body)
        if detail is None:
            detail = json.loads(json.dumps(_V1_ERRORS if name == "validation_v1" else _V2_ERRORS))
        return self._detail(status, detail, headers)

    def error_names(self) -> Sequence[str]:
        return _all_names()


def _all_names() -> list[str]:
    return [*_STATUS_DETAILS, *_KINDS, *_SCENARIOS]
