"""An emulator of SaaS-LiteLLM's Jobs API (v1.0.2), for tests and `turnout serve-fake`.

It keeps jobs, their calls, the team's credits and what reached the upstream,
and answers as the FastAPI server does, in the order it does: invalid JSON
is a 422 before the key is looked at; then the key (`Authorization: Bearer`),
the team's status, the body's fields; then the endpoint, which may still
answer a plain-text `500 Internal Server Error` for a job id that is not a
UUID. Jobs are `PENDING`, `IN_PROGRESS`, `COMPLETED` or `FAILED` (upper case)
with naive ISO timestamps carrying microseconds; `GET /jobs/{id}` answers the
job dict.

Settings (all optional; by default any key is accepted, of the team the
request names): `keys` maps virtual keys to their team (`401 Invalid API
key`, `403 API key does not belong to team '…'`, `403 Job does not belong to
your team`); `team_status` other than "active" answers `403 Team access is
suspended. Please contact support.`; `models` lists the aliases the team may
use (`403 Team '…' does not have access to model alias '…'`); `credits` is
the balance. As on the server, no balance is ever refused: a job completed
with no credit left is answered 200 with `credit_applied: false`, and a
repeated `/complete` charges every other time. `broken_llm_call_stream`
makes `/jobs/{id}/llm-call-stream` fail as v1.0.2's does on every call.

Models: an alias naming Claude or `anthropic/...` is served by an emulated
Anthropic upstream, `gemini...` by Gemini, anything else by OpenAI; streams
carry that upstream's own frames, forwarded as the server forwards them.

Faults describe what the upstream does, so the server's own handling still
applies (a bad key is still a 401): `Fault(error="upstream_429")` (or a kind
such as "rate_limited") makes the upstream refuse every try, which the server
answers `500 {"detail": "LLM call failed: ..."}` (or, on a stream, with an
`{"error": "..."}` frame), the job failing; `Fault(stream_error=...)`:
"upstream_NNN"/a kind (the upstream refused), "upstream_cut" (it broke off),
"stream_crash" (v1.0.2's llm-call-stream), or an upstream's own in-band error
("anthropic_overloaded", "gemini_429", "openai_error", passed on verbatim,
the job then completed and charged as if nothing happened). The server's own
refusals (`Fault(error="team_suspended")`, "401", "job_not_found", ...) are
answered before anything is done. Nothing renders a status or a text the
server does not send: it sends no 429, 402 or 503 of its own. Thread-safe.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from attrs import define, field, frozen

from turnout.emulation import (
    NO_FAULT,
    DemoDeployment,
    DemoScenario,
    EmulatedRequest,
    EmulatedResponse,
    Emulator,
    Fault,
    echo_of,
)

from . import emulator_wire as wire

__all__ = ["EmulatedJob", "LiteLLMEmulator"]

# The server's routes are under /api: a base_url without it finds nothing ("Not Found").
_JOB = re.compile(r"^/api/jobs/([^/]+)(?:/(llm-call-stream|llm-call|complete))?$")
_OWN = re.compile(r"^/api/jobs/(create-and-call-stream|create-and-call|create)$")
_LATENCY_MS = 42
_PROMPT_TOKENS = 5
_TEAM = "team_test"  # named in errors rendered without a request
_ALIAS = "ChatAgent"

# The server's own refusals: name -> (status, detail; None: a validation list).
_REFUSALS: Mapping[str, tuple[int, str | None]] = {
    "missing_auth": (401, "Missing Authorization header. Expected: 'Authorization: Bearer sk-xxx...'"),
    "bad_auth_header": (
        401,
        "Invalid Authorization header format. Expected: 'Authorization: Bearer sk-xxx...'",
    ),
    "invalid_key": (401, "Invalid API key"),
    "team_suspended": (403, "Team access is suspended. Please contact support."),
    "team_paused": (403, "Team access is paused. Please contact support."),
    "wrong_team": (403, f"API key does not belong to team '{_TEAM}'"),
    "job_other_team": (403, "Job does not belong to your team"),
    "model_access": (403, f"Team '{_TEAM}' does not have access to model alias '{_ALIAS}'"),
    "model_group_access": (403, f"Team '{_TEAM}' does not have access to model group '{_ALIAS}'"),
    "model_inactive": (403, f"Model group '{_ALIAS}' not found or inactive"),
    "job_not_found": (404, "Job not found"),
    "team_not_found": (404, f"Team '{_TEAM}' not found"),
    "route_not_found": (404, "Not Found"),
    "validation_v2": (422, None),
    "validation_v1": (422, None),
    "no_credentials": (
        500,
        "LLM call failed: 500: No provider credentials configured for openai. "
        "Please add credentials in the admin dashboard.",
    ),
    "plain_500": (500, None),
}
# The upstream refusing every try: name -> its status.
_UPSTREAM: Mapping[str, int] = {
    "upstream_400": 400,
    "context_length": 400,
    "upstream_429": 429,
    "upstream_500": 500,
    "upstream_502": 502,
    "upstream_503": 503,
    "upstream_504": 504,
}
# Statuses and ErrorKind values, as the server produces them.
_ALIASES: Mapping[str, str] = {
    "401": "invalid_key",
    "403": "team_suspended",
    "404": "job_not_found",
    "422": "validation_v2",
    "500": "plain_500",
    "authentication": "invalid_key",
    "permission_denied": "team_suspended",
    "not_found": "job_not_found",
    "validation": "validation_v2",
    "bad_request": "upstream_400",
    "context_length_exceeded": "context_length",
    "rate_limited": "upstream_429",
    "server_error": "upstream_500",
    "upstream_error": "upstream_502",
    "unavailable": "upstream_503",
    "timeout": "upstream_504",
}
_STREAM_ONLY = ("upstream_cut", "stream_crash", *wire.OWN_ERRORS)

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
# Servers on pydantic v1.
_V1_ERRORS = [
    {"loc": ["body", "messages"], "msg": "field required", "type": "value_error.missing"},
    {"loc": ["body", "stop", 1], "msg": "str type expected", "type": "type_error.str"},
]


def _known(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _REFUSALS and name not in _UPSTREAM:
        known = ", ".join(_all_names())
        raise ValueError(f"SaaS-LiteLLM does not send {name!r}; it sends: {known}")
    return name


@frozen
class _Upstream:
    """What the upstream does for one call: answers (all None), refuses every try
    (`status`), breaks off (`cut`), or sends its own error frame mid-stream (`own`)."""

    status: int | None = None
    context_length: bool = False
    cut: bool = False
    crash: bool = False
    own: str | None = None
    after: int = 0

    @property
    def fails(self) -> bool:
        return self.status is not None or self.cut or self.crash


def _upstream_of(fault: Fault, *, stream: bool) -> _Upstream:
    if fault.error is not None:
        name = _known(fault.error)
        return _Upstream(_UPSTREAM[name], context_length=name == "context_length")
    if not stream or fault.stream_error is None:
        return _Upstream()
    name, after = fault.stream_error, fault.stream_error_after
    if name == "upstream_cut":
        return _Upstream(cut=True, after=after)
    if name == "stream_crash":
        return _Upstream(crash=True, after=after)
    if name in wire.OWN_ERRORS:
        return _Upstream(own=name, after=after)
    known = _ALIASES.get(name, name)
    if known not in _UPSTREAM:
        raise ValueError(
            f"not a stream error SaaS-LiteLLM sends: {name!r}; known: "
            + ", ".join([*_STREAM_ONLY, *_UPSTREAM])
        )
    return _Upstream(_UPSTREAM[known], context_length=known == "context_length", after=after)


@define
class EmulatedJob:
    """One job's server-side state (the `jobs` row)."""

    job_id: str
    team_id: str
    job_type: str
    user_id: str | None = None
    status: str = "PENDING"
    metadata: dict[str, Any] = field(factory=dict)
    created_at: datetime = field(factory=wire.now)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    credit_applied: bool = False
    model_groups_used: list[str] = field(factory=list)
    # One entry per call: {"call_id", "model", "purpose", "tokens", "error"}.
    calls: list[dict[str, Any]] = field(factory=list)
    # Every /complete received, in order: {"status", "error_message"}.
    completions: list[dict[str, Any]] = field(factory=list)
    credits_charged: int = 0

    def to_dict(self) -> dict[str, Any]:
        """`GET /jobs/{id}`: `Job.to_dict()`."""
        return {
            "job_id": self.job_id,
            "team_id": self.team_id,
            "user_id": self.user_id,
            "job_type": self.job_type,
            "status": self.status,
            "created_at": wire.iso_z(self.created_at),
            "started_at": wire.iso_z(self.started_at),
            "completed_at": wire.iso_z(self.completed_at),
            "metadata": self.metadata,
            "error_message": self.error_message,
            "organization_id": None,
            "external_task_id": None,
            "credit_applied": self.credit_applied,
            "model_groups_used": list(self.model_groups_used),
        }


@frozen
class _Route:
    endpoint: str
    job_id: str | None = None


class LiteLLMEmulator(Emulator):
    """SaaS-LiteLLM's Jobs API; see the module's docstring for its settings."""

    provider = "litellm"
    # Self-hosted, so no default base URL says it: the API is under `http://host:8003/api`.
    base_path = "/api"

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        credits: int = 1000,
        team_status: str = "active",
        models: Collection[str] | None = None,
        broken_llm_call_stream: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self.keys = dict(keys) if keys is not None else None
        self.credits_remaining = credits
        self.team_status = team_status
        self.models = set(models) if models is not None else None
        self.broken_llm_call_stream = broken_llm_call_stream
        self.jobs: dict[str, EmulatedJob] = {}
        # Requests per endpoint name ("create", "llm-call", "complete", "get", ...).
        self.hits: dict[str, int] = {}
        # Requests the emulated upstream received (the server retries failures itself).
        self.upstream_requests = 0
        self._created = 1_700_000_000

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("ChatAgent", "sk-demo", options={"team_id": "team_demo"})

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        return (
            DemoScenario(
                "breaker",
                "SaaS-LiteLLM answers every call 500 'LLM call failed: ... Error code: 503': "
                "its upstream is unavailable, and it has tried nine times already.",
                "mythicdot",
            ),
        )

    # -- bookkeeping ---------------------------------------------------------

    def job(self, job_id: str) -> EmulatedJob:
        with self._lock:
            return self.jobs[job_id]

    def completions(self, job_id: str) -> list[dict[str, Any]]:
        """Every `/complete` the job received, in order."""
        with self._lock:
            return [dict(c) for c in self.jobs[job_id].completions]

    def _costs(self, job: EmulatedJob) -> dict[str, Any]:
        """`calculate_job_costs`, then the credit fields."""
        calls = job.calls
        ok = [c for c in calls if not c["error"]]
        tokens = sum(c["tokens"] for c in calls)
        timed = [c for c in calls if c["latency_ms"]]
        return {
            "total_calls": len(calls),
            "successful_calls": len(ok),
            "failed_calls": len(calls) - len(ok),
            "total_tokens": tokens,
            "total_cost_usd": round(tokens * 0.000002, 6),
            "avg_latency_ms": _LATENCY_MS if timed else 0,
            "credit_applied": job.credit_applied,
            "credits_remaining": self.credits_remaining,
        }

    def _charge(self, job: EmulatedJob) -> None:
        """The credit step of a completion: one credit, once per `credit_applied`; with
        none left the job is completed all the same, uncharged (the server logs it)."""
        if job.credit_applied:
            job.credit_applied = False  # a repeated completion: the next one charges again
            return
        if self.credits_remaining >= 1:
            self.credits_remaining -= 1
            job.credits_charged += 1
            job.credit_applied = True

    def _record_call(
        self, job: EmulatedJob, model: str, purpose: Any, tokens: int, error: str | None
    ) -> dict[str, Any]:
        call = {
            "call_id": str(uuid.uuid4()),
            "model": model,
            "purpose": purpose if isinstance(purpose, str) else None,
            "tokens": 0 if error else tokens,
            "latency_ms": None if error else _LATENCY_MS,
            "error": error,
        }
        job.calls.append(call)
        return call

    @staticmethod
    def _fail(job: EmulatedJob, error: str) -> None:
        job.status = "FAILED"
        job.completed_at = wire.now()
        job.error_message = error

    # -- the API -------------------------------------------------------------

    def handle(self, request: EmulatedRequest, fault: Fault | None = None) -> EmulatedResponse:
        fault = fault or NO_FAULT
        with self._lock:
            route = self._route(request)
            if isinstance(route, EmulatedResponse):
                return route
            self.hits[route.endpoint] = self.hits.get(route.endpoint, 0) + 1
            if fault.html is not None or fault.malformed:
                return super().handle(request, fault)  # a proxy's page, a corrupted body
            if fault.error is not None and _known(fault.error) in _REFUSALS:
                return self.render_error(fault.error)
            return self._answer(route, request, fault)

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        with self._lock:
            route = self._route(request)
            return route if isinstance(route, EmulatedResponse) else self._answer(route, request, fault)

    def _route(self, request: EmulatedRequest) -> _Route | EmulatedResponse:
        """The endpoint a request is for, as FastAPI matches it (`GET /jobs/create` is
        `GET /jobs/{job_id}`), or its 404 / 405."""
        path = request.path.rstrip("/")
        own, job = _OWN.search(path), _JOB.search(path)
        if job is not None and job.group(2) is None and (request.method == "GET" or own is None):
            route, method = _Route("get", job.group(1)), "GET"
        elif own is not None:
            route, method = _Route(own.group(1)), "POST"
        elif job is not None:
            route, method = _Route(job.group(2), job.group(1)), "POST"
        else:
            return wire.json_response(404, {"detail": "Not Found"})
        if request.method != method:
            return wire.json_response(405, {"detail": "Method Not Allowed"}, (("allow", method),))
        return route

    def _answer(self, route: _Route, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        parsed = self._body(request) if route.endpoint != "get" else {}
        if isinstance(parsed, EmulatedResponse):
            return parsed
        team = self._authenticate(request)
        if isinstance(team, EmulatedResponse):
            return team
        invalid = self._validate(route.endpoint, parsed)
        if invalid:
            return self._detail(422, invalid)
        body: Mapping[str, Any] = parsed
        if route.job_id is None:
            return self._own_endpoint(route.endpoint, team, body, fault)
        try:
            uuid.UUID(route.job_id)
        except ValueError:
            return wire.plain_500()  # the server calls uuid.UUID(job_id) unguarded
        job = self.jobs.get(route.job_id)
        if job is None:
            return self._detail(404, "Job not found")
        if team is not None and job.team_id != team:
            return self._detail(403, "Job does not belong to your team")
        if route.endpoint == "get":
            return wire.json_response(200, job.to_dict())
        if route.endpoint == "complete":
            return self._complete(job, body)
        return self._call(job, body, fault, stream=route.endpoint == "llm-call-stream")

    @staticmethod
    def _body(request: EmulatedRequest) -> Any:
        """The parsed JSON body (None when empty); invalid JSON is refused before
        anything else, as FastAPI does."""
        if not request.body:
            return None
        try:
            payload = json.loads(request.body)
        except json.JSONDecodeError as exc:
            return LiteLLMEmulator._detail(
                422,
                [
                    {
                        "type": "json_invalid",
                        "loc": ["body", exc.pos],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ],
            )
        except (ValueError, RecursionError):
            return wire.plain_500()
        return payload

    def _authenticate(self, request: EmulatedRequest) -> str | EmulatedResponse | None:
        """`verify_virtual_key`: the key's team, or None when any key is accepted."""
        header = request.headers.get("authorization")
        if not header:
            return self.render_error("missing_auth")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return self.render_error("bad_auth_header")
        team = None
        if self.keys is not None:
            team = self.keys.get(parts[1])
            if team is None:
                return self.render_error("invalid_key")
        if self.team_status != "active":
            return self._detail(403, f"Team access is {self.team_status}. Please contact support.")
        return team

    # -- validation (pydantic v2's words) --------------------------------------

    @staticmethod
    def _validate(endpoint: str, body: Any) -> list[dict[str, Any]]:
        if endpoint == "get":
            return []
        if body is None:
            return [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        if not isinstance(body, Mapping):
            return [
                {
                    "type": "model_attributes_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": body,
                }
            ]
        required = {
            "create": ("team_id", "job_type"),
            "create-and-call": ("team_id", "job_type", "model", "messages"),
            "create-and-call-stream": ("team_id", "job_type", "model", "messages"),
            "llm-call": ("model", "messages"),
            "llm-call-stream": ("model", "messages"),
            "complete": ("status",),
        }[endpoint]
        errors: list[dict[str, Any]] = [
            {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": dict(body)}
            for name in required
            if name not in body
        ]
        for name in ("team_id", "job_type", "model", "user_id", "purpose"):
            value = body.get(name)
            if (
                name in body
                and not isinstance(value, str)
                and not (value is None and name in ("user_id", "purpose"))
            ):
                errors.append(
                    {
                        "type": "string_type",
                        "loc": ["body", name],
                        "msg": "Input should be a valid string",
                        "input": value,
                    }
                )
        if endpoint == "complete" and "status" in body and body["status"] not in ("completed", "failed"):
            errors.append(
                {
                    "type": "literal_error",
                    "loc": ["body", "status"],
                    "msg": "Input should be 'completed' or 'failed'",
                    "input": body["status"],
                    "ctx": {"expected": "'completed' or 'failed'"},
                }
            )
        return errors + _check_types(body)

    # -- endpoints -------------------------------------------------------------

    def _own_endpoint(
        self, endpoint: str, team: str | None, body: Mapping[str, Any], fault: Fault
    ) -> EmulatedResponse:
        team_id = str(body["team_id"])
        if team is not None and team_id != team:
            return self._detail(403, f"API key does not belong to team '{team_id}'")
        metadata = body.get("metadata") if endpoint == "create" else body.get("job_metadata")
        job = EmulatedJob(
            str(uuid.uuid4()),
            team_id,
            str(body["job_type"]),
            user_id=body.get("user_id"),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        )
        self.jobs[job.job_id] = job
        if endpoint == "create":
            return wire.json_response(
                200, {"job_id": job.job_id, "status": job.status, "created_at": wire.iso(job.created_at)}
            )
        job.status, job.started_at = "IN_PROGRESS", wire.now()
        model = str(body["model"])
        refused = self._check_model(job, model, fail=True)
        if refused is not None:
            return refused
        job.model_groups_used = [model]
        if endpoint == "create-and-call-stream":
            return self._stream(job, body, fault, keepalive=True, complete=True)
        upstream = _upstream_of(fault, stream=False)
        if upstream.fails:
            return self._call_failed(job, body, upstream, fail_job=True)
        call = self._generate(job, body)
        job.status, job.completed_at = "COMPLETED", wire.now()
        self._charge(job)
        return wire.json_response(
            200,
            {
                "job_id": job.job_id,
                "status": job.status,
                "response": {"content": call["content"], "finish_reason": call["finish_reason"]},
                "metadata": {"tokens_used": call["tokens"], "latency_ms": _LATENCY_MS, "model": model},
                "costs": self._costs(job),
                "completed_at": wire.iso(job.completed_at),
            },
        )

    def _call(
        self, job: EmulatedJob, body: Mapping[str, Any], fault: Fault, *, stream: bool
    ) -> EmulatedResponse:
        if job.status == "PENDING":
            job.status, job.started_at = "IN_PROGRESS", wire.now()
        model = str(body["model"])
        refused = self._check_model(job, model, fail=False)
        if refused is not None:
            return refused
        if model not in job.model_groups_used:
            job.model_groups_used.append(model)
        if stream:
            return self._stream(job, body, fault, keepalive=False, complete=False)
        upstream = _upstream_of(fault, stream=False)
        if upstream.fails:
            return self._call_failed(job, body, upstream, fail_job=False)
        call = self._generate(job, body)
        return wire.json_response(
            200,
            {
                "call_id": call["call_id"],
                "response": {"content": call["content"], "finish_reason": call["finish_reason"]},
                "metadata": {"tokens_used": call["tokens"], "latency_ms": _LATENCY_MS, "model": model},
            },
        )

    def _complete(self, job: EmulatedJob, body: Mapping[str, Any]) -> EmulatedResponse:
        status = str(body["status"])
        message = body.get("error_message")
        job.completions.append({"status": status, "error_message": message})
        job.status, job.completed_at = status.upper(), wire.now()
        if isinstance(message, str) and message:
            job.error_message = message
        extra = body.get("metadata")
        if isinstance(extra, Mapping):
            job.metadata.update(extra)
        if status == "completed":
            self._charge(job)
        else:
            job.credit_applied = False
        return wire.json_response(
            200,
            {
                "job_id": job.job_id,
                "status": job.status,
                "completed_at": wire.iso(job.completed_at),
                "costs": self._costs(job),
                "calls": [
                    {
                        "call_id": c["call_id"],
                        "purpose": c["purpose"],
                        "model_group": c["model"],
                        "tokens": c["tokens"],
                        "latency_ms": c["latency_ms"],
                        "error": c["error"],
                    }
                    for c in job.calls
                ],
            },
        )

    def _check_model(self, job: EmulatedJob, model: str, *, fail: bool) -> EmulatedResponse | None:
        if self.models is None or model in self.models:
            return None
        detail = f"Team '{job.team_id}' does not have access to model alias '{model}'"
        if fail:
            self._fail(job, detail)
        return self._detail(403, detail)

    # -- the upstream ------------------------------------------------------------

    def _generate(self, job: EmulatedJob, body: Mapping[str, Any]) -> dict[str, Any]:
        """One successful upstream call, recorded on the job."""
        self.upstream_requests += 1
        text = _echo(body)
        upstream = wire.family(str(body["model"]))
        call = self._record_call(job, str(body["model"]), body.get("purpose"), 0, None)
        call["tokens"] = _PROMPT_TOKENS + len(text.split())
        call["content"] = text
        # The upstream's own finish reason, as the server passes it on (Gemini's lower-cased).
        call["finish_reason"] = "end_turn" if upstream == "anthropic" else "stop"
        return call

    def _call_failed(
        self, job: EmulatedJob, body: Mapping[str, Any], upstream: _Upstream, *, fail_job: bool
    ) -> EmulatedResponse:
        assert upstream.status is not None
        family = wire.family(str(body["model"]))
        self.upstream_requests += wire.upstream_tries(upstream.status, family)
        text = wire.wrapped_failure(upstream.status, family, context_length=upstream.context_length)
        inner = text.removeprefix("LLM call failed: ")
        self._record_call(job, str(body["model"]), body.get("purpose"), 0, inner)
        if fail_job:
            self._fail(job, inner)
        return self._detail(500, text)

    def _stream(
        self, job: EmulatedJob, body: Mapping[str, Any], fault: Fault, *, keepalive: bool, complete: bool
    ) -> EmulatedResponse:
        """The SSE answer of create-and-call-stream (`complete`: the job is completed and
        charged after a stream that ran to its end) or llm-call-stream."""
        model = str(body["model"])
        family = wire.family(model)
        upstream = _upstream_of(fault, stream=True)
        if not complete and self.broken_llm_call_stream and not upstream.fails:
            upstream = _Upstream(crash=True)
        pieces = self.words(_echo(body))
        self._created += 1
        before, content, after = wire.upstream_frames(
            family, pieces, _PROMPT_TOKENS, f"chatcmpl-{uuid.uuid4().hex[:24]}", self._created
        )
        chunks: list[bytes] = [b": keepalive\n\n"] if keepalive else []
        self.upstream_requests += 1
        if upstream.fails:
            error = (
                wire.BROKEN_STREAM_TEXT
                if upstream.crash
                else wire.stream_error_text(None if upstream.cut else upstream.status, family)
            )
            # The server reads the whole upstream answer first: its own frame comes before
            # any text (unless a test places it later).
            at = min(upstream.after, len(content))
            chunks += [*before, *content[:at]] if at else []
            chunks.append(wire.server_error_frame(error))
            self._record_call(job, model, body.get("purpose"), 0, error)
            if complete:
                self._fail(job, error)
        else:
            if upstream.own is not None:
                at = min(upstream.after, len(content))
                chunks += [*before, *content[:at], wire.own_error_frame(upstream.own)]
            else:
                chunks += [*before, *content, *after]
            self._record_call(job, model, body.get("purpose"), _PROMPT_TOKENS + len(pieces), None)
            if complete and fault.drop_after is None:
                job.status, job.completed_at = "COMPLETED", wire.now()
                self._charge(job)
        drop_after = fault.drop_after
        if drop_after is not None:
            # Counted in content frames, as every emulator counts them.
            drop_after += len(before) + (1 if keepalive else 0)
        return EmulatedResponse(200, wire.STREAM_HEADERS, b"", tuple(chunks), drop_after)

    # -- errors --------------------------------------------------------------

    @staticmethod
    def _detail(status: int, detail: Any) -> EmulatedResponse:
        return wire.json_response(status, {"detail": detail})

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        """`error`: a status ("403"), an ErrorKind value ("rate_limited") or a scenario
        ("team_suspended", "validation_v1", "upstream_429", "plain_500", ...). The server
        sends neither `Retry-After` nor a request id: both are ignored."""
        name = _known(error)
        if name in _UPSTREAM:
            return self._detail(
                500, wire.wrapped_failure(_UPSTREAM[name], context_length=name == "context_length")
            )
        status, detail = _REFUSALS[name]
        if name == "plain_500":
            return wire.plain_500()
        if detail is None:
            return self._detail(
                status, json.loads(json.dumps(_V1_ERRORS if name == "validation_v1" else _V2_ERRORS))
            )
        return self._detail(status, detail)

    def error_frame(self, error: str) -> bytes:
        """The frame a stream ends with for `error` (a stream error name or kind)."""
        upstream = _upstream_of(Fault(stream_error=error), stream=True)
        if upstream.own is not None:
            return wire.own_error_frame(upstream.own)
        if upstream.crash:
            return wire.server_error_frame(wire.BROKEN_STREAM_TEXT)
        return wire.server_error_frame(wire.stream_error_text(None if upstream.cut else upstream.status))

    def error_names(self) -> Sequence[str]:
        return _all_names()


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


def _echo(body: Mapping[str, Any]) -> str:
    """The deterministic answer: the last message's text (content parts included), echoed."""
    return echo_of(body.get("messages"))


def _all_names() -> list[str]:
    return [*_REFUSALS, *_UPSTREAM, *_ALIASES]
