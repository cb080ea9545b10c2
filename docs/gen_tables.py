"""Generate the documentation's tables from the code's own tables (never retyped).

Writes docs/generated/*.md, which pages include with `--8<-- "name.md"`:
- kinds.md: the taxonomy (turnout.KIND_RULES);
- <provider>.md: each installed provider's code -> kind table, its status
  overrides and message rules, and its default retry policy.
"""

from __future__ import annotations

from pathlib import Path

import turnout
from turnout import KIND_RULES, Fallback
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


def main() -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "kinds.md").write_text(kinds_table())
    (OUT / "statuses.md").write_text(status_table())
    for name, provider in default_plugins().providers().items():
        (OUT / f"{name}.md").write_text(provider_table(provider))
    print(f"wrote tables for {len(default_plugins().providers())} providers to {OUT}")


if __name__ == "__main__":
    main()
