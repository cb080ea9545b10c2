"""Every span, attribute and metric name turnout-otel emits, with what it means.

The observer uses these constants and nothing else, and docs/gen_tables.py
turns `SPAN_ATTRIBUTES` and `METRICS` into the tables of docs/observing.md:
a name exists once, here. The `gen_ai.*`, `server.*` and `error.type` names
are the OpenTelemetry GenAI semantic conventions' (status: development);
`turnout.*` are turnout's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from attrs import frozen

__all__ = [
    "ATTEMPT_SPAN",
    "CALL_SPAN",
    "CHAT",
    "METRICS",
    "SPAN_ATTRIBUTES",
    "Attribute",
    "Metric",
]

CHAT: Final = "chat"  # gen_ai.operation.name: turnout only makes chat completions

# -- the GenAI semantic conventions ------------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 - a name, not a secret
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# -- turnout's own -------------------------------------------------------------------
CALL_ID: Final = "turnout.call_id"
ROUTE: Final = "turnout.route"
DEPLOYMENT: Final = "turnout.deployment"
ATTEMPT: Final = "turnout.attempt"
ATTEMPTS: Final = "turnout.attempts"
DECISION: Final = "turnout.decision"
REASON: Final = "turnout.reason"
WAITED: Final = "turnout.waited"
BREAKER_FROM: Final = "turnout.breaker.from"
BREAKER_TO: Final = "turnout.breaker.to"

# Chat parameters the conventions name (`gen_ai.request.*`), and the types recorded.
REQUEST_PARAMS: Final[Mapping[str, tuple[str, type | tuple[type, ...]]]] = {
    "temperature": ("gen_ai.request.temperature", (int, float)),
    "top_p": ("gen_ai.request.top_p", (int, float)),
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "max_completion_tokens": ("gen_ai.request.max_tokens", int),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", (int, float)),
    "presence_penalty": ("gen_ai.request.presence_penalty", (int, float)),
    "seed": ("gen_ai.request.seed", int),
    "stop": ("gen_ai.request.stop_sequences", (str, list, tuple)),
}

# -- spans and metrics -----------------------------------------------------------------
CALL_SPAN: Final = "turnout.chat {route}"  # INTERNAL, one per call
ATTEMPT_SPAN: Final = "chat {model}"  # CLIENT, one per attempt: `{gen_ai.operation.name} {model}`
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105 - a name, not a secret
ROUTER_ATTEMPTS: Final = "turnout.router.attempts"
BREAKER_TRANSITIONS: Final = "turnout.breaker.transitions"

# The GenAI conventions' advised histogram buckets.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


@frozen
class Attribute:
    """A span attribute: on which span, when, and what it says."""

    name: str
    span: str  # "call", "attempt" or "both"
    when: str
    meaning: str


@frozen
class Metric:
    name: str
    instrument: str
    unit: str
    description: str
    attributes: tuple[str, ...]


SPAN_ATTRIBUTES: Final = (
    Attribute(OPERATION_NAME, "attempt", "always", "`chat`."),
    Attribute(PROVIDER_NAME, "attempt", "always", "The turnout provider's name (`meshapi`, `mume`, ...)."),
    Attribute(REQUEST_MODEL, "attempt", "always", "The deployment's model, as sent."),
    Attribute(REQUEST_STREAM, "attempt", "streams", "`true` (never set on a plain call)."),
    Attribute(RESPONSE_MODEL, "attempt", "answered, when reported", "The model that answered."),
    Attribute(RESPONSE_ID, "attempt", "answered, when reported", "The completion's id (`chatcmpl-...`)."),
    Attribute(FINISH_REASONS, "attempt", "answered, when reported", "`[finish_reason]`, normalized."),
    Attribute(
        TIME_TO_FIRST_CHUNK,
        "attempt",
        "streams that gave a chunk",
        "Seconds from the attempt's start to the first chunk (on the attempt that streamed).",
    ),
    Attribute(INPUT_TOKENS, "attempt", "answered, when reported", "Prompt tokens."),
    Attribute(OUTPUT_TOKENS, "attempt", "answered, when reported", "Completion tokens."),
    Attribute(SERVER_ADDRESS, "attempt", "when known", "The gateway's host."),
    Attribute(SERVER_PORT, "attempt", "with `server.address`", "The gateway's port."),
    Attribute(
        ERROR_TYPE,
        "both",
        "failed",
        "The error's kind (`rate_limited`, `timeout`, ...; the table below); on the call span, the kind of "
        "the error the call raised, or its class name when it is not a `ProviderError` "
        "(`NoHealthyDeploymentError`). The span's status is ERROR.",
    ),
    Attribute(
        INPUT_MESSAGES, "attempt", "content capture on", "The request's messages, JSON (semconv's schema)."
    ),
    Attribute(OUTPUT_MESSAGES, "attempt", "content capture on", "The answer, JSON (semconv's schema)."),
    Attribute(CALL_ID, "call", "always", "The call's id (the same on every retry and fallback)."),
    Attribute(ROUTE, "call", "always", "The route the call took."),
    Attribute(DEPLOYMENT, "both", "always on attempts; on the call when answered", "The deployment."),
    Attribute(ATTEMPTS, "call", "always", "How many attempts the call made."),
    Attribute(ATTEMPT, "attempt", "always", "The attempt's number within the call, from 1."),
    Attribute(
        DECISION,
        "attempt",
        "always",
        "What the router decided after it: `done`, `retry`, `fallback`, `give_up`, `abandoned`.",
    ),
    Attribute(REASON, "attempt", "when there is one", "Why, in a few words (`429, retry after 2.0 s`)."),
    Attribute(WAITED, "attempt", "when it waited", "Seconds the router waited before the attempt."),
    *(
        Attribute(
            attribute,
            "attempt",
            "when the request sets "
            + " or ".join(f"`{p}`" for p, (a, _) in REQUEST_PARAMS.items() if a == attribute),
            "The parameter, as sent"
            + (" (one string: a list of one)." if attribute.endswith("stop_sequences") else "."),
        )
        for attribute in dict.fromkeys(a for a, _ in REQUEST_PARAMS.values())
    ),
)

METRICS: Final = (
    Metric(
        OPERATION_DURATION,
        "histogram",
        "s",
        "Duration of each attempt (one request to one deployment).",
        (
            OPERATION_NAME,
            PROVIDER_NAME,
            REQUEST_MODEL,
            ERROR_TYPE,
            SERVER_ADDRESS,
            SERVER_PORT,
            RESPONSE_MODEL,
        ),
    ),
    Metric(
        TOKEN_USAGE,
        "histogram",
        "{token}",
        "Tokens of each answered attempt, input and output apart.",
        (
            OPERATION_NAME,
            PROVIDER_NAME,
            REQUEST_MODEL,
            TOKEN_TYPE,
            SERVER_ADDRESS,
            SERVER_PORT,
            RESPONSE_MODEL,
        ),
    ),
    Metric(
        ROUTER_ATTEMPTS,
        "counter (asynchronous)",
        "{attempt}",
        "Attempts, by what the router decided after each.",
        (DECISION, DEPLOYMENT, PROVIDER_NAME, ERROR_TYPE),
    ),
    Metric(
        BREAKER_TRANSITIONS,
        "counter",
        "{transition}",
        "Breaker state changes (`closed`, `open`, `half_open`); a deployment set aside for a cooldown "
        "counts with from = to.",
        (DEPLOYMENT, PROVIDER_NAME, BREAKER_FROM, BREAKER_TO),
    ),
)
