"""The hostile rows, as data: what the upstream (or the user) does, and what must hold.

Each `Row` names a scenario of `tests.hostile.upstream`, the operation (a
chat or a stream), the deadline, and the error classes that may end it.
`issue` is the row of issue 16's table it reproduces (None: a hostile answer
that already passed and must keep passing). `run` picks how it is driven:

- "call": one call through a router on the scenario's URL;
- "closed": calls after `close()` / `aclose()`;
- "hints": one call, then how long the deployment is set aside;
- "hedge": many hedged calls in a row against a stalled primary;
- "config": every bad configuration of `CONFIG_CASES`, at construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

__all__ = ["CONFIG_CASES", "ROWS", "ConfigCase", "Row"]

TIMEOUT = "APITimeoutError"
PARSE = "ResponseParseError"
DROPPED = "StreamInterruptedError"
CONNECTION = "APIConnectionError"
UPSTREAM = "UpstreamError"


@frozen
class Row:
    id: str
    what: str
    issue: int | None = None
    run: str = "call"
    scenario: str = ""
    op: str = "chat"
    deadline: float = 2.0
    # The error classes that may end it ("" = the call succeeds).
    expect: tuple[str, ...] = ()
    provider: str = "acme"
    # Options of its runner (`client`: the user's own httpx client; `store`: "redis").
    options: Mapping[str, Any] = field(factory=dict)
    # Busy (the CPU, or hundreds of MB): run beside few others, so a loaded machine
    # does not starve it past its deadline.
    heavy: bool = False


def _both(base: str, what: str, **kw: Any) -> list[Row]:
    return [Row(f"{base}-{op}", what, op=op, **kw) for op in ("chat", "stream")]


ANY_FAILURE = (TIMEOUT, PARSE, DROPPED, CONNECTION, UPSTREAM)

ROWS_LIST: list[Row] = [
    # 1: streams that never complete an event
    Row("sse-comments", "an SSE stream of only `: keep-alive` comments", 1, scenario="sse-comments",
        op="stream", expect=(TIMEOUT,)),
    Row("sse-blank", "an SSE stream of only blank lines", 1, scenario="sse-blank", op="stream",
        expect=(TIMEOUT,)),
    Row("sse-endless-line", "one `data:` line that never ends (slow)", 1, scenario="sse-endless-line",
        op="stream", expect=(TIMEOUT,)),
    # (The rows that send as fast as loopback allows are about memory: their deadline is
    # long enough that a cap usually ends them, even on a loaded machine; a parse_error
    # before the first chunk is retried, so the deadline may end them too.)
    Row("sse-flood-line", "one `data:` line that never ends (1 GiB, fast)", 1, scenario="sse-flood-line",
        op="stream", deadline=5.0, expect=(PARSE, TIMEOUT), heavy=True),
    # 2: a gzip bomb in one SSE line (the issue's deadline: 5 s)
    Row("sse-gzip-bomb", "gzip SSE, one 1 GiB line (1 MiB on the wire)", 2, scenario="sse-gzip-bomb",
        op="stream", deadline=5.0, expect=(PARSE, TIMEOUT), heavy=True),
    # 3, 4: a head or a body dripped
    *_both("head-drip", "the response head dripped, a header line every 0.3 s", issue=3,
           scenario="head-drip", expect=(TIMEOUT,)),
    *_both("body-drip", "a body dripped, a byte every 2.5 s", issue=4, scenario="body-drip",
           deadline=3.0, expect=(TIMEOUT,)),
    # 5: a closed router
    *_both("closed", "calls after close() / aclose()", issue=5, run="closed", expect=("TurnoutError",)),
    # 10: the key echoed back
    *_both("echo-key", "a 401 echoing the key in message/code/type/param/x-request-id", issue=10,
           scenario="echo-key", expect=("AuthenticationError",)),
    Row("echo-key-retried-chat", "a 429 echoing the key everywhere, retried", 10,
        scenario="echo-key-retried", expect=("RateLimitError",)),
    Row("echo-key-frame-stream", "an error frame echoing the key everywhere, retried", 10,
        scenario="echo-key-retried", op="stream", expect=(UPSTREAM,)),
    # 11: transport errors and their exception chains
    Row("dropped-stream", "a stream dropped mid-body (TCP reset)", 11, scenario="reset-mid-body",
        op="stream", expect=(DROPPED,)),
    *_both("user-client-reset", "a reset, through the user's own httpx client", issue=11,
           scenario="reset", options={"client": True}, expect=(CONNECTION,)),
    Row("user-client-dropped", "a stream dropped mid-body, through the user's own client", 11,
        scenario="reset-mid-body", op="stream", options={"client": True}, expect=(DROPPED,)),
    # 12: time hints out of range
    *[
        Row(f"hint-{name}", f"a 429 with {label}", 12, run="hints", scenario=f"hint-{name}",
            expect=("RateLimitError",))
        for name, label in (
            ("retry-after", "Retry-After: 1e308"),
            ("retry-after-ms", "retry-after-ms: 1e308"),
            ("ratelimit-reset", "X-RateLimit-Reset: 1e308"),
            ("year-9999", "Retry-After: a date in 9999"),
            ("nan", "Retry-After: nan"),
        )
    ],
    *[
        Row(f"hint-{name}-redis", f"a 429 with {label}, state on Redis", 12, run="hints",
            scenario=f"hint-{name}", expect=("RateLimitError",), options={"store": "redis"})
        for name, label in (("retry-after", "Retry-After: 1e308"), ("year-9999", "a date in 9999"))
    ],
    Row("reset-inf-redis", "a success with reset inf, state on Redis", 12, run="hints",
        scenario="reset-inf", expect=("",), options={"store": "redis"}),
    Row("reset-inf", "a success with X-RateLimit-Remaining 0, reset inf", 12, run="hints",
        scenario="reset-inf", expect=("",)),
    Row("remaining-nan", "a success with X-RateLimit-Remaining nan", 12, run="hints",
        scenario="remaining-nan", expect=("",)),
    # 13: hedging against a stalled primary, many calls in a row
    # A long deadline: a loser left running would hold its thread for 10 s, and from
    # the 65th call on (64 threads per router) the next call would wait for one.
    Row("hedge-stalled-primary", "100 hedged calls in a row, the primary stalled", 13, run="hedge",
        deadline=10.0, expect=("",), options={"calls": 100, "hedge_after": 0.05}, heavy=True),
    Row("hedge-too-late", "a backup that could only start after the deadline", 13, run="hedge",
        deadline=0.5, expect=(TIMEOUT,), options={"calls": 1, "hedge_after": 1.0}),
    # 14: ModelRoute, the deadline passing while polling, the cancel stalled
    Row("modelroute-cancel", "ModelRoute polling past the deadline, cancel endpoint stalled", 14,
        scenario="modelroute-stalled-cancel", provider="modelroute", deadline=1.0, expect=(TIMEOUT,)),
    # 6-9: configuration refused at construction (CONFIG_CASES), through Router(...) and from_config
    Row("config-keys", "keys with a newline, other whitespace or control characters", 6, run="config",
        expect=("ConfigError",)),
    Row("config-non-ascii", "keys with a non-ASCII character", 7, run="config", expect=("ConfigError",)),
    Row("config-base-url", "base_url: bad port, unclosed `[`, newline, 70 kB, ...", 8, run="config",
        expect=("ConfigError",)),
    Row("config-numbers", "timeouts, deadlines, breaker, budget, retry, weight, hedge_after, names",
        9, run="config", expect=("ConfigError",)),
    # hostile answers that already ended well, and must keep doing so
    *_both("html", "an HTML page with status 200", scenario="html", expect=(PARSE,)),
    *_both("html-error", "a 10 MB HTML page with status 502", scenario="html-error", expect=(UPSTREAM,),
           heavy=True),
    *_both("empty", "an empty 200", scenario="empty", expect=(PARSE,)),
    *_both("non-utf8", "a body that is not UTF-8", scenario="non-utf8", expect=(PARSE,)),
    *_both("wrong-shape", "JSON of the wrong shape", scenario="wrong-shape", expect=(PARSE,)),
    *_both("truncated", "a body cut short by a clean close", scenario="truncated",
           expect=(CONNECTION, DROPPED, PARSE)),
    *_both("reset", "a TCP reset instead of an answer", scenario="reset", expect=(CONNECTION,)),
    *_both("stall", "no answer at all", scenario="stall", expect=(TIMEOUT,)),
    *_both("stall-after-head", "a head, then nothing", scenario="stall-after-head", expect=(TIMEOUT,)),
    *_both("bad-chunking", "an invalid chunk size", scenario="bad-chunking",
           expect=(CONNECTION, DROPPED, PARSE)),
    *_both("huge-headers", "64 MiB of header lines", scenario="huge-headers", expect=(CONNECTION,),
           heavy=True),
    *_both("garbage", "bytes that are not HTTP", scenario="garbage", expect=(CONNECTION, TIMEOUT)),
    Row("sse-endless-chunks", "valid 64 KiB chunks as fast as possible, never ending",
        scenario="sse-endless-chunks", op="stream", deadline=5.0, expect=(PARSE, TIMEOUT), heavy=True),
    Row("sse-endless-tool-args", "a tool call's arguments 64 KiB at a time, never ending",
        scenario="sse-endless-tool-args", op="stream", deadline=5.0, expect=(PARSE, TIMEOUT), heavy=True),
    *_both("informational-forever", "`102 Processing` heads every 0.1 s, never an answer",
           scenario="informational-forever", expect=(TIMEOUT,)),
    *_both("redirect", "a 302 to another host", scenario="redirect", expect=(UPSTREAM,)),
    *_both("deep-json", "JSON nested 500,000 deep", scenario="deep-json", expect=(PARSE,)),
    *_both("huge-number", "a 100,000-digit number in the usage", scenario="huge-number", expect=(PARSE,)),
    *_both("status-999", "status 999", scenario="status-999", expect=("InternalServerError",)),
    *_both("brotli", "an encoding that was not asked for (br)", scenario="brotli", expect=(PARSE,)),
    Row("gzip-bomb-chat", "a JSON body inflating to 1 GiB", scenario="gzip-bomb", deadline=5.0,
        expect=(PARSE, TIMEOUT), heavy=True),
]  # fmt: skip

ROWS: dict[str, Row] = {row.id: row for row in ROWS_LIST}
assert len(ROWS) == len(ROWS_LIST), "row ids must be unique"


# -- rows 6-9: what construction refuses ------------------------------------------------

# The key every case's deployment carries (when the case does not replace it).
GOOD_KEY = "sk-hostile-config-0123456789abcdef"


@frozen
class ConfigCase:
    """One configuration mistake: a value at a path of the TOML-shaped mapping."""

    issue: int
    id: str
    path: str
    value: Any
    # The key shown nowhere: the case's own key when it replaces it, else GOOD_KEY.
    secret: str = GOOD_KEY


def _cases(issue: int, *cases: tuple[str, str, Any]) -> list[ConfigCase]:
    found = []
    for id, path, value in cases:
        secret = value if path.endswith("api_key") and isinstance(value, str) and value else GOOD_KEY
        found.append(ConfigCase(issue, id, path, value, secret))
    return found


CONFIG_CASES: list[ConfigCase] = [
    # 6: keys with whitespace or control characters (a newline read from a file)
    *_cases(
        6,
        ("key-newline", "deployments[0].api_key", "sk-hostile-trailing-newline-0123\n"),
        ("key-crlf", "deployments[0].api_key", "sk-hostile-crlf-0123456789\r\n"),
        ("key-space", "deployments[0].api_key", "sk-hostile inner-space-0123"),
        ("key-tab", "deployments[0].api_key", "\tsk-hostile-leading-tab-0123"),
        ("key-nul", "deployments[0].api_key", "sk-hostile-nul-0123\x00"),
        ("key-empty", "deployments[0].api_key", ""),
    ),
    # 7: keys with non-ASCII characters
    *_cases(
        7,
        ("key-non-ascii", "deployments[0].api_key", "sk-hostile-ключ-0123456789"),
        ("key-nbsp", "deployments[0].api_key", "sk-hostile-nbsp\u00a00123456789"),
    ),
    # 8: base URLs that cannot be used
    *_cases(
        8,
        ("url-bad-port", "deployments[0].base_url", "http://127.0.0.1:99999/v1"),
        ("url-port-word", "deployments[0].base_url", "http://127.0.0.1:http/v1"),
        ("url-unclosed-bracket", "deployments[0].base_url", "http://[::1/v1"),
        ("url-newline", "deployments[0].base_url", "http://example.com/v1\n"),
        ("url-space", "deployments[0].base_url", "http://exa mple.com/v1"),
        ("url-long", "deployments[0].base_url", "http://example.com/" + "a" * 70_000),
        ("url-scheme", "deployments[0].base_url", "ftp://example.com/v1"),
        ("url-no-host", "deployments[0].base_url", "http:///v1"),
        ("url-relative", "deployments[0].base_url", "/v1/chat"),
        ("url-non-ascii", "deployments[0].base_url", "http://exämple.com/v1"),
    ),
    # 9: numbers out of range, empty names
    *_cases(
        9,
        ("timeout-zero", "timeout", 0),
        ("timeout-negative", "timeout", -1),
        ("timeout-nan", "timeout", math.nan),
        ("deadline-nan", "deadline", math.nan),
        ("deadline-inf", "deadline", math.inf),
        ("deadline-zero", "deadline", 0),
        ("deadline-negative", "deadline", -5.0),
        ("max-retry-wait-negative", "max_retry_wait", -1),
        ("weight-negative", "deployments[0].weight", -1.0),
        ("weight-nan", "deployments[0].weight", math.nan),
        ("weight-inf", "deployments[0].weight", math.inf),
        ("model-empty", "deployments[0].model", ""),
        ("model-blank", "deployments[0].model", "   "),
        ("name-empty", "deployments[0].name", ""),
        ("breaker-window-zero", "breaker.window", 0),
        ("breaker-window-negative", "breaker.window", -3),
        ("breaker-failure-rate-zero", "breaker.failure_rate", 0.0),
        ("breaker-failure-rate-negative", "breaker.failure_rate", -0.5),
        ("breaker-failure-rate-nan", "breaker.failure_rate", math.nan),
        ("breaker-open-for-zero", "breaker.open_for", 0.0),
        ("breaker-open-for-negative", "breaker.open_for", -30.0),
        ("breaker-open-for-inf", "breaker.open_for", math.inf),
        ("breaker-max-open-negative", "breaker.max_open", -1.0),
        ("breaker-probes-zero", "breaker.probes", 0),
        ("breaker-consecutive-zero", "breaker.consecutive_failures", 0),
        ("breaker-min-calls-zero", "breaker.min_calls", 0),
        ("breaker-jitter-negative", "breaker.jitter", -0.1),
        ("breaker-jitter-above-one", "breaker.jitter", 1.5),
        ("breaker-probe-timeout-zero", "breaker.probe_timeout", 0.0),
        ("breaker-ewma-zero", "breaker.ewma_alpha", 0.0),
        ("budget-ratio-negative", "budget.ratio", -0.2),
        ("budget-ratio-nan", "budget.ratio", math.nan),
        ("budget-ratio-inf", "budget.ratio", math.inf),
        ("budget-burst-negative", "budget.burst", -1.0),
        ("retry-max-retries-negative", "retry.max_retries", -1),
        ("retry-base-negative", "retry.base", -0.5),
        ("retry-cap-nan", "retry.cap", math.nan),
        ("retry-multiplier-below-one", "retry.multiplier", 0.5),
        ("retry-jitter-ratio-above-one", "retry.jitter_ratio", 2.0),
        ("deployment-retry-max-retries-negative", "deployments[0].retry.max_retries", -2),
        ("hedge-after-zero", "routes.main.hedge_after", 0.0),
        ("hedge-after-negative", "routes.main.hedge_after", -1.0),
        ("hedge-after-nan", "routes.main.hedge_after", math.nan),
    ),
]


def base_config(base_url: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    """A configuration that builds: one acme deployment and one route."""
    return {
        "deadline": 5.0,
        "deployments": [
            {"name": "up", "provider": "acme", "model": "m", "api_key": GOOD_KEY, "base_url": base_url}
        ],
        "routes": {"main": {"deployments": ["up"]}},
    }


def with_value(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`config` with `value` at `path` (`deployments[0].retry.max_retries`), tables made
    on the way."""
    node: Any = config
    steps = [s for part in path.split(".") for s in part.replace("]", "").split("[")]
    for step in steps[:-1]:
        key: Any = int(step) if step.isdigit() else step
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    last = steps[-1]
    node[int(last) if last.isdigit() else last] = value
    return config
