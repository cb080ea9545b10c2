"""`turnout explain`: what turnout makes of one error response (sans-IO: nothing
is sent), and what the router would do with it on a first failure."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .output import Output

if TYPE_CHECKING:
    from turnout._errors import ProviderError

__all__ = ["DESCRIPTION", "HELP", "NAME", "arguments", "router_would", "run"]

NAME = "explain"
HELP = "what turnout makes of a gateway's error response"
DESCRIPTION = (
    "Normalize an error response (sans-IO, nothing is sent) and say what the router would do with it."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", metavar="PROVIDER")
    parser.add_argument("--status", type=int, help="the HTTP status (omit for a stream error frame)")
    parser.add_argument(
        "--header", "-H", action="append", default=[], metavar="K:V", help="a response header (repeatable)"
    )
    parser.add_argument(
        "--body",
        metavar="JSON|@FILE",
        help="the response body: JSON, or @file for a file's raw bytes (@- stdin)",
    )


def _read_body(spec: str) -> bytes | str:
    if spec.startswith("@"):
        name = spec[1:]
        if name == "-":
            return sys.stdin.buffer.read()
        try:
            with open(name, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read the body file {name!r}: {exc.strerror}") from None
    try:
        json.loads(spec)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--body is not valid JSON ({exc}); use @FILE for a raw body") from None
    return spec


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {value!r} is not K:V")
        headers[name.strip().lower()] = content.strip()
    return headers


def _class_chain(error: ProviderError) -> str:
    from turnout._errors import ProviderError

    chain = [cls.__name__ for cls in type(error).__mro__ if issubclass(cls, ProviderError)]
    head, rest = chain[0], chain[1:]
    return f"turnout.{head}" + (f" ({', '.join(rest)})" if rest else "")


def _delay_range(error: ProviderError, policy: Any) -> tuple[float, float]:
    delay = min(policy.cap, policy.base)
    if policy.jitter == "full":
        low, high = 0.0, delay
    elif policy.jitter == "symmetric":
        spread = delay * policy.jitter_ratio
        low, high = max(0.0, delay - spread), min(policy.cap, delay + spread)
    else:
        low = high = delay
    if error.retry_after is not None:
        low, high = max(low, error.retry_after), max(high, error.retry_after)
    return low, high


def _span(low: float, high: float) -> str:
    return f"{low:.3g} s" if abs(high - low) < 1e-9 else f"{low:.3g}-{high:.3g} s"


def router_would(error: ProviderError, policy: Any) -> list[str]:
    """What the router does with `error` on a first failure, in words."""
    from turnout._errors import KIND_RULES, ErrorKind, Fallback
    from turnout._retry import Retry

    rule = KIND_RULES[error.kind]
    lines = []
    decision = policy.decide(error, 0, streaming=False)
    if isinstance(decision, Retry):
        low, high = _delay_range(error, policy)
        floor = " (never less than its Retry-After)" if error.retry_after is not None else ""
        lines.append(
            f"retry on the same deployment after {_span(low, high)}{floor}; "
            f"up to {policy.max_retries} retries"
        )
        streamed = policy.decide(error, 0, streaming=True)
        if not isinstance(streamed, Retry):
            lines.append(f"(a stream is not retried: {streamed.reason})")
    else:
        lines.append(f"no retry on the same deployment: {decision.reason}")
    then = "then " if isinstance(decision, Retry) else ""
    fallback = {
        Fallback.ALWAYS: f"{then}fall back to the next deployment of the route",
        Fallback.NEVER: f"{then}raise it: another deployment would fail the same way",
        Fallback.CONTENT_POLICY_ROUTE: f"{then}fall back only to the route's content_policy_fallbacks, "
        "else raise it",
        Fallback.CONTEXT_WINDOW_ROUTE: f"{then}fall back only to the route's context_window_fallbacks, "
        "else raise it",
        Fallback.BEFORE_FIRST_CHUNK: "fall back if no chunk has reached the caller yet; "
        "after that, raise it with partial_text",
    }[error.fallback]
    lines.append(fallback)
    if rule.cooldown:
        lines.append(f"the deployment is set aside for {rule.cooldown / 60:g} min for other calls")
    elif error.kind is ErrorKind.RATE_LIMITED and error.retry_after:
        lines.append(f"the deployment is set aside for {error.retry_after:g} s for other calls")
    lines.append(
        "counts against the deployment's breaker"
        if rule.health_failure
        else "does not count against the deployment's health"
    )
    return lines


def run(args: argparse.Namespace, out: Output) -> int:
    import turnout
    from turnout._plugins import default_plugins

    headers = _headers(args.header)
    body = _read_body(args.body) if args.body is not None else None
    error = turnout.normalize_error(args.provider, status=args.status, headers=headers, body=body)
    provider = default_plugins().provider(args.provider)
    dash = out.dash
    details = "\n".join(f"{d.field}: {d.code or dash}: {d.message}" for d in error.details) or dash
    pairs = [
        ("provider", args.provider),
        ("status", str(error.status) if error.status is not None else dash),
        ("kind", error.kind.value),
        ("class", _class_chain(error)),
        ("retryable", "yes" if error.retryable else "no"),
        ("retry_after", f"{error.retry_after:g} s" if error.retry_after is not None else dash),
        ("request_id", error.request_id or dash),
        ("code", error.code or dash),
        ("message", error.message or dash),
        ("details", details),
        ("router", "\n".join(router_would(error, provider.retry_policy))),
    ]
    out.kv(pairs)
    return 0
