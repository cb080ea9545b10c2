"""MythicDot's wire format, reproduced: completions, streams and every documented error.

Errors are rendered as MythicDot sends them: the documented status, the
OpenAI-style envelope `{"error": {"message", "type", "param", "code"}}`, an
`x-request-id` header on every response, and `Retry-After` on 429 and 503
(429s also carry the `x-ratelimit-*-requests` / `-tokens` headers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

from turnout.emulation import (
    DemoDeployment,
    DemoScenario,
    EmulatedRequest,
    EmulatedResponse,
    Fault,
    OpenAIEmulator,
    html_page,
)

from .provider import MYTHICDOT_CODES

__all__ = ["ERROR_CATALOGUE", "KIND_CODES", "PAGE_KINDS", "MythicDotEmulator", "WireError"]

LimitType = Literal["requests", "tokens"]


class WireError(NamedTuple):
    """How MythicDot words one documented error."""

    type: str
    message: str
    param: str | None = None


_INVALID = "invalid_request_error"
_AUTH = "authentication_error"
_PERM = "permission_error"

# code -> (type, message, param); statuses come from the provider's table.
ERROR_CATALOGUE: Mapping[str, WireError] = {
    "invalid_json": WireError(
        _INVALID, "We could not parse the JSON body of your request. Please send valid JSON."
    ),
    "missing_parameter": WireError(_INVALID, "Missing required parameter: 'messages'.", "messages"),
    "invalid_parameter": WireError(
        _INVALID, "Invalid value for 'temperature': must be between 0 and 2.", "temperature"
    ),
    "max_tokens_exceeded": WireError(
        _INVALID,
        "Request exceeded max token limit: 'max_tokens' plus the prompt must not exceed 32768 tokens.",
        "max_tokens",
    ),
    "context_length_exceeded": WireError(
        _INVALID,
        "This model's maximum context length is 32768 tokens, but your messages resulted in 40125 tokens.",
        "messages",
    ),
    "invalid_api_key": WireError(_AUTH, "Incorrect API key provided. Find your keys in the dashboard."),
    "missing_api_key": WireError(
        _AUTH, "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...'."
    ),
    "revoked_api_key": WireError(_AUTH, "This API key has been revoked."),
    "invalid_organization": WireError(_AUTH, "The API key does not belong to the organization you named."),
    "model_not_in_plan": WireError(_PERM, "The model 'mythic-4' is not available on your plan.", "model"),
    "insufficient_scope": WireError(_PERM, "This API key lacks the scope 'chat.completions:write'."),
    "unsupported_region": WireError(_PERM, "The MythicDot API is not available in your country or region."),
    "account_suspended": WireError(_PERM, "Your account has been suspended. Contact support."),
    "not_found": WireError(_INVALID, "Unknown request URL. Please check the URL and method."),
    "model_not_found": WireError(_INVALID, "The model 'mythic-0' does not exist.", "model"),
    "rate_limit_exceeded": WireError(
        "requests", "Rate limit reached for mythic-4 on requests per min (RPM): Limit 60, Used 60."
    ),
    "server_error": WireError("server_error", "The server had an error while processing your request."),
    "overloaded": WireError(
        "service_unavailable", "The engine is currently overloaded, please try again later."
    ),
    "maintenance": WireError("service_unavailable", "The API is down for scheduled maintenance."),
}

# The code the emulator sends for a kind MythicDot documents.
KIND_CODES: Mapping[str, str] = {
    "bad_request": "invalid_parameter",
    "context_length_exceeded": "context_length_exceeded",
    "authentication": "invalid_api_key",
    "permission_denied": "model_not_in_plan",
    "not_found": "not_found",
    "model_not_found": "model_not_found",
    "rate_limited": "rate_limit_exceeded",
    "server_error": "server_error",
    "unavailable": "overloaded",
}
# Kinds MythicDot itself never reports, but the load balancer in front of it
# does: an nginx page with the status the taxonomy gives the kind.
PAGE_KINDS: Mapping[str, int] = {"upstream_error": 502, "timeout": 504}

_TPM_MESSAGE = (
    "Rate limit reached for mythic-4 on tokens per min (TPM): Limit 40000, Used 39500, Requested 900."
)


class MythicDotEmulator(OpenAIEmulator):
    """The MythicDot API as `turnout.emulation.mock_transport` and `serve-fake` serve it.

    `render_error` takes one of the codes in `error_names()` or a kind
    (`"rate_limited"`); `default_retry_after` is the `Retry-After` a 429 or
    503 carries when the fault names none.
    """

    provider: ClassVar[str] = "mythicdot"
    chat_path: ClassVar[str] = "/chat/completions"

    def __init__(self, *, default_retry_after: float = 1.0) -> None:
        super().__init__()
        self.default_retry_after = default_retry_after

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("mythic-4", "sk-mythic-demo", name="mythic")

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        text = "MythicDot's connection drops before the first chunk of a stream."
        return (DemoScenario("stream_fallback", text, "meshapi"),)

    # -- the working gateway -------------------------------------------------

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        if request.method != "POST" or not request.path.endswith(self.chat_path):
            return self.render_error("not_found")
        if not request.bearer():
            return self.render_error("missing_api_key")
        payload = request.json()
        if not isinstance(payload, Mapping):
            return self.render_error("invalid_json")
        for name in ("model", "messages"):
            if name not in payload:
                return self.render(
                    "missing_parameter", param=name, message=f"Missing required parameter: '{name}'."
                )
        if not isinstance(payload["messages"], list):
            return self.render(
                "invalid_parameter",
                param="messages",
                message="Invalid type for 'messages': expected an array.",
            )
        return super().respond(request, fault)

    # -- errors --------------------------------------------------------------

    def error_names(self) -> Sequence[str]:
        return list(MYTHICDOT_CODES)

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        """The response for a MythicDot code or a kind (`"rate_limited"`, `"timeout"`, ...)."""
        if error in PAGE_KINDS:
            page = html_page(PAGE_KINDS[error])
            return EmulatedResponse(
                page.status,
                (*page.headers, ("x-request-id", request_id or self.next_id())),
                page.body,
            )
        return self.render(KIND_CODES.get(error, error), retry_after=retry_after, request_id=request_id)

    def render(
        self,
        code: str,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
        param: str | None = None,
        message: str | None = None,
        limit: LimitType = "requests",
    ) -> EmulatedResponse:
        """One documented error, with its wording optionally changed. `limit` picks the
        RPM (`"requests"`) or TPM (`"tokens"`) flavour of `rate_limit_exceeded`."""
        rule = MYTHICDOT_CODES.get(code)
        wire = ERROR_CATALOGUE.get(code)
        if rule is None or wire is None or rule.status is None:
            known = sorted([*MYTHICDOT_CODES, *KIND_CODES, *PAGE_KINDS])
            raise ValueError(f"MythicDot has no error {code!r}; known: {', '.join(known)}")
        status = rule.status
        error: dict[str, Any] = {
            "message": message or wire.message,
            "type": wire.type,
            "param": param if param is not None else wire.param,
            "code": code,
        }
        headers: list[tuple[str, str]] = [("x-request-id", request_id or self.next_id())]
        if status in (429, 503):
            wait = self.default_retry_after if retry_after is None else retry_after
            headers.append(("retry-after", f"{wait:g}"))
        if status == 429:
            error["type"] = limit
            if limit == "tokens" and message is None:
                error["message"] = _TPM_MESSAGE
            headers += self._rate_limit_headers(limit)
        return EmulatedResponse.json(status, {"error": error}, headers)

    @staticmethod
    def _rate_limit_headers(limit: LimitType) -> list[tuple[str, str]]:
        requests_left = "0" if limit == "requests" else "41"
        tokens_left = "500" if limit == "tokens" else "38000"
        return [
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", requests_left),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "40000"),
            ("x-ratelimit-remaining-tokens", tokens_left),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]

    def error_frame(self, error: str, request_id: str) -> bytes:
        """A mid-stream error: the same envelope as one `data:` event before the stream ends."""
        if error in PAGE_KINDS:
            raise ValueError(f"MythicDot cannot report {error!r} inside a stream")
        return super().error_frame(error, request_id)
