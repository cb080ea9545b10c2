"""What hostile input looks like to hypothesis, and how hard to look.

`SETTINGS` is modest in the default run (a few dozen examples per property)
and large under `nox -s fuzz` (`TURNOUT_FUZZ=1`), where `tests.properties.fuzz`
repeats the properties until its time budget is spent.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import turnout
from tests.core.acme import Acme

__all__ = [
    "BODIES",
    "FUZZING",
    "HEADERS",
    "JSON",
    "OBJECTS",
    "PROVIDERS",
    "SETTINGS",
    "STATUSES",
    "WIRE_BODIES",
    "wire_json",
]

FUZZING = os.environ.get("TURNOUT_FUZZ") == "1"
SETTINGS = settings(
    max_examples=1000 if FUZZING else 30,
    deadline=None,  # a shared CI machine's speed is not a property
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
    database=None,
)

# Field names the gateways use: random dictionaries would almost never reach the
# code paths that read them.
KEYS = [
    "choices", "message", "delta", "content", "finish_reason", "usage", "prompt_tokens",
    "completion_tokens", "total_tokens", "prompt_tokens_details", "cached_tokens",
    "completion_tokens_details", "reasoning_tokens", "tool_calls", "function", "name", "arguments",
    "index", "id", "type", "refusal", "model", "role", "error", "code", "param", "detail", "loc",
    "msg", "input", "retryable", "request_id", "retry_after_seconds", "details", "field",
    "candidates", "parts", "text", "output", "status", "response", "metadata", "tokens_used",
    "job_id", "delta_text", "content_block_delta", "usageMetadata", "finishReason", "reqId",
    "provider_error", "error_code", "x",
]  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["stop", "length", "tool_calls", "COMPLETED", "FAILED", "PENDING", "[DONE]", "user"]),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=30,
)

# JSON objects, as parsers of one response or one stream frame are handed them.
OBJECTS = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5),
    JSON.map(lambda v: {"error": v}),
    JSON.map(lambda v: {"choices": [{"delta": v, "finish_reason": None}]}),
)


def wire_json(value: Any) -> bytes:
    """`value` as a gateway would send it (NaN and Infinity as Python's json writes them)."""
    return json.dumps(value).encode()


# Bodies as they come off the wire...
WIRE_BODIES = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(str.encode),
    JSON.map(wire_json),
    JSON.map(lambda v: wire_json({"error": v})),
    JSON.map(lambda v: wire_json({"detail": v})),
)
# ...and as a normalizer may also be handed them: already parsed.
BODIES = st.one_of(
    WIRE_BODIES, st.dictionaries(st.sampled_from(["error", "detail", "message", "code"]), JSON, max_size=3)
)
HINT_VALUES = st.one_of(
    st.sampled_from(["1e308", "-1", "nan", "inf", "-inf", "0", "30", "1.5", "6m0s", "250ms", "99999999999"]),
    st.sampled_from(["Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "Mon, 32 Foo 2024"]),
    st.text(max_size=40),
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "retry-after", "retry-after-ms", "x-ratelimit-reset", "x-ratelimit-reset-requests",
            "x-ratelimit-remaining", "x-ratelimit-remaining-requests", "x-request-id", "location",
            "content-type", "x",
        ]
    ),
    HINT_VALUES,
    max_size=5,
)  # fmt: skip
STATUSES = st.one_of(st.none(), st.integers(100, 999), st.sampled_from([200, 400, 401, 403, 404, 429, 500]))


def _providers() -> dict[str, turnout.Provider]:
    found = dict(turnout.Plugins().providers())
    found["acme"] = Acme()
    return found


# Every installed provider, and the core's own test gateway.
PROVIDERS = _providers()
