"""`turnout providers`: the installed provider plugins, where each comes from,
and whether it ships an emulator."""

from __future__ import annotations

import argparse
from typing import Any

from .output import Column, Output

__all__ = ["NAME", "add_parser", "run"]

NAME = "providers"
COLUMNS = (
    Column("provider"),
    Column("distribution", wrap=True),
    Column("version"),
    Column("entry point (turnout)", wrap=True),
    Column("module", wrap=True),
    Column("emulator"),
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(NAME, help="the installed provider plugins")
    parser.set_defaults(run=run)


def _normal(name: str | None) -> str:
    return (name or "").lower().replace("_", "-").replace(".", "-")


def run(args: argparse.Namespace, out: Output) -> int:
    from importlib.metadata import entry_points

    import turnout
    from turnout._plugins import default_plugins

    infos = turnout.providers()
    if not infos:
        out.line("No provider plugins are installed (each gateway is a turnout-* plugin distribution).")
        return 0
    points: dict[str, list[str]] = {}
    for point in entry_points(group="turnout"):
        dist = point.dist.name if point.dist is not None else None
        points.setdefault(_normal(dist), []).append(f"{point.name} = {point.value}")
    emulators = default_plugins().emulators()
    rows = [
        [
            info.name,
            info.distribution or "(in code)",
            info.version or out.dash,
            ", ".join(points.get(_normal(info.distribution), [])) or out.dash,
            info.module,
            "yes" if info.name in emulators else "no",
        ]
        for info in infos.values()
    ]
    out.table(COLUMNS, rows)
    return 0
