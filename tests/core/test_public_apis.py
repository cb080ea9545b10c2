"""turnout uses its dependencies' public APIs only, so an upgrade cannot break users.

A static scan: no `from httpx._x import`, and no attribute named like a private
attribute of httpx, httpcore, pluggy, cattrs, redis or OpenTelemetry that turnout does
not define itself; plus names the libraries keep only for backward compatibility."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*(ROOT / "core" / "src").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")],
)
LIBRARIES = (
    "httpx", "httpcore", "pluggy", "cattrs", "redis", "attrs", "starlette", "uvicorn", "opentelemetry",
)  # fmt: skip
# Kept by pluggy for backward compatibility only; httpx's private transport lookup.
FORBIDDEN = {"list_plugin_distinfo", "project_name", "_transport_for_url"}


@functools.cache
def private_names_of(library: str) -> frozenset[str]:
    """Every private name a library defines: its modules' functions and classes,
    and the attributes its code assigns (`self._requests = ...`)."""
    try:
        module = importlib.import_module(library)
    except ImportError:
        return frozenset()
    # A package's folders (OpenTelemetry's is a namespace package: the API's, the SDK's...).
    roots = [Path(p) for p in getattr(module, "__path__", ())] or [Path(inspect.getfile(module)).parent]
    names: set[str] = set()
    for path in (found for root in roots for found in root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


@functools.cache
def _parsed() -> tuple[tuple[Path, ast.Module], ...]:
    return tuple((path, ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCES)


def parsed() -> list[tuple[Path, ast.Module]]:
    return list(_parsed())


def defined_privates(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """Private names turnout defines itself (functions, classes, attributes, slots)."""
    names: set[str] = set()
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif (
                isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_")
            ):
                names.add(node.value)  # __slots__ entries
    return names


def test_no_private_module_of_a_dependency_is_imported() -> None:
    found = []
    for path, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] in LIBRARIES and any(p.startswith("_") for p in parts[1:]):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] in LIBRARIES and any(p.startswith("_") for p in parts[1:]):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert found == []


def violations(trees: list[tuple[Path, ast.Module]]) -> list[str]:
    ours = defined_privates(trees)
    theirs = set().union(*(private_names_of(lib) for lib in LIBRARIES))
    found = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                name = node.attr
                if name in FORBIDDEN or (name in theirs and name not in ours):
                    found.append(f"{path.name}:{node.lineno} .{name}")
    return found


def test_no_private_attribute_of_a_dependency_is_used() -> None:
    assert violations(parsed()) == []


NEEDS_OTEL = pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is None, reason="OpenTelemetry is not installed"
)


@pytest.mark.parametrize(
    "source",
    [
        "client._transport_for_url(url).handle_request(request)",  # what the router once did
        "pool._requests.clear()",  # an httpcore private
        "manager._name2plugin.get(name)",  # a pluggy private
        "manager.list_plugin_distinfo()",  # pluggy's backward-compatibility API
        # OpenTelemetry's privates are known when it is installed (not beside the core alone).
        pytest.param("tracer._real_tracer.start_span(name)", marks=NEEDS_OTEL),  # the API's
        pytest.param("span._attributes._immutable = True", marks=NEEDS_OTEL),  # the SDK's
    ],
)
def test_the_scan_catches_private_uses(source: str) -> None:
    """The checker itself, against something broken."""
    broken = [*parsed(), (Path("broken.py"), ast.parse(source))]
    assert [v for v in violations(broken) if v.startswith("broken.py")] != []
