"""Real installed distributions for plugin tests: a module with hookimpls and a
dist-info with its entry point, on sys.path, found by `importlib.metadata`."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """`install("turnout-x", "x", source, version="1.0")`: the distribution `turnout-x`
    with the entry point `x` (group `turnout`) to a module holding `source`."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(distribution: str, entry: str, source: str, *, version: str = "1.0") -> None:
        module = distribution.replace("-", "_") + "_" + entry
        (tmp_path / f"{module}.py").write_text("import turnout\n" + textwrap.dedent(source))
        info = tmp_path / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        points = info / "entry_points.txt"
        previous = points.read_text() if points.exists() else "[turnout]\n"
        points.write_text(previous + f"{entry} = {module}\n")
        modules.append(module)

    yield make
    for module in modules:
        sys.modules.pop(module, None)
