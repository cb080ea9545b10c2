"""A small OpenAI-compatible gateway for the core's own tests ("acme").

It plays the role simonw/llm's echo plugin plays there: the core is tested
against a provider and an emulator built only from the public toolkit.
"""

from __future__ import annotations

from collections.abc import Sequence

from turnout import CodeRule, ErrorKind, ErrorTable, OpenAICompatible, RetryPolicy
from turnout.emulation import EmulatedResponse, OpenAIEmulator

ACME_CODES = {
    "invalid_key": CodeRule(ErrorKind.AUTHENTICATION, 401),
    "no_credit": CodeRule(ErrorKind.INSUFFICIENT_CREDITS, 402),
    "forbidden": CodeRule(ErrorKind.PERMISSION_DENIED, 403),
    "model_missing": CodeRule(ErrorKind.MODEL_NOT_FOUND, 404),
    "bad_request": CodeRule(ErrorKind.BAD_REQUEST, 400),
    "not_found": CodeRule(ErrorKind.NOT_FOUND, 404),
    "invalid_field": CodeRule(ErrorKind.VALIDATION, 422),
    "content_blocked": CodeRule(ErrorKind.CONTENT_FILTERED, 400),
    "too_long": CodeRule(ErrorKind.CONTEXT_LENGTH_EXCEEDED, 400),
    "slow_down": CodeRule(ErrorKind.RATE_LIMITED, 429),
    "timed_out": CodeRule(ErrorKind.TIMEOUT, 504),
    "oops": CodeRule(ErrorKind.SERVER_ERROR, 500),
    "upstream": CodeRule(ErrorKind.UPSTREAM_ERROR, 502),
    "overloaded": CodeRule(ErrorKind.UNAVAILABLE, 503),
}
KIND_CODES = {rule.kind.value: code for code, rule in ACME_CODES.items()}


class Acme(OpenAICompatible):
    name = "acme"
    default_base_url = "https://acme.test/v1"
    error_table = ErrorTable(codes=ACME_CODES)
    retry_policy = RetryPolicy(max_retries=2, base=0.5, cap=8.0)


class AcmeEmulator(OpenAIEmulator):
    provider = "acme"

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        code = KIND_CODES.get(error, error)
        rule = ACME_CODES[code]
        headers: list[tuple[str, str]] = [("x-request-id", request_id or self.next_id())]
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        body = {"error": {"message": f"acme says {code}", "type": "error", "code": code, "param": None}}
        return EmulatedResponse.json(rule.status or 500, body, headers)

    def error_names(self) -> Sequence[str]:
        return list(ACME_CODES)
