"""The reference tables of the chat types are generated from the attrs classes
(docs/gen_tables.py): every field is in them, and a field without a description stops
the docs build instead of going undocumented."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import attrs
import pytest

import turnout

ROOT = Path(__file__).resolve().parents[2]
TYPES = (
    turnout.ChatResponse,
    turnout.ChatChunk,
    turnout.ToolCall,
    turnout.ToolCallDelta,
    turnout.Usage,
    turnout.Message,
    turnout.ChatRequest,
)


def gen_tables() -> Any:
    spec = importlib.util.spec_from_file_location("gen_tables", ROOT / "docs" / "gen_tables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_every_field_is_in_its_table(cls: type) -> None:
    table = gen_tables().type_table(cls)
    rows = table.splitlines()[2:]
    assert [row.split("|")[1].strip().strip("`") for row in rows] == [f.name for f in attrs.fields(cls)]
    page = (ROOT / "docs" / "types.md").read_text(encoding="utf-8")
    assert f'--8<-- "type-{cls.__name__}.md"' in page


def test_a_field_without_a_description_stops_the_build() -> None:
    module = gen_tables()

    @attrs.frozen
    class Grown:
        content: str
        new_field: int = 0

    module.FIELD_DOCS = {Grown: {"content": "the text", "gone": "a field that is no more"}}
    with pytest.raises(SystemExit, match=r"without a description \['new_field'\].*of no field \['gone'\]"):
        module.type_table(Grown)


def test_defaults_and_types_come_from_the_class() -> None:
    table = gen_tables().type_table(turnout.ChatResponse)
    assert "| `content` | `str` | required |" in table
    assert "| `tool_calls` | `tuple[ToolCall, ...]` | `()` |" in table
    assert "| `finish_reason` | `str \\| None` | `None` |" in table
    assert "| `message` | `Mapping[str, Any]` | `{}` |" in table


def test_the_finish_reasons_and_capabilities_tables() -> None:
    module = gen_tables()
    assert "| `end_turn` | `stop` |" in module.finish_reasons_table()
    capabilities = module.capabilities_table()
    for name, provider in turnout.Plugins().providers().items():
        row = next(line for line in capabilities.splitlines() if line.startswith(f"| {name} |"))
        assert row.count("yes") == len(provider.capabilities)
