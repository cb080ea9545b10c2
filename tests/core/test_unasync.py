"""The sync driver's generated I/O methods match the async driver's (scripts/unasync.py),
and the check fails on a copy that drifted."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unasync = load()


def test_every_generated_region_is_as_generated(capsys: pytest.CaptureFixture[str]) -> None:
    assert unasync.main(["--check"]) == 0, capsys.readouterr().out
    for _source, target in unasync.PAIRS:
        # Something is generated: a region with the methods that read and send.
        [(start, end)] = unasync.regions(target.read_text().splitlines(), target)
        body = "\n".join(target.read_text().splitlines()[start:end])
        assert "def send(" in body
        assert "def next_event(" in body
        assert "await" not in body
        assert "async " not in body


def test_a_hand_edit_of_a_generated_region_is_found() -> None:
    [(source, target)] = unasync.PAIRS
    text = target.read_text()
    drifted = text.replace("self.close_stream()\n        raise self.failure", "raise self.failure", 1)
    assert drifted != text
    assert unasync.generate(source.read_text(), drifted, source, target) == text
    # The source's edits reach the copy, made sync.
    ending = "self.close_stream()\n        raise self.failure"
    renamed = ending.replace("close_stream", "aclose_all")
    edited = source.read_text().replace("await " + ending, "await " + renamed, 1)
    assert "self.aclose_all()\n        raise self.failure" in unasync.generate(edited, text, source, target)


def test_the_rules() -> None:
    line = "    async def f(self):  # async for x in y: await anext(it, None); await g()"
    assert unasync.unasync_line(line) == "    def f(self):  # for x in y: next(it, None); g()"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# unasync: begin\nx\n", "never ends"),
        ("x\n# unasync: end\n", "never began"),
        ("# unasync: begin\n# unasync: begin\n# unasync: end\n", "inside another"),
    ],
)
def test_markers_out_of_order_are_an_error(text: str, message: str) -> None:
    with pytest.raises(unasync.RegionError, match=message):
        unasync.regions(text.splitlines(), Path("f.py"))
