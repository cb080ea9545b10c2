"""Mume's wire format, reproduced: completions, streams, mid-stream error chunks
and every documented error status, as the gateway sends them.

`render_error` accepts one of the codes Mume's bodies carry
(`"rate_limit_exceeded"`), a status as a string (`"429"`), or a turnout
ErrorKind value (`"rate_limited"`).
"""

from __future__ import annotations

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
    sse,
)

from .provider import MUME_CODES

__all__ = ["DOCUMENTED_STATUSES", "MumeEmulator"]

# The statuses Mume's error table lists, and the two every gateway can answer.
DOCUMENTED_STATUSES = ("400", "401", "402", "403", "404", "429", "500", "503")

# status -> (type, message) of the envelope Mume sends when no code applies.
_STATUS_BODIES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request parameters or malformed JSON"),
    401: ("authentication_error", "Missing or invalid API key"),
    402: ("insufficient_credits", "Account has no remaining credits"),
    403: ("permission_error", "This API key is not allowed to use this resource"),
    404: ("not_found_error", "Not found"),
    408: ("timeout_error", "Request timed out"),
    409: ("conflict_error", "The request conflicts with another request in progress"),
    422: ("invalid_request_error", "Unprocessable request"),
    429: ("rate_limit_error", "Too many requests: back off and retry"),
    500: ("server_error", "Internal server error: retry with backoff"),
    502: ("upstream_error", "The provider returned an invalid response"),
    503: ("service_unavailable", "Provider temporarily unavailable"),
    504: ("timeout_error", "The provider did not answer in time"),
}

# code -> (type, message, param) of the OpenAI-convention errors.
_CODE_BODIES: Mapping[str, tuple[str, str, str | None]] = {
    "invalid_api_key": ("invalid_request_error", "Incorrect API key provided", None),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        None,
    ),
    "model_not_found": (
        "invalid_request_error",
        "The model `openai/gpt-0` does not exist or you do not have access to it.",
        "model",
    ),
    "rate_limit_exceeded": ("requests", "Rate limit reached for requests per minute", None),
    "context_length_exceeded": (
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens. "
        "However, your messages resulted in 130512 tokens.",
        "messages",
    ),
    "content_filter": ("invalid_request_error", "The response was filtered by the content filter.", None),
    "content_policy_violation": (
        "invalid_request_error",
        "Your request was rejected as a result of our safety system.",
        "messages",
    ),
}

# A turnout kind -> the error Mume sends for it.
_KIND_NAMES: Mapping[str, str] = {
    ErrorKind.AUTHENTICATION: "invalid_api_key",
    ErrorKind.PERMISSION_DENIED: "403",
    ErrorKind.INSUFFICIENT_CREDITS: "402",
    ErrorKind.NOT_FOUND: "404",
    ErrorKind.MODEL_NOT_FOUND: "model_not_found",
    ErrorKind.BAD_REQUEST: "400",
    ErrorKind.VALIDATION: "422",
    ErrorKind.CONTENT_FILTERED: "content_policy_violation",
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: "context_length_exceeded",
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.TIMEOUT: "504",
    ErrorKind.SERVER_ERROR: "500",
    ErrorKind.UPSTREAM_ERROR: "502",
    ErrorKind.UNAVAILABLE: "503",
}


class MumeEmulator(OpenAIEmulator):
    """The Mume gateway: `POST .../api/v1/chat/completions`, OpenAI shapes."""

    provider = "mume"
    chat_path = "/chat/completions"

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("openai/gpt-4.1-mini", "mume_demo")

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        return (DemoScenario("auth_fallback", "Mume rejects the key (401).", "mythicdot"),)

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        if not request.bearer():  # Mume: "401 Unauthorized: missing or invalid API key"
            return self.render_error("401")
        return super().respond(request, fault)

    def resolve(self, error: str) -> tuple[int, dict[str, Any]]:
        """(status, error object) for a code, a status string or a kind value."""
        name = _KIND_NAMES.get(error, error)
        if name in _CODE_BODIES:
            type_, message, param = _CODE_BODIES[name]
            status = MUME_CODES[name].status
            assert status is not None
            return status, {"message": message, "type": type_, "code": name, "param": param}
        if name.isascii() and name.isdigit() and len(name) == 3 and 400 <= int(name) <= 599:
            status = int(name)
            type_, message = _STATUS_BODIES.get(status, ("api_error", f"HTTP {status}"))
            param = "messages" if status == 400 else None
            return status, {"message": message, "type": type_, "code": None, "param": param}
        known = ", ".join([*self.error_names(), *_KIND_NAMES])
        raise ValueError(f"the Mume emulator cannot render {error!r}; known: {known}")

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        status, body = self.resolve(error)
        headers: list[tuple[str, str]] = [("x-request-id", request_id or self.next_id())]
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        return EmulatedResponse.json(status, {"error": body}, headers)

    def error_names(self) -> Sequence[str]:
        return [*MUME_CODES, *DOCUMENTED_STATUSES]

    @staticmethod
    def kind_names() -> Sequence[str]:
        """The ErrorKind values `render_error` accepts (those a response can carry)."""
        return [str(kind) for kind in _KIND_NAMES]

    def error_frame(self, error: str, request_id: str) -> bytes:
        """The chunk Mume sends when generation fails mid-stream: an `error` object
        (message, and the code when there is one; a status when there is not) and
        the request's `reqId` at the top level."""
        status, body = self.resolve(error)
        frame = {
            "error": {"message": body["message"], "code": body["code"] or status},
            "reqId": request_id,
        }
        return sse(frame)
