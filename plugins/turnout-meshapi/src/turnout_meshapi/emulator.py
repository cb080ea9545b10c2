"""MeshAPI's wire format, reproduced: completions, SSE streams and every documented error.

Errors are rendered as MeshAPI sends them: the documented status, the JSON
envelope `{"error": {"code", "message", "request_id", ...}}` (with
`retry_after_seconds` on a 429, `provider_error` on an upstream failure,
`details` on a validation error) and the `X-Request-Id` / `Retry-After`
headers. Mid-stream errors are `data:` frames holding the same envelope.

`render_error` takes a MeshAPI code, an `ErrorKind` value (rendered with the
code MeshAPI uses for it) or a status as a string. Kinds MeshAPI has no code
for are rendered as what reaches a client in those cases: FastAPI's
`{"detail": ...}` body with the kind's usual status, or, for `connection`, a
proxy's HTML page.
"""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from typing import Any

from turnout import ErrorKind
from turnout.emulation import (
    DemoDeployment,
    DemoScenario,
    EmulatedRequest,
    EmulatedResponse,
    Fault,
    OpenAIEmulator,
    html_page,
)

from .provider import MESHAPI_CODES

__all__ = ["KIND_CODES", "MeshAPIEmulator"]

# The code MeshAPI answers with for each kind it has one for.
KIND_CODES: Mapping[str, str] = {
    ErrorKind.AUTHENTICATION: "unauthorized",
    ErrorKind.PERMISSION_DENIED: "forbidden",
    ErrorKind.INSUFFICIENT_CREDITS: "spend_limit_exceeded",
    ErrorKind.NOT_FOUND: "not_found",
    ErrorKind.MODEL_NOT_FOUND: "model_not_found",
    ErrorKind.VALIDATION: "validation_error",
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.UPSTREAM_ERROR: "upstream_error",
    ErrorKind.TIMEOUT: "gateway_timeout",
    ErrorKind.SERVER_ERROR: "internal_error",
    ErrorKind.PARSE_ERROR: "parse_error",
    ErrorKind.STREAM_INTERRUPTED: "stream_interrupted",
}

# Kinds without a MeshAPI code: the status a client sees for them.
_UNCODED_STATUSES: Mapping[str, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.CONTENT_FILTERED: 400,
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: 400,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.CONNECTION: 502,
}

# parse_error and stream_interrupted have no documented status: when one has to be
# sent as a response rather than a frame, it is the gateway's "bad gateway".
_NO_STATUS = 502

_MESSAGES: Mapping[str, str] = {
    "unauthorized": "Invalid or missing API key",
    "forbidden": "API key is suspended",
    "not_found": "Resource not found",
    "model_not_found": "The requested model is not available",
    "spend_limit_exceeded": "Account balance at zero. Top up to continue.",
    "validation_error": "Request body failed validation",
    "unprocessable_entity": "Request body could not be processed",
    "rate_limit_exceeded": "Rate limit exceeded: requests per minute",
    "upstream_error": "The model provider returned an error",
    "gateway_timeout": "The model provider did not answer in time",
    "internal_error": "Internal server error",
    "parse_error": "The model provider's response could not be parsed",
    "stream_interrupted": "The upstream stream was interrupted",
}


def _number(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class MeshAPIEmulator(OpenAIEmulator):
    """A MeshAPI gateway: `POST .../v1/chat/completions` with a Bearer key."""

    provider = "meshapi"
    chat_path = "/v1/chat/completions"

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("openai/gpt-4o-mini", "rsk_demo", name="mesh")

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        return (
            DemoScenario("rate_limit", "MeshAPI answers 429 with a Retry-After header."),
            DemoScenario("stream_cut", "MeshAPI's connection drops in the middle of a stream.", "mythicdot"),
        )

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        if not request.bearer():
            return self.render_error("unauthorized")
        if request.method == "POST" and request.path.endswith(self.chat_path):
            payload = request.json()
            if not isinstance(payload, Mapping):
                return self._validation(
                    [{"field": "body", "code": "json_invalid", "message": "Invalid JSON"}]
                )
            messages = payload.get("messages")
            if not isinstance(messages, list) or not messages:
                return self._validation(
                    [{"field": "messages", "code": "missing", "message": "Field required"}]
                )
        return super().respond(request, fault)

    def _validation(self, details: list[dict[str, Any]]) -> EmulatedResponse:
        request_id = self.next_id()
        body = {
            "error": {
                "code": "validation_error",
                "message": _MESSAGES["validation_error"],
                "request_id": request_id,
                "details": details,
            }
        }
        return EmulatedResponse.json(422, body, (("x-request-id", request_id),))

    def envelope(self, code: str, request_id: str, retry_after: float | None = None) -> dict[str, Any]:
        """The `error` object MeshAPI sends for `code`."""
        error: dict[str, Any] = {"code": code, "message": _MESSAGES.get(code, code), "request_id": request_id}
        if code == "rate_limit_exceeded" and retry_after is not None:
            error["retry_after_seconds"] = _number(retry_after)
        elif code == "upstream_error":
            error["provider_error"] = {
                "provider": "openai",
                "status": 503,
                "message": "The server is overloaded or not ready yet.",
            }
        elif code in ("validation_error", "unprocessable_entity"):
            error["details"] = [
                {"field": "temperature", "code": "less_than_equal", "message": "must be <= 2"},
            ]
        return error

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        request_id = request_id or self.next_id()
        headers: list[tuple[str, str]] = [("x-request-id", request_id)]
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        code = KIND_CODES.get(error, error)
        rule = MESHAPI_CODES.get(code)
        if rule is not None:
            body = {"error": self.envelope(code, request_id, retry_after)}
            return EmulatedResponse.json(rule.status or _NO_STATUS, body, headers)
        if error == ErrorKind.CONNECTION:
            return html_page(502)
        status = _UNCODED_STATUSES.get(error)
        if status is None and error.isdigit() and 100 <= int(error) <= 599:
            status = int(error)
        if status is None:
            known = ", ".join([*MESHAPI_CODES, *(k for k in ErrorKind if k not in KIND_CODES)])
            raise ValueError(f"meshapi has no error {error!r}; known: {known}")
        return EmulatedResponse.json(status, {"detail": _phrase(status)}, headers)

    def error_frame(self, error: str, request_id: str) -> bytes:
        """The mid-stream frame: the same envelope as a `data:` event (a frame for a kind
        MeshAPI has no code for carries no code, which its SDK reads as upstream_error)."""
        code = KIND_CODES.get(error, error)
        if code in MESHAPI_CODES:
            envelope = self.envelope(code, request_id)
        else:
            envelope = {"message": f"upstream failure: {error}", "request_id": request_id}
        return b"data: " + EmulatedResponse.json(200, {"error": envelope}).body + b"\n\n"

    def error_names(self) -> Sequence[str]:
        return list(MESHAPI_CODES)
