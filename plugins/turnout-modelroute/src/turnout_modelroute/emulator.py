"""An emulator of ModelRoute's executions API, for tests and `turnout serve-fake`."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

from attrs import field, frozen
from attrs.validators import in_

from turnout import ErrorKind, FieldError
from turnout.emulation import (
    DemoDeployment,
    DemoScenario,
    EmulatedRequest,
    EmulatedResponse,
    Emulator,
    Fault,
    WireLog,
    answer_text,
)

from .provider import IN_PROGRESS, MODELROUTE_CODES, TERMINAL, fake_key
from .webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = [
    "DEFAULT_WEBHOOK_SECRET",
    "KIND_CODES",
    "EmulatedExecution",
    "ModelRouteEmulator",
    "Outcome",
]

DEFAULT_WEBHOOK_SECRET: Final = "whsec_modelroute_emulator"  # noqa: S105 - a test fixture

# The code the emulator renders for a kind (`Fault(error="rate_limited")`).
KIND_CODES: Final[Mapping[str, str]] = {
    ErrorKind.VALIDATION.value: "INPUT_VALIDATION_ERROR",
    ErrorKind.CONTENT_FILTERED.value: "CONTENT_MODERATION_REJECTED",
    ErrorKind.BAD_REQUEST.value: "FILE_FORMAT_UNSUPPORTED",
    ErrorKind.INSUFFICIENT_CREDITS.value: "INSUFFICIENT_BALANCE",
    ErrorKind.RATE_LIMITED.value: "RATE_LIMITED",
    ErrorKind.UNAVAILABLE.value: "SERVICE_UNAVAILABLE",
    ErrorKind.TIMEOUT.value: "GENERATION_TIMEOUT",
    ErrorKind.UPSTREAM_ERROR.value: "GENERATION_FAILED",
    ErrorKind.SERVER_ERROR.value: "INTERNAL_ERROR",
}
# Kinds ModelRoute reports with no documented code: the status says it.
_STATUS_ONLY: Final[Mapping[str, tuple[int, str]]] = {
    ErrorKind.AUTHENTICATION.value: (401, "UNAUTHORIZED"),
    ErrorKind.PERMISSION_DENIED.value: (403, "FORBIDDEN"),
    ErrorKind.NOT_FOUND.value: (404, "NOT_FOUND"),
}
_MESSAGES: Final[Mapping[str, str]] = {
    "INPUT_VALIDATION_ERROR": "The input failed validation.",
    "CONTENT_MODERATION_REJECTED": "The input was rejected by content moderation.",
    "FILE_NOT_FOUND": "A referenced file does not exist.",
    "FILE_FORMAT_UNSUPPORTED": "A referenced file's format is not supported.",
    "INSUFFICIENT_BALANCE": "Your balance is too low for this execution.",
    "RATE_LIMITED": "Too many requests.",
    "MODEL_OVERLOADED": "The model is overloaded; try again shortly.",
    "MODEL_UNAVAILABLE": "The model is temporarily unavailable.",
    "GENERATION_TIMEOUT": "The generation took too long.",
    "GENERATION_FAILED": "The model failed to generate an output.",
    "SERVICE_UNAVAILABLE": "ModelRoute is temporarily unavailable.",
    "INTERNAL_ERROR": "An internal error occurred.",
}
_DEFAULT_DETAILS: Final = (FieldError("input.messages", "invalid", "messages must not be empty"),)
_PATH = re.compile(r"/v1/executions(?:/(?P<id>[^/]+)(?:/(?P<action>[^/]+))?)?/?$")


@frozen
class Outcome:
    """How one execution behaves, from its submit to its end.

    It answers `pending_polls` polls `PENDING`, then `processing_polls` polls
    `PROCESSING` (None: forever, until cancelled), then ends `status`.
    """

    # COMPLETED, FAILED, EXPIRED or CANCELLED.
    status: str = field(default="COMPLETED", validator=in_(sorted(TERMINAL)))
    # FAILED: the execution's error, a code or an ErrorKind value.
    error: str = "GENERATION_FAILED"
    # The body's `retryable` flag (FAILED errors and `http_error`); None: the table's.
    retryable: bool | None = None
    message: str | None = None
    # The error's `details[]`; INPUT_VALIDATION_ERROR has one by default.
    details: tuple[FieldError, ...] | None = None
    pending_polls: int = 1
    processing_polls: int | None = 1
    # The answer; None: the last user message, echoed ("echo: ...").
    text: str | None = None
    # The submit itself fails with this HTTP error (code or kind); no execution is created.
    http_error: str | None = None
    # Submits of this execution (the first and any replay of its key) answered 503
    # SERVICE_UNAVAILABLE *after* it was created: a lost 202.
    lost_submits: int = 0
    # The first N polls are answered 429 RATE_LIMITED with Retry-After and X-RateLimit-Reset.
    rate_limited_polls: int = 0
    # The first N successful polls say X-RateLimit-Remaining: 0 (wait for X-RateLimit-Reset).
    exhausted_polls: int = 0
    # Seconds until the rate limit resets, for the two above.
    retry_after: float = 1.0

    @classmethod
    def failed(
        cls,
        error: str = "GENERATION_FAILED",
        *,
        retryable: bool | None = None,
        message: str | None = None,
        details: tuple[FieldError, ...] | None = None,
        **kw: Any,
    ) -> Outcome:
        return cls("FAILED", error, retryable, message, details, **kw)

    @classmethod
    def expired(cls, **kw: Any) -> Outcome:
        return cls("EXPIRED", **kw)

    @classmethod
    def cancelled(cls, **kw: Any) -> Outcome:
        return cls("CANCELLED", **kw)

    @classmethod
    def running(cls, **kw: Any) -> Outcome:
        """Never ends by itself: only a cancel stops it."""
        return cls(processing_polls=None, **kw)

    @classmethod
    def rejected(cls, error: str, *, retryable: bool | None = None) -> Outcome:
        """The submit is answered with the HTTP error `error`."""
        return cls(http_error=error, retryable=retryable)


class EmulatedExecution:
    """One execution's state (read it in tests; the emulator's lock guards writes)."""

    def __init__(
        self,
        execution_id: str,
        key: str | None,
        payload: Mapping[str, Any],
        text: str,
        outcome: Outcome,
        created_at: int,
    ) -> None:
        self.id = execution_id
        self.key = key
        # The submitted body: `model`, `input` (messages and parameters), `metadata`.
        self.payload = payload
        self.model = str(payload.get("model"))
        self.input: Mapping[str, Any] = payload.get("input") or {}
        self.metadata: Mapping[str, Any] | None = payload.get("metadata")
        self.text = text
        self.outcome = outcome
        self.created_at = created_at
        self.status = "PENDING"
        self.submits = 1
        self.polls = 0
        self.cancelled = False

    def advance(self) -> None:
        """One poll's worth of progress."""
        if self.status in TERMINAL:
            return
        outcome = self.outcome
        progress = self.polls - outcome.rate_limited_polls
        if progress <= outcome.pending_polls:
            self.status = "PENDING"
        elif outcome.processing_polls is None or progress <= outcome.pending_polls + outcome.processing_polls:
            self.status = "PROCESSING"
        else:
            self.status = outcome.status

    def __repr__(self) -> str:
        return f"<EmulatedExecution {self.id} {self.status} polls={self.polls} submits={self.submits}>"


class ModelRouteEmulator(Emulator):
    """ModelRoute's executions API: submit, poll, result, cancel, with idempotency keys,
    rate-limit headers and signed webhooks. Thread-safe.

    Scripting outcomes (each new execution takes the first that applies):

    - `script`: a sequence of `Outcome`s, one consumed per new execution (per
      call, since retries of a call reuse its execution through its key);
      also the `script` attribute (a deque), refillable between calls;
    - `outcomes`: `{model name: Outcome}`, for every execution of that model;
    - `default`: everything else (COMPLETED after one PENDING and one PROCESSING poll).

        emulator = ModelRouteEmulator(
            script=[Outcome.failed("MODEL_OVERLOADED", retryable=False)],
            outcomes={"slow-model": Outcome.running()},
        )

    What it saw: `submissions` (the Idempotency-Key of every submit, faulted
    ones included, in order), `executions` (id -> `EmulatedExecution`, one per
    distinct key), `cancels` (execution ids, in order), `requests`
    ((method, path) of everything). `Fault`s from `mock_transport` apply to
    any endpoint; a submit is recorded before its fault.

    Webhooks: `webhook(execution_id)` returns the (headers, body) ModelRoute
    would POST for the execution's current state, signed with `webhook_secret`.
    """

    provider: ClassVar[str] = "modelroute"

    def __init__(
        self,
        *,
        script: Iterable[Outcome] = (),
        outcomes: Mapping[str, Outcome] | None = None,
        default: Outcome | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        rate_limit: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.script: deque[Outcome] = deque(script)
        self.outcomes: dict[str, Outcome] = dict(outcomes or {})
        self.default = default or Outcome()
        self.webhook_secret = webhook_secret
        self.rate_limit = rate_limit
        self.clock = clock
        self.lock = threading.RLock()
        self.executions: dict[str, EmulatedExecution] = {}
        self.keys: dict[str, str] = {}
        self.submissions: list[str | None] = []
        self.cancels: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._counters: dict[str, int] = {}

    # -- what tests read ------------------------------------------------------

    @property
    def execution_count(self) -> int:
        with self.lock:
            return len(self.executions)

    def execution(self, execution_id: str | None = None) -> EmulatedExecution:
        """An execution by id, or the latest one."""
        with self.lock:
            if execution_id is None:
                return list(self.executions.values())[-1]
            return self.executions[execution_id]

    # -- the demo ------------------------------------------------------------

    def demo_deployment(self) -> DemoDeployment:
        # A key of ModelRoute's shape (the provider checks it before sending anything).
        return DemoDeployment("mr-chat-1", fake_key("turnout demo"), options={"poll_interval": 0.05})

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        text = (
            "ModelRoute answers a submit with 202 and an execution id; the provider polls it "
            "every poll_interval (0.05 s here) until COMPLETED, then fetches the result."
        )
        return (
            DemoScenario(
                "call", text, title="ModelRoute asynchronous execution", name="async execution", check=_flow
            ),
        )

    # -- the wire ------------------------------------------------------------

    def handle(self, request: EmulatedRequest, fault: Fault | None = None) -> EmulatedResponse:
        match = _PATH.search(request.path)
        with self.lock:
            self.requests.append((request.method, request.path))
            if match is not None and request.method == "POST" and match["id"] is None:
                self.submissions.append(request.headers.get("idempotency-key"))
        return super().handle(request, fault)

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        match = _PATH.search(request.path)
        if match is None:
            return self._plain_error(404, "NOT_FOUND", f"no route for {request.path}")
        if request.bearer() is None:
            return self._plain_error(401, "UNAUTHORIZED", "a bearer API key is required")
        execution_id, action = match["id"], match["action"]
        with self.lock:
            if execution_id is None:
                if request.method != "POST":
                    return self._plain_error(405, "METHOD_NOT_ALLOWED", "use POST")
                return self._submit(request)
            execution = self.executions.get(execution_id)
            if execution is None:
                return self._plain_error(404, "EXECUTION_NOT_FOUND", f"no execution {execution_id}")
            if action is None and request.method == "GET":
                return self._poll(execution)
            if action == "result" and request.method == "GET":
                return self._result(execution)
            if action == "cancel" and request.method == "POST":
                return self._cancel(execution)
            return self._plain_error(405, "METHOD_NOT_ALLOWED", f"{request.method} {request.path}")

    def _next_id(self, prefix: str) -> str:
        with self.lock:
            number = self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}_{number:06d}"

    def _outcome(self, model: str) -> Outcome:
        if self.script:
            return self.script.popleft()
        return self.outcomes.get(model, self.default)

    def _submit(self, request: EmulatedRequest) -> EmulatedResponse:
        payload = request.json()
        problems: list[FieldError] = []
        if not isinstance(payload, Mapping):
            problems.append(FieldError("", "invalid", "the body must be a JSON object"))
            payload = {}
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            problems.append(FieldError("model", "required", "model is required"))
        body_input = payload.get("input")
        if not isinstance(body_input, Mapping) or not isinstance(body_input.get("messages"), list):
            problems.append(FieldError("input.messages", "required", "input.messages is required"))
        if problems:
            return self.render_error("INPUT_VALIDATION_ERROR", details=tuple(problems))
        assert isinstance(model, str)
        key = request.headers.get("idempotency-key")
        known = self.keys.get(key) if key else None
        if known is not None:
            execution = self.executions[known]
            execution.submits += 1
        else:
            outcome = self._outcome(model)
            if outcome.http_error is not None:
                limited = outcome.http_error in ("RATE_LIMITED", ErrorKind.RATE_LIMITED.value)
                return self.render_error(
                    outcome.http_error,
                    retry_after=outcome.retry_after if limited else None,
                    retryable=outcome.retryable,
                )
            try:
                # The answer's text: structured output as its JSON, else the echo.
                text = outcome.text if outcome.text is not None else answer_text(payload["input"])
            except ValueError as invalid:
                field = f"input.{getattr(invalid, 'param', None) or 'messages'}"
                return self.render_error(
                    "INPUT_VALIDATION_ERROR", details=(FieldError(field, "invalid", str(invalid)),)
                )
            execution = EmulatedExecution(
                self._next_id("exe"), key, payload, text, outcome, int(self.clock())
            )
            self.executions[execution.id] = execution
            if key:
                self.keys[key] = execution.id
        if execution.submits <= execution.outcome.lost_submits:
            return self.render_error("SERVICE_UNAVAILABLE")
        return EmulatedResponse.json(202, self.view(execution), self._request_id())

    def _poll(self, execution: EmulatedExecution) -> EmulatedResponse:
        execution.polls += 1
        outcome = execution.outcome
        now = self.clock()
        if execution.polls <= outcome.rate_limited_polls:
            return self.render_error("RATE_LIMITED", retry_after=outcome.retry_after)
        execution.advance()
        successful = execution.polls - outcome.rate_limited_polls
        exhausted = successful <= outcome.exhausted_polls
        headers = (
            *self._request_id(),
            ("x-ratelimit-limit", str(self.rate_limit)),
            ("x-ratelimit-remaining", "0" if exhausted else str(max(self.rate_limit - successful, 1))),
            ("x-ratelimit-reset", _unix(now + (outcome.retry_after if exhausted else 60.0))),
        )
        return EmulatedResponse.json(200, self.view(execution), headers)

    def _result(self, execution: EmulatedExecution) -> EmulatedResponse:
        if execution.status != "COMPLETED":
            return self._plain_error(
                409, "EXECUTION_NOT_COMPLETED", f"execution {execution.id} is {execution.status}"
            )
        words = len(execution.text.split())
        result = {
            "id": execution.id,
            "model": execution.model,
            "output": {"text": execution.text},
            "usage": {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": 5 + words},
        }
        return EmulatedResponse.json(200, result, self._request_id())

    def _cancel(self, execution: EmulatedExecution) -> EmulatedResponse:
        self.cancels.append(execution.id)
        if execution.status in IN_PROGRESS:
            execution.status = "CANCELLED"
            execution.cancelled = True
        return EmulatedResponse.json(200, self.view(execution), self._request_id())

    def view(self, execution: EmulatedExecution) -> dict[str, Any]:
        """The execution object as ModelRoute's API shows it."""
        body: dict[str, Any] = {
            "id": execution.id,
            "object": "execution",
            "status": execution.status,
            "model": execution.model,
            "created_at": execution.created_at,
        }
        if execution.status == "FAILED":
            outcome = execution.outcome
            body["error"] = self.error_object(
                outcome.error,
                retryable=outcome.retryable,
                message=outcome.message,
                details=outcome.details,
                request_id=f"req_{execution.id}",
            )
        return body

    # -- errors --------------------------------------------------------------

    def _request_id(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", self._next_id("req")),)

    def _plain_error(self, status: int, code: str, message: str) -> EmulatedResponse:
        """An error outside the documented table (routing, auth): classified by status."""
        request_id = self._next_id("req")
        body = {"error": {"code": code, "message": message, "retryable": False, "request_id": request_id}}
        return EmulatedResponse.json(status, body, (("x-request-id", request_id),))

    @staticmethod
    def code_for(error: str) -> str:
        """The documented code `error` names: a code itself, or a kind's code."""
        if error in MODELROUTE_CODES:
            return error
        code = KIND_CODES.get(error)
        if code is None:
            raise ValueError(
                f"ModelRoute has no code for {error!r}; it renders its codes "
                f"({', '.join(MODELROUTE_CODES)}) and the kinds "
                f"{', '.join([*KIND_CODES, *_STATUS_ONLY])}"
            )
        return code

    def error_object(
        self,
        error: str,
        *,
        retryable: bool | None = None,
        message: str | None = None,
        details: tuple[FieldError, ...] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The `{"code", "message", "retryable", "request_id", "details"}` object."""
        code = self.code_for(error)
        rule = MODELROUTE_CODES[code]
        if details is None:
            details = _DEFAULT_DETAILS if code == "INPUT_VALIDATION_ERROR" else ()
        return {
            "code": code,
            "message": message or _MESSAGES[code],
            "retryable": rule.retryable if retryable is None else retryable,
            "request_id": request_id or self._next_id("req"),
            "details": [{"field": d.field, "code": d.code, "message": d.message} for d in details],
        }

    def render_error(
        self,
        error: str,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        details: tuple[FieldError, ...] | None = None,
    ) -> EmulatedResponse:
        """One of the 12 codes, or an ErrorKind value (`rate_limited`, `authentication`, ...),
        as ModelRoute answers it over HTTP. A 429 carries `Retry-After`,
        `X-RateLimit-Reset` and `X-RateLimit-Remaining: 0`.

        `authentication`, `permission_denied` and `not_found` have no documented
        code: they are rendered as 401/403/404 with an undocumented one. The kinds
        ModelRoute cannot express as a response (`model_not_found`,
        `context_length_exceeded`, `connection`, `stream_interrupted`,
        `parse_error`) raise ValueError; use `Fault(malformed=True)` for a bad body."""
        with self.lock:
            if error in _STATUS_ONLY:
                status, code = _STATUS_ONLY[error]
                return self._plain_error(status, code, f"ModelRoute says {error}")
            body = self.error_object(error, retryable=retryable, details=details, request_id=request_id)
            status = MODELROUTE_CODES[body["code"]].status or 500
            headers: list[tuple[str, str]] = [("x-request-id", body["request_id"])]
            if status == 429 or retry_after is not None:
                wait = 1.0 if retry_after is None else retry_after
                headers.append(("retry-after", f"{wait:g}"))
                if status == 429:
                    headers += [
                        ("x-ratelimit-limit", str(self.rate_limit)),
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", _unix(self.clock() + wait)),
                    ]
            return EmulatedResponse.json(status, {"error": body}, headers)

    def error_names(self) -> Sequence[str]:
        return list(MODELROUTE_CODES)

    # -- webhooks ------------------------------------------------------------

    def event(self, execution_id: str, event_type: str | None = None) -> dict[str, Any]:
        """The callback ModelRoute sends about an execution's current state."""
        with self.lock:
            execution = self.executions[execution_id]
            data = self.view(execution)
            if execution.status == "COMPLETED":
                data["output"] = {"text": execution.text}
            return {
                "id": self._next_id("evt"),
                "type": event_type or f"execution.{execution.status.lower()}",
                "created_at": int(self.clock()),
                "data": data,
            }

    def sign_webhook(
        self,
        payload: Mapping[str, Any] | str | bytes,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a callback carrying `payload`, signed as ModelRoute signs."""
        if isinstance(payload, Mapping):
            body = json.dumps(payload).encode()
        else:
            body = payload.encode() if isinstance(payload, str) else payload
        stamp = int(self.clock()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(body, secret or self.webhook_secret, stamp),
            TIMESTAMP_HEADER: str(stamp),
        }
        return headers, body

    def webhook(
        self,
        execution_id: str,
        *,
        event_type: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The signed callback (headers, body) for an execution's current state."""
        return self.sign_webhook(self.event(execution_id, event_type), timestamp=timestamp, secret=secret)


def _unix(seconds: float) -> str:
    """Unix seconds as a header value: whole when whole, else to the millisecond."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:.3f}"


def _flow(wire: WireLog) -> tuple[bool, Sequence[str]]:
    """The demo's check of one call: a submit answered 202, at least one poll, the result fetched."""
    polls = sum(1 for method, path, _ in wire if method == "GET" and not path.endswith("/result"))
    submitted = any(method == "POST" and status == 202 for method, _, status in wire)
    fetched = any(path.endswith("/result") and status == 200 for _, path, status in wire)
    steps = ["submit 202", f"{polls} polls", "COMPLETED", "result fetched"]
    return submitted and polls >= 1 and fetched, steps
