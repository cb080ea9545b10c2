"""examples/turnout-acme is built on turnout's public API only (its own session,
`nox -s example`, installs and tests it; this checks what it may import)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "turnout-acme"


def private_names(path: Path) -> list[str]:
    """Every private turnout name a module imports or reaches (`turnout._x`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("turnout"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "turnout"
        ):
            names = [f"turnout.{node.attr}"]
        found += [
            n for n in names if n.startswith("turnout.") and any(p.startswith("_") for p in n.split("."))
        ]
    return found


def test_the_example_uses_only_public_names() -> None:
    sources = sorted(EXAMPLE.rglob("*.py"))
    assert len(sources) >= 6
    assert {str(p.relative_to(EXAMPLE)): private_names(p) for p in sources if private_names(p)} == {}


def test_the_example_depends_on_the_core_alone_and_registers_through_its_entry_point() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["turnout>=0.1"]
    assert project["entry-points"]["turnout"] == {"acme": "turnout_acme"}


def code_lines(path: Path) -> int:
    """Lines of code: no blank lines, comments or docstrings."""
    text = path.read_text(encoding="utf-8")
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and ast.get_docstring(node):
            first = node.body[0]
            docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = text.splitlines()
    return sum(
        1
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def test_the_line_counts_in_the_docs_are_the_examples() -> None:
    docs = (EXAMPLE.parents[1] / "docs" / "writing-a-provider.md").read_text()
    table = dict(re.findall(r"^\| `([\w/.]+\.py)` \| [^|]+ \| (\d+) \|$", docs, flags=re.MULTILINE))
    assert len(table) == 6
    for name, count in table.items():
        path = EXAMPLE / (name if "/" in name else f"src/turnout_acme/{name}")
        assert code_lines(path) == int(count), name
