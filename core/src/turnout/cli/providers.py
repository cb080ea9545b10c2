"""`turnout providers`: the installed provider plugins, where each comes from (and
its normalizer, when a plugin replaced it), whether it ships an emulator; then the
named retry policies and where each comes from."""

from __future__ import annotations

import argparse

from .output import Column, Output

__all__ = ["DESCRIPTION", "HELP", "NAME", "arguments", "run"]

NAME = "providers"
HELP = "the installed provider plugins and named retry policies"
DESCRIPTION = None
COLUMNS = (
    Column("provider"),
    Column("distribution", wrap=True),
    Column("version"),
    Column("normalizer", wrap=True),
    Column("entry point (turnout)", wrap=True),
    Column("module", wrap=True),
    Column("emulator"),
)
POLICY_COLUMNS = (
    Column("retry policy"),
    Column("distribution", wrap=True),
    Column("version"),
    Column("retries"),
    Column("backoff", wrap=True),
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """It takes none."""


def _normal(name: str | None) -> str:
    return (name or "").lower().replace("_", "-").replace(".", "-")


def _source(distribution: str | None, replaces: str | None) -> str:
    """Where a contribution comes from; one made in code says what it replaces."""
    if distribution is not None:
        return distribution
    return f"(in code, replaces {replaces})" if replaces else "(in code)"


def run(args: argparse.Namespace, out: Output) -> int:
    from importlib.metadata import entry_points

    import turnout
    from turnout._plugins import default_plugins

    infos = turnout.providers()
    policies = turnout.retry_policies()
    if not infos:
        out.line("No provider plugins are installed (each gateway is a turnout-* plugin distribution).")
    else:
        points: dict[str, list[str]] = {}
        for point in entry_points(group="turnout"):
            dist = point.dist.name if point.dist is not None else None
            points.setdefault(_normal(dist), []).append(f"{point.name} = {point.value}")
        emulators = default_plugins().emulators()
        rows = [
            [
                info.name,
                _source(info.distribution, info.replaces),
                info.version or out.dash,
                info.normalizer or "its own",
                ", ".join(points.get(_normal(info.distribution), [])) or out.dash,
                info.module,
                "yes" if info.name in emulators else "no",
            ]
            for info in infos.values()
        ]
        out.table(COLUMNS, rows)
    if policies:
        out.line()
        rows = [
            [
                info.name,
                _source(info.distribution, info.replaces),
                info.version or out.dash,
                str(info.policy.max_retries),
                f"{info.policy.base:g} s x{info.policy.multiplier:g}, at most {info.policy.cap:g} s, "
                f"{info.policy.jitter} jitter",
            ]
            for info in policies.values()
        ]
        out.table(POLICY_COLUMNS, rows)
    return 0
