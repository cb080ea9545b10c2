"""Generate the documentation's tables from the code's own tables (never retyped).

Writes docs/generated/*.md, which pages include with `--8<-- "name.md"`:
- kinds.md: the taxonomy (turnout.KIND_RULES);
- <provider>.md: each installed provider's code -> kind table, its status
  overrides and message rules, and its default retry policy;
- type-<Class>.md: the fields of the chat request and answer types, from the
  attrs classes themselves (a field without a description here, or a
  description of a field that is gone, stops the build);
- finish-reasons.md: turnout.FINISH_REASONS; capabilities.md: what each
  installed provider declares it carries;
- otel-attributes.md, otel-metrics.md, otel-errors.md: turnout-otel's span
  attributes and metrics (turnout_otel.names) and the `error.type` values.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

import turnout
from turnout import FINISH_REASONS, KIND_RULES, Fallback
from turnout._normalize import STATUS_KINDS
from turnout._plugins import default_plugins

OUT = Path(__file__).parent / "generated"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def kinds_table() -> str:
    lines = [
        "| kind | exception | retryable | fall back | counts against the breaker | cooldown |",
        "|---|---|---|---|---|---|",
    ]
    for kind, rule in KIND_RULES.items():
        parents = [c.__name__ for c in rule.exception.__mro__[1:] if c.__module__.startswith("turnout")]
        exc = f"`{rule.exception.__name__}`" + (
            f" ({parents[0]})" if parents and parents[0] != "ProviderError" else ""
        )
        cooldown = f"{rule.cooldown / 60:g} min" if rule.cooldown else ""
        lines.append(
            f"| `{kind.value}` | {exc} | {yes_no(rule.retryable)} | {rule.fallback.value} | "
            f"{yes_no(rule.health_failure)} | {cooldown} |"
        )
    return "\n".join(lines) + "\n"


def status_table() -> str:
    lines = ["| status | kind |", "|---|---|"]
    lines += [f"| {status} | `{kind.value}` |" for status, kind in sorted(STATUS_KINDS.items())]
    lines += [
        "| other 4xx | `bad_request` |",
        "| other 5xx | `server_error` |",
        "| 3xx (never followed) | `upstream_error` |",
    ]
    return "\n".join(lines) + "\n"


def fallback_word(kind: turnout.ErrorKind) -> str:
    rule = KIND_RULES[kind].fallback
    return "yes" if rule is Fallback.ALWAYS else ("no" if rule is Fallback.NEVER else rule.value)


def cell(text: str) -> str:
    """Table-safe text: a `|` would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def provider_table(provider: turnout.Provider) -> str:
    table = provider.error_table
    described = any(rule.description for rule in table.codes.values())
    head = "| code | status | kind | retryable | fall back |" + (" meaning |" if described else "")
    lines = [head, "|---|---|---|---|---|" + ("---|" if described else "")]
    for code, rule in table.codes.items():
        retryable = rule.retryable if rule.retryable is not None else KIND_RULES[rule.kind].retryable
        status = "" if rule.status is None else str(rule.status)
        fallback = fallback_word(rule.kind)
        row = f"| `{cell(code)}` | {status} | `{rule.kind.value}` | {yes_no(retryable)} | {fallback} |"
        lines.append(row + (f" {cell(rule.description)} |" if described else ""))
    if table.statuses:
        lines += ["", "Status overrides (when the body names no code):", "", "| status | kind |", "|---|---|"]
        lines += [f"| {s} | `{k.value}` |" for s, k in sorted(table.statuses.items())]
    if table.message_rules:
        lines += [
            "",
            "Wording rules (when the body names no code):",
            "",
            "| pattern | statuses | kind |",
            "|---|---|---|",
        ]
        for mr in table.message_rules:
            statuses = ", ".join(str(s) for s in sorted(mr.statuses)) if mr.statuses else "any"
            lines.append(f"| `{cell(mr.pattern.pattern)}` | {statuses} | `{mr.kind.value}` |")
    policy = provider.retry_policy
    lines += [
        "",
        "Default retry policy: "
        f"{policy.max_retries} retries, base {policy.base:g} s, cap {policy.cap:g} s, "
        f"{policy.jitter} jitter"
        + (f" (±{policy.jitter_ratio:.0%})" if policy.jitter == "symmetric" else "")
        + (f", on {', '.join(sorted(k.value for k in policy.retry_on))}" if policy.retry_on else "")
        + (
            f", statuses {', '.join(str(s) for s in sorted(policy.retry_statuses))}"
            if policy.retry_statuses
            else ""
        )
        + ("" if policy.retry_streams else ", never for streams")
        + "; never less than the server's retry-after.",
    ]
    return "\n".join(lines) + "\n"


# -- the chat request and answer types -------------------------------------------

# What each field means, by class: the tables take names, types and defaults from the
# classes, and only this from here.
FIELD_DOCS: Mapping[type, Mapping[str, str]] = {
    turnout.ChatResponse: {
        "content": 'The answer\'s text; `""` when the answer is only tool calls or a refusal.',
        "finish_reason": "Why the answer ended, in OpenAI's words (`stop`, `length`, `tool_calls`, "
        "`content_filter`; see below); a reason turnout does not know, as sent; None when not said.",
        "usage": "Token counts (`Usage`); None when the gateway reported none.",
        "model": "The model that answered, as the gateway names it.",
        "request_id": "The gateway's id of the request: its request-id header, else the body's `id` "
        "(ModelRoute: the execution's id).",
        "deployment": "The deployment that answered.",
        "provider": "Its provider.",
        "attempts": "Every attempt of the call, failed ones included, in order (`turnout.Attempt`).",
        "tool_calls": "The tool calls the model asked for (`ToolCall`), in order; `()` when none.",
        "refusal": "The model's refusal (structured output), when it refused; else None.",
        "message": "The assistant message as the gateway sent it (after a stream: assembled from the "
        "chunks), ready to append to the history.",
        "raw": "The parsed response body, as the gateway sent it; None after a stream.",
        "headers": "The final response's headers, names lower-case.",
    },
    turnout.ChatChunk: {
        "delta": 'A piece of the text; `""` when the chunk carries something else.',
        "finish_reason": "Set on the chunk that ends the answer, normalized as in `ChatResponse`.",
        "usage": "Token counts this chunk reports (usually the last; some gateways report them in parts).",
        "request_id": "The gateway's id of the request (its header, else the chunk's `id`).",
        "tool_calls": "Pieces of tool calls (`ToolCallDelta`).",
        "refusal": "A piece of a refusal.",
        "model": "The model that answers, when the chunk names it.",
    },
    turnout.ToolCall: {
        "id": "The call's id: a tool message answering it sends it back as `tool_call_id`.",
        "name": "The function to call.",
        "arguments": "Its arguments, the JSON text as the model wrote it: `json.loads` it (a model may "
        "write JSON that does not parse, or that does not follow the schema).",
    },
    turnout.ToolCallDelta: {
        "index": "Which call of the answer the piece belongs to (0, 1, ...).",
        "id": "The call's id, in its first piece only.",
        "name": "The function's name, in its first piece only.",
        "arguments": "The next characters of its arguments.",
    },
    turnout.Usage: {
        "prompt_tokens": "Tokens of the request.",
        "completion_tokens": "Tokens of the answer, reasoning tokens included.",
        "total_tokens": "Both; when the gateway gives no total, the sum of the two if both are known.",
        "cached_tokens": "Tokens of the request read from the gateway's prompt cache.",
        "reasoning_tokens": "Tokens the model spent reasoning before it answered.",
    },
    turnout.Message: {
        "role": "`system`, `developer`, `user`, `assistant`, `tool`, ...: any non-empty string.",
        "content": "A string, a list of content parts (`text`, `image_url`, `input_audio`, `file`, ...) "
        "or None, sent as given.",
        "name": "The participant's name, when given.",
        "extra": "Every other field of the message, sent as given (`tool_calls`, `tool_call_id`, "
        "`refusal`, a gateway's own fields).",
        "has_content": "Whether the message had a `content` key: one without is sent without.",
    },
    turnout.ChatRequest: {
        "messages": "The conversation (`Message`s; mappings are converted, mistakes raise "
        "`TypeError`/`ValueError`).",
        "params": "Every chat parameter of the call (`tools`, `temperature`, ...), sent as given.",
        "call_id": "One id per call, the same on each retry and fallback (idempotency keys are made of it).",
        "extra_body": "The call's `extra_body`, merged into the JSON body as given.",
        "metadata": "The call's `metadata`: for observers and logs, never sent.",
    },
}


def _default(field: attrs.Attribute[Any]) -> str:
    if field.default is attrs.NOTHING:
        return "required"
    if isinstance(field.default, attrs.Factory):
        made = {dict: "`{}`", tuple: "`()`", list: "`[]`"}.get(field.default.factory)
        return made or "made per instance"
    return f"`{field.default!r}`"


def type_table(cls: type) -> str:
    """The fields of an attrs class: name, type, default and meaning."""
    docs = FIELD_DOCS[cls]
    names = [f.name for f in attrs.fields(cls)]
    missing, gone = set(names) - set(docs), set(docs) - set(names)
    if missing or gone:
        raise SystemExit(
            f"{cls.__name__}: fields without a description {sorted(missing)}, "
            f"descriptions of no field {sorted(gone)} (docs/gen_tables.py FIELD_DOCS)"
        )
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for field in attrs.fields(cls):
        kind = field.type if isinstance(field.type, str) else typing.get_type_hints(cls)[field.name]
        lines.append(
            f"| `{field.name}` | `{cell(str(kind))}` | {_default(field)} | {cell(docs[field.name])} |"
        )
    return "\n".join(lines) + "\n"


def finish_reasons_table() -> str:
    lines = ["| the gateway says | turnout says |", "|---|---|"]
    lines += [f"| `{said}` | `{ours}` |" for said, ours in FINISH_REASONS.items()]
    return "\n".join(lines) + "\n"


FEATURES = ("tools", "tool_streaming", "content_parts", "response_format")


def capabilities_table() -> str:
    lines = [
        "| provider | " + " | ".join(f"`{f}`" for f in FEATURES) + " |",
        "|---" * (len(FEATURES) + 1) + "|",
    ]
    for name, provider in sorted(default_plugins().providers().items()):
        lines.append(f"| {name} | " + " | ".join(yes_no(f in provider.capabilities) for f in FEATURES) + " |")
    return "\n".join(lines) + "\n"


# -- turnout-otel --------------------------------------------------------------------

SPANS = {"call": "call", "attempt": "attempt", "both": "call, attempt"}


def otel_attributes_table() -> str:
    """Every span attribute turnout-otel sets, from its own table of names."""
    from turnout_otel.names import SPAN_ATTRIBUTES

    lines = ["| attribute | span | when | meaning |", "|---|---|---|---|"]
    lines += [
        f"| `{a.name}` | {SPANS[a.span]} | {cell(a.when)} | {cell(a.meaning)} |" for a in SPAN_ATTRIBUTES
    ]
    return "\n".join(lines) + "\n"


def otel_metrics_table() -> str:
    from turnout_otel.names import METRICS

    lines = ["| metric | instrument | unit | what | attributes |", "|---|---|---|---|---|"]
    lines += [
        f"| `{m.name}` | {m.instrument} | `{m.unit}` | {cell(m.description)} | "
        + ", ".join(f"`{name}`" for name in m.attributes)
        + " |"
        for m in METRICS
    ]
    return "\n".join(lines) + "\n"


def otel_errors_table() -> str:
    """The `error.type` values turnout-otel reports: every kind, and the one error a call
    raises that is not a gateway's."""
    lines = ["| `error.type` | the error | on |", "|---|---|---|"]
    lines += [
        f"| `{kind.value}` | `{rule.exception.__name__}` | attempt and call spans, metrics |"
        for kind, rule in KIND_RULES.items()
    ]
    lines.append(f"| `{turnout.NoHealthyDeploymentError.__name__}` | the same | call span |")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "kinds.md").write_text(kinds_table())
    (OUT / "statuses.md").write_text(status_table())
    for cls in FIELD_DOCS:
        (OUT / f"type-{cls.__name__}.md").write_text(type_table(cls))
    (OUT / "finish-reasons.md").write_text(finish_reasons_table())
    (OUT / "capabilities.md").write_text(capabilities_table())
    (OUT / "otel-attributes.md").write_text(otel_attributes_table())
    (OUT / "otel-metrics.md").write_text(otel_metrics_table())
    (OUT / "otel-errors.md").write_text(otel_errors_table())
    for name, provider in default_plugins().providers().items():
        (OUT / f"{name}.md").write_text(provider_table(provider))
    print(f"wrote tables for {len(default_plugins().providers())} providers to {OUT}")


if __name__ == "__main__":
    main()
