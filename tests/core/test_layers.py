"""The core's shape: no import cycle (type-only imports included), no module over
600 lines, the decision core never imports the plugin manager, and the core's code
names no plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "core" / "src" / "turnout"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
MAX_LINES = 600
PLUGIN_NAMES = ("meshapi", "mume", "litellm", "mythicdot", "modelroute")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node, but those under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def imports(path: Path, *, typing: bool = True) -> set[str]:
    """Every turnout module `path` imports at run time (and, with `typing`, for type
    checking only)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if typing else _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("turnout"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("turnout"))
    known = {module_name(p) for p in MODULES}
    return {t for t in found if t in known and t != name}


def graph(*, typing: bool = True) -> dict[str, set[str]]:
    return {module_name(p): imports(p, typing=typing) for p in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "turnout":  # the package itself loads lazily from its stub
                continue
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_is_longer_than_600_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_the_decision_core_does_not_import_the_plugin_manager() -> None:
    """A user of the router's decisions or the flow drivers does not load pluggy."""
    edges = graph(typing=False)
    seen, pending = set(), ["turnout._call", "turnout._sync_driver", "turnout._async_driver"]
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(edges.get(node, ()))
    assert "turnout._plugins" not in seen
    assert "turnout.hookspecs" not in seen


def test_the_core_names_no_plugin() -> None:
    """Plugins are found, never named: docs strings aside, no code mentions one."""
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.lower()
                if any(name in text for name in PLUGIN_NAMES) and not _is_docstring(node):
                    found.append(f"{path.name}:{node.lineno} {node.value[:60]!r}")
    assert found == []


def _is_docstring(node: ast.Constant) -> bool:
    return "\n" in str(node.value) or len(str(node.value)) > 60
