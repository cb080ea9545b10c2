"""The ModelRoute provider: asynchronous executions, written as one sans-IO flow.

    POST /v1/executions              -> 202 {"id", "status": "PENDING"}   (Idempotency-Key)
    GET  /v1/executions/{id}         -> {"id", "status"}   every `poll_interval` seconds
    GET  /v1/executions/{id}/result  -> {"id", "output": {"text"}, "usage"?}   once COMPLETED
    POST /v1/executions/{id}/cancel  best effort, when the call is abandoned

The flow (`ModelRoute.chat`) never touches a socket: it yields `Send` and
`Sleep` commands that `Router` and `AsyncRouter` perform alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import quote

from attrs import field, frozen

from turnout import (
    APITimeoutError,
    CallAbandoned,
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
    Provider,
    ProviderError,
    RetryPolicy,
    Send,
    Sleep,
    UpstreamError,
    backoff,
    finish_reason,
    parse_retry_after,
    quota_exhausted,
    usage_from,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_POLL_INTERVAL",
    "IN_PROGRESS",
    "KEY_LENGTH",
    "MODELROUTE_CODES",
    "TERMINAL",
    "ModelRoute",
    "ModelRouteOptions",
    "cancelled_error",
    "expired_error",
    "extract_modelroute",
    "fake_key",
    "key_problem",
    "quota_exhausted",
    "rate_limit_wait",
]

DEFAULT_BASE_URL: Final = "https://api.modelroute.ai"
DEFAULT_POLL_INTERVAL: Final = 2.0
# With no rate-limit hint on a 429, polls back off from `poll_interval` up to this.
MAX_THROTTLE_BACKOFF: Final = 60.0
# What a cancel's answer is read up to: it is only ever thrown away.
_CLEANUP_BODY: Final = 64 * 1024

IN_PROGRESS: Final = frozenset({"PENDING", "PROCESSING"})
TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"})

# ModelRoute's documented error codes. Codes are upper-case and compared
# case-sensitively: `rate_limited` is not `RATE_LIMITED` and falls back to the status.
MODELROUTE_CODES: Final[Mapping[str, CodeRule]] = {
    "INPUT_VALIDATION_ERROR": CodeRule(
        ErrorKind.VALIDATION, 400, retryable=False, description="the input failed validation"
    ),
    "CONTENT_MODERATION_REJECTED": CodeRule(
        ErrorKind.CONTENT_FILTERED, 400, retryable=False, description="rejected by moderation"
    ),
    "FILE_NOT_FOUND": CodeRule(
        ErrorKind.BAD_REQUEST, 400, retryable=False, description="a referenced file does not exist"
    ),
    "FILE_FORMAT_UNSUPPORTED": CodeRule(
        ErrorKind.BAD_REQUEST, 400, retryable=False, description="a referenced file's format"
    ),
    "INSUFFICIENT_BALANCE": CodeRule(
        ErrorKind.INSUFFICIENT_CREDITS, 402, retryable=False, description="the account is out of credit"
    ),
    "RATE_LIMITED": CodeRule(ErrorKind.RATE_LIMITED, 429, retryable=True, description="too many requests"),
    "MODEL_OVERLOADED": CodeRule(
        ErrorKind.UNAVAILABLE, 503, retryable=True, description="the model is overloaded"
    ),
    "MODEL_UNAVAILABLE": CodeRule(
        ErrorKind.UNAVAILABLE, 503, retryable=True, description="the model is unavailable"
    ),
    "GENERATION_TIMEOUT": CodeRule(
        ErrorKind.TIMEOUT, 504, retryable=True, description="the generation took too long"
    ),
    "GENERATION_FAILED": CodeRule(
        ErrorKind.UPSTREAM_ERROR, 500, retryable=True, description="the model failed to generate"
    ),
    "SERVICE_UNAVAILABLE": CodeRule(
        ErrorKind.UNAVAILABLE, 503, retryable=True, description="ModelRoute is unavailable"
    ),
    "INTERNAL_ERROR": CodeRule(
        ErrorKind.SERVER_ERROR, 500, retryable=False, description="ModelRoute failed; not retried"
    ),
}

# -- keys ---------------------------------------------------------------------

KEY_LENGTH: Final = 76
_KEY_SHAPE = re.compile(r"sk_[0-9a-fA-F]{64}_[0-9a-fA-F]{8}")
_KEY_HELP = "expected sk_<64 hex>_<8 hex>, 76 characters"


def key_problem(key: str | None) -> str | None:
    """What is wrong with the shape of a ModelRoute key, or None when it looks right.

    The message never quotes the key. Only the shape is checked: the trailing
    eight hex digits are a CRC32 whose exact input ModelRoute does not
    document, and rejecting a valid key would be worse than sending one the
    gateway then refuses with a 401.
    """
    if not key:
        return f"is missing; {_KEY_HELP}"
    if _KEY_SHAPE.fullmatch(key):
        return None
    if key != key.strip():
        return f"has leading or trailing whitespace; {_KEY_HELP}"
    if not key.startswith("sk_"):
        return f"does not start with 'sk_'; {_KEY_HELP}"
    if len(key) != KEY_LENGTH:
        return f"is {len(key)} characters long; {_KEY_HELP}"
    return f"is not of the documented shape; {_KEY_HELP}"


def fake_key(seed: str = "turnout") -> str:
    """A well-formed (and worthless) key for tests, demos and emulators.

    Its checksum is a CRC32 of the 64 hex digits: a guess at ModelRoute's
    scheme, which turnout never verifies.
    """
    body = hashlib.sha256(seed.encode()).hexdigest()
    return f"sk_{body}_{zlib.crc32(body.encode()):08x}"


# -- errors -------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _details(value: Any) -> tuple[FieldError, ...]:
    if not isinstance(value, list):
        return ()
    found: list[FieldError] = []
    for item in value[:100]:
        if isinstance(item, Mapping):
            found.append(
                FieldError(
                    field=_text(item.get("field")) or "",
                    code=_text(item.get("code")),
                    message=_text(item.get("message")) or "",
                )
            )
    return tuple(found)


def extract_modelroute(payload: Any) -> ErrorFields:
    """ModelRoute's envelope `{"error": {"code", "message", "retryable", "request_id",
    "details": [{"field", "code", "message"}]}}`, or the bare inner object (as a
    FAILED execution may carry it). Any other shape yields what can be read."""
    if not isinstance(payload, Mapping):
        return ErrorFields()
    error = payload.get("error", payload)
    if isinstance(error, str):
        return ErrorFields(message=error, request_id=_text(payload.get("request_id")))
    if not isinstance(error, Mapping):
        return ErrorFields(message=_text(payload.get("message")))
    retryable = error.get("retryable")
    return ErrorFields(
        code=_text(error.get("code")),
        message=_text(error.get("message")),
        request_id=_text(error.get("request_id")),
        retryable=retryable if isinstance(retryable, bool) else None,
        details=_details(error.get("details")),
    )


# -- rate limits --------------------------------------------------------------


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until ModelRoute lets us in again: the longest of `Retry-After`
    (seconds or HTTP-date) and `X-RateLimit-Reset` (unix seconds; a small number
    is read as seconds from now), bounded by `turnout.MAX_HINT`. `headers` have
    lower-case names; `now` is unix time. (turnout's one hint parser.)"""
    return parse_retry_after(headers, now=now)


def expired_error(execution_id: str) -> ProviderError:
    """An `EXPIRED` execution: timeout, retryable (a retry submits a new execution)."""
    return APITimeoutError(
        f"execution {execution_id} expired before it completed",
        provider="modelroute",
        code="EXPIRED",
        request_id=execution_id,
        extra={"execution_id": execution_id},
    )


def cancelled_error(execution_id: str) -> ProviderError:
    """A `CANCELLED` execution (by someone else than this call): upstream_error, not retryable."""
    return UpstreamError(
        f"execution {execution_id} was cancelled",
        provider="modelroute",
        code="CANCELLED",
        retryable=False,
        request_id=execution_id,
        extra={"execution_id": execution_id},
    )


def _is_deadline(error: ProviderError) -> bool:
    return isinstance(error, APITimeoutError) and error.code == "deadline_exceeded"


# -- the provider ---------------------------------------------------------------


Seconds = Annotated[float, Check(lambda value: _positive(value), "must be a positive number of seconds")]


@frozen
class ModelRouteOptions:
    """A ModelRoute deployment's options: how often a running execution is polled,
    default sampling parameters (the call's own win), and the metadata every
    execution is submitted with."""

    poll_interval: Seconds = DEFAULT_POLL_INTERVAL
    params: dict[str, Any] = field(factory=dict)
    metadata: dict[str, Any] = field(factory=dict)


class ModelRoute(Provider):
    """ModelRoute's executions API.

    Deployment options: `poll_interval` (seconds between polls, default 2),
    `params` (default sampling parameters, merged under the call's) and
    `metadata` (a mapping sent as the execution's `metadata`; a call's own
    `metadata=` is never sent, and `extra_body={"metadata": ...}` replaces it).

    `clock` is the wall clock (unix seconds) that `X-RateLimit-Reset` is read against.
    """

    name = "modelroute"
    default_base_url = DEFAULT_BASE_URL
    error_table = ErrorTable(codes=MODELROUTE_CODES, case_sensitive=True)
    retry_policy = RetryPolicy(max_retries=3, base=1.0, cap=30.0, jitter="full")
    request_id_headers = ("x-request-id",)
    options_type: ClassVar[type | None] = ModelRouteOptions
    # The documented `input` carries the messages verbatim (content parts included) and
    # the parameters (`response_format` included); the `output` is text only, so an
    # answer's tool calls could not come back: a request with tools goes elsewhere.
    capabilities: ClassVar[frozenset[str]] = frozenset({"content_parts", "response_format"})

    # Calls whose execution already ended FAILED or EXPIRED, per (deployment, call_id):
    # their next submit needs a fresh key. Bounded: only recent calls matter.
    MAX_REMEMBERED_CALLS: ClassVar[int] = 4096

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._generations: OrderedDict[tuple[str, str], int] = OrderedDict()

    # -- configuration -------------------------------------------------------

    def check_deployment(self, deployment: Deployment, path: str) -> None:
        super().check_deployment(deployment, path)  # the options, typed (ModelRouteOptions)
        # The key is never shown: the message says only what is wrong with its shape.
        problem = key_problem(deployment.key())
        if problem is not None:
            raise ConfigError(f"the ModelRoute API key {problem}", path=f"{path}.api_key", show_value=False)

    def options(self, deployment: Deployment) -> ModelRouteOptions:
        return self.typed_options(deployment, ModelRouteOptions)

    def poll_interval(self, deployment: Deployment) -> float:
        return float(self.options(deployment).poll_interval)

    # -- errors --------------------------------------------------------------

    def extract_error(self, payload: Any) -> ErrorFields:
        return extract_modelroute(payload)

    def execution_error(self, error: Any, execution_id: str | None = None) -> ProviderError:
        """The normalized error of a FAILED execution (its `error` object, or the
        whole envelope), with the status its code's table row gives (None for an
        unknown code, which is upstream_error)."""
        if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
            error = error["error"]
        inner = dict(error) if isinstance(error, Mapping) else {}
        if not isinstance(inner.get("message"), str) or not inner["message"]:
            inner["message"] = f"execution {execution_id or '?'} failed"
        rule = self.error_table.rule(_text(inner.get("code")))
        failure = self.normalize(status=rule.status if rule else None, body={"error": inner})
        if execution_id is not None:
            failure.request_id = failure.request_id or execution_id
            failure.extra = {**failure.extra, "execution_id": execution_id}
        return failure

    # -- requests ------------------------------------------------------------

    def payload(self, deployment: Deployment, request: ChatRequest) -> dict[str, Any]:
        options = self.options(deployment)
        params: dict[str, Any] = {**options.params, **request.params}
        body: dict[str, Any] = {
            "model": deployment.model,
            "input": {**params, "messages": [m.to_wire() for m in request.messages]},
        }
        # The deployment's configured execution metadata; a call's own `metadata=` is
        # never sent (it is for observers): a call sets the execution's with
        # `extra_body={"metadata": {...}}`, merged over the body as given.
        if options.metadata:
            body["metadata"] = dict(options.metadata)
        body.update(request.extra_body)
        return body

    def idempotency_key(self, deployment: Deployment, request: ChatRequest) -> str:
        """The same for every retry of one call on one deployment, new for each call.

        It changes only once an execution under it has ended FAILED or EXPIRED:
        ModelRoute would hand that same failed execution back for the old key,
        so a retry needs a new one (and nothing can run twice: the first ended).
        """
        with self._lock:
            generation = self._generations.get((deployment.name, request.call_id), 0)
        seed = f"{deployment.name}\x00{request.call_id}\x00{generation}"
        return "turnout-" + hashlib.sha256(seed.encode()).hexdigest()[:48]

    def _execution_ended(self, deployment: Deployment, request: ChatRequest) -> None:
        call = (deployment.name, request.call_id)
        with self._lock:
            self._generations[call] = self._generations.pop(call, 0) + 1
            while len(self._generations) > self.MAX_REMEMBERED_CALLS:
                self._generations.popitem(last=False)

    # -- the flow ------------------------------------------------------------

    def chat(self, deployment: Deployment, request: ChatRequest) -> Flow[ChatResponse]:
        base = self.base_url(deployment)
        headers = self.auth_headers(deployment)
        interval = self.poll_interval(deployment)
        submit = HTTPRequest.json(
            "POST",
            f"{base}/v1/executions",
            self.payload(deployment, request),
            headers={**headers, "idempotency-key": self.idempotency_key(deployment, request)},
        )
        submitted: HTTPResponse = yield Send(submit)
        if not submitted.ok:
            raise self.error_from(submitted)
        execution = self._execution(submitted)
        execution_id: str = execution["id"]
        url = f"{base}/v1/executions/{quote(execution_id, safe='')}"
        cancel = HTTPRequest("POST", f"{url}/cancel", headers)
        poll = HTTPRequest("GET", url, headers)

        wait = interval
        throttled = 0
        while execution["status"] not in TERMINAL:
            yield from self._guard(Sleep(wait), cancel)
            polled: HTTPResponse = yield from self._guard(Send(poll), cancel)
            if polled.status == 429:
                # Slow down instead of failing: the execution keeps running meanwhile.
                throttled += 1
                wait = self._throttle_wait(polled.headers, interval, throttled)
                continue
            if not polled.ok:
                # Not cancelled: the router's retry resubmits with the same key and
                # resumes this very execution.
                raise self.error_from(polled)
            execution = self._execution(polled, execution_id)
            throttled = 0
            wait = interval
            if quota_exhausted(polled.headers):
                wait = max(interval, rate_limit_wait(polled.headers, self._clock()) or 0.0)

        status = execution["status"]
        if status == "COMPLETED":
            return (yield from self._result(url, headers, interval, execution))
        if status == "CANCELLED":
            raise cancelled_error(execution_id)
        self._execution_ended(deployment, request)
        if status == "EXPIRED":
            raise expired_error(execution_id)
        raise self.execution_error(execution.get("error"), execution_id)

    def _result(
        self, url: str, headers: Mapping[str, str], interval: float, execution: Mapping[str, Any]
    ) -> Flow[ChatResponse]:
        throttled = 0
        while True:
            # Nothing to cancel any more: a deadline or cancellation here just ends the call.
            response: HTTPResponse = yield Send(HTTPRequest("GET", f"{url}/result", headers))
            if response.status != 429:
                break
            throttled += 1
            yield Sleep(self._throttle_wait(response.headers, interval, throttled))
        if not response.ok:
            raise self.error_from(response)
        payload = self._json_object(response, "result")
        output = payload.get("output")
        if not isinstance(output, Mapping) or not isinstance(output.get("text"), str):
            raise self.parse_error("the execution's result has no output text", response)
        text: str = output["text"]
        model = payload.get("model", execution.get("model"))
        return ChatResponse(
            content=text,
            # The output is text only: it ends as a whole text answer does.
            finish_reason=finish_reason(output.get("finish_reason")) or "stop",
            usage=usage_from(payload.get("usage")),
            model=model if isinstance(model, str) else None,
            request_id=execution["id"],
            message={"role": "assistant", "content": text},
            raw=payload,
            headers=dict(response.headers),
        )

    def _guard(self, command: Send | Sleep, cancel: HTTPRequest) -> Flow[Any]:
        """Perform one command; if the call is abandoned meanwhile (the deadline, or
        the caller), cancel the execution best effort and let the reason go on."""
        try:
            return (yield command)
        except CallAbandoned:
            yield from self._cancel(cancel)
            raise
        except ProviderError as exc:
            # During a Sleep the only thing the driver throws is the deadline.
            if isinstance(command, Sleep) or _is_deadline(exc):
                yield from self._cancel(cancel)
            raise

    @staticmethod
    def _cancel(request: HTTPRequest) -> Flow[None]:
        # Sent even after the deadline (cleanup=True); its failure changes nothing.
        with contextlib.suppress(ProviderError):
            yield Send(request, max_body=_CLEANUP_BODY, cleanup=True)

    def _throttle_wait(self, headers: Mapping[str, str], interval: float, throttled: int) -> float:
        hint = rate_limit_wait(headers, self._clock())
        if hint is not None:
            return max(interval, hint)
        return max(interval, backoff(throttled - 1, base=interval, cap=MAX_THROTTLE_BACKOFF))

    # -- parsing -------------------------------------------------------------

    def _json_object(self, response: HTTPResponse, what: str) -> Mapping[str, Any]:
        if response.truncated:
            raise self.parse_error(f"the {what} body is larger than allowed", response)
        try:
            payload = json.loads(response.body)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
            raise self.parse_error(f"the {what} body is not JSON", response) from None
        if not isinstance(payload, Mapping):
            raise self.parse_error(f"the {what} body is not a JSON object", response)
        if isinstance(payload.get("error"), Mapping) and not _ANSWER_KEYS & payload.keys():
            # ModelRoute's error envelope under a 2xx (a proxy's rewrite, a gateway bug):
            # the error it names, not a parse error (a FAILED execution has a status).
            raise self.normalize(status=None, headers=response.headers, body=payload)
        return payload

    def _execution(self, response: HTTPResponse, execution_id: str | None = None) -> dict[str, Any]:
        """An execution object with a string `id` and `status`."""
        payload = dict(self._json_object(response, "execution"))
        if execution_id is None:
            found = payload.get("id")
            if not isinstance(found, str) or not found:
                raise self.parse_error("the execution has no id", response)
        else:
            payload["id"] = execution_id
        status = payload.get("status")
        if not isinstance(status, str) or not status:
            raise self.parse_error("the execution has no status", response)
        # Statuses ModelRoute may add later are treated as still running.
        return payload


# What an execution or a result carries, and an error envelope does not.
_ANSWER_KEYS = frozenset({"id", "status", "output"})


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
