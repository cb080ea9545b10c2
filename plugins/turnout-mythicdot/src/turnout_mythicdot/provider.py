"""The MythicDot API: OpenAI-style chat completions, its error table and retry policy.

MythicDot answers `POST {base_url}/chat/completions` (base
`https://api.mythicdot.ai/v1`) with OpenAI's completion and
`chat.completion.chunk` shapes, authenticates with `Authorization: Bearer
sk-...`, and reports failures in the OpenAI envelope
`{"error": {"message", "type", "param", "code"}}` with the request id in
`x-request-id`. Everything that differs from the core's OpenAI codec is data:
the codes below, one wording rule, and the documented retry policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from attrs import field, frozen

from turnout import (
    Check,
    CodeRule,
    Deployment,
    ErrorKind,
    ErrorTable,
    MessageRule,
    OpenAICompatible,
    OpenAIOptions,
    RetryPolicy,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MYTHICDOT_CODES",
    "MYTHICDOT_ERRORS",
    "MYTHICDOT_RETRY_POLICY",
    "ORGANIZATION_HEADER",
    "MythicDot",
    "MythicDotOptions",
]

DEFAULT_BASE_URL = "https://api.mythicdot.ai/v1"
# Sent when a deployment sets the `organization` option (keys that belong to several).
ORGANIZATION_HEADER = "mythicdot-organization"

_E = ErrorKind

# The codes MythicDot documents, by status. Anything else falls back by status
# (400 bad_request, 401 authentication, 403 permission_denied, 404 not_found,
# 429 rate_limited, 500 server_error, 503 unavailable, ...).
MYTHICDOT_CODES: Mapping[str, CodeRule] = {
    # 400: the request itself is wrong; repeating it cannot help.
    "invalid_json": CodeRule(_E.BAD_REQUEST, 400, description="the body is not valid JSON"),
    "missing_parameter": CodeRule(_E.BAD_REQUEST, 400, description="a required parameter is missing"),
    "invalid_parameter": CodeRule(_E.BAD_REQUEST, 400, description="a parameter has an invalid value"),
    "max_tokens_exceeded": CodeRule(
        _E.CONTEXT_LENGTH_EXCEEDED, 400, description="prompt plus max_tokens exceed the model's token limit"
    ),
    "context_length_exceeded": CodeRule(
        _E.CONTEXT_LENGTH_EXCEEDED, 400, description="the messages exceed the model's context length"
    ),
    # 401: the key (or the organization it is used with) is not accepted.
    "invalid_api_key": CodeRule(_E.AUTHENTICATION, 401, description="the API key is not valid"),
    "missing_api_key": CodeRule(_E.AUTHENTICATION, 401, description="no Authorization header"),
    "revoked_api_key": CodeRule(_E.AUTHENTICATION, 401, description="the API key was revoked"),
    "invalid_organization": CodeRule(
        _E.AUTHENTICATION, 401, description="the key does not belong to the organization named"
    ),
    # 403: authenticated, but not allowed.
    "model_not_in_plan": CodeRule(
        _E.PERMISSION_DENIED, 403, description="the model is not available on the account's plan"
    ),
    "insufficient_scope": CodeRule(_E.PERMISSION_DENIED, 403, description="the key lacks the needed scope"),
    "unsupported_region": CodeRule(
        _E.PERMISSION_DENIED, 403, description="the API is not available in the caller's region"
    ),
    "account_suspended": CodeRule(_E.PERMISSION_DENIED, 403, description="the account is suspended"),
    # 404.
    "not_found": CodeRule(_E.NOT_FOUND, 404, description="no such endpoint or resource"),
    "model_not_found": CodeRule(_E.MODEL_NOT_FOUND, 404, description="no such model"),
    # 429: requests-per-minute (`type` "requests") or tokens-per-minute (`type` "tokens").
    "rate_limit_exceeded": CodeRule(_E.RATE_LIMITED, 429, description="RPM or TPM limit reached"),
    # 5xx.
    "server_error": CodeRule(_E.SERVER_ERROR, 500, description="an internal error"),
    "overloaded": CodeRule(_E.UNAVAILABLE, 503, description="the service is overloaded"),
    "maintenance": CodeRule(_E.UNAVAILABLE, 503, description="the service is down for maintenance"),
}

MYTHICDOT_ERRORS = ErrorTable(
    codes=MYTHICDOT_CODES,
    # "exceeded max token limit" and friends, when a 400 carries no code. One
    # pattern per rule, without `|`, so the generated docs table stays a table.
    message_rules=[
        MessageRule(pattern, _E.CONTEXT_LENGTH_EXCEEDED, {400})
        for pattern in (
            r"max(imum)?[ _-]?tokens?[ _-]?limit",
            r"context length",
            r"context window",
            r"too many tokens",
        )
    ],
)

# MythicDot's documented client behaviour: 2 retries on 429, 500 and 503, on
# client-side timeouts and on connection errors; base 0.5 s, cap 8 s, full
# jitter; never sooner than the server's Retry-After (the core guarantees it).
MYTHICDOT_RETRY_POLICY = RetryPolicy(
    max_retries=2,
    base=0.5,
    cap=8.0,
    jitter="full",
    retry_on=frozenset({_E.RATE_LIMITED, _E.SERVER_ERROR, _E.UNAVAILABLE, _E.TIMEOUT, _E.CONNECTION}),
    retry_statuses=frozenset({429, 500, 503}),
)


def _filled(value: str) -> bool:
    return bool(value.strip())


@frozen
class MythicDotOptions(OpenAIOptions):
    """A MythicDot deployment's options: the organization its requests are billed to
    (sent as `OpenAI-Organization`), and the codec's `headers` and `params`."""

    organization: Annotated[str, Check(_filled, "must be a non-empty string")] | None = field(
        default=None, kw_only=True
    )


class MythicDot(OpenAICompatible):
    """The MythicDot API. Options: `organization`, plus the codec's `headers` and `params`."""

    name = "mythicdot"
    default_base_url = DEFAULT_BASE_URL
    chat_path = "/chat/completions"
    error_table = MYTHICDOT_ERRORS
    retry_policy = MYTHICDOT_RETRY_POLICY
    request_id_headers = ("x-request-id",)
    options_type: ClassVar[type | None] = MythicDotOptions

    def auth_headers(self, deployment: Deployment) -> dict[str, str]:
        headers = super().auth_headers(deployment)
        organization = self.typed_options(deployment, MythicDotOptions).organization
        if organization is not None:
            headers[ORGANIZATION_HEADER] = organization
        return headers
