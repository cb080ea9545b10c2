"""turnout._json: orjson's speed with the stdlib's answers (values and errors)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout import _json

_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _outcome(parse: Any, data: str | bytes) -> tuple[str, Any]:
    try:
        return "value", repr(parse(data))
    except RecursionError:
        return "RecursionError", None
    except ValueError:
        return "ValueError", None


def test_orjson_is_what_parses_on_cpython() -> None:
    # A dependency on CPython: without it the speed this module exists for is gone.
    assert _json._FAST is not None


@settings(max_examples=300)
@given(_VALUES)
def test_any_json_document_parses_to_what_the_stdlib_gives(value: Any) -> None:
    text = json.dumps(value)  # NaN and Infinity included, as json writes them
    assert _outcome(_json.loads, text) == _outcome(json.loads, text)
    assert _outcome(_json.loads, text.encode()) == _outcome(json.loads, text.encode())


def _int(digits: str) -> int | float:
    """The stdlib's integers, but for the documented difference: past 64 bits, a float."""
    value = int(digits)
    return value if -(2**63) <= value < 2**64 else float(value)


def _stdlib(data: str | bytes) -> Any:
    return json.loads(data, parse_int=_int)


@settings(max_examples=300)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnrulsaN \\u\ud800', max_size=30))
def test_any_text_gives_the_stdlib_value_or_error(text: str) -> None:
    assert _outcome(_json.loads, text) == _outcome(_stdlib, text)


@pytest.mark.parametrize(
    "data",
    [
        '{"a": 1, "a": 2}',
        "NaN",
        "[1, -Infinity]",
        '"\\ud800"',
        "\ufeff{}",
        '{"a": 1} x',
        "",
        "[" * 5000 + "]" * 5000,
        b"\xff\xfe{\x00}\x00",  # UTF-16, which the stdlib reads and orjson does not
        b'{"a": "\xff"}',
        "1e400",
    ],
)
def test_what_orjson_declines_the_stdlib_decides(data: str | bytes) -> None:
    assert _outcome(_json.loads, data) == _outcome(json.loads, data)


def test_without_orjson_the_stdlib_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_json, "_FAST", None)
    assert _json.loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    with pytest.raises(ValueError):
        _json.loads("{")


def test_the_one_documented_difference_integers_past_64_bits_become_floats() -> None:
    # Kept visible: if orjson ever raises for them instead, the stdlib takes over again.
    assert _json.loads(str(2**64 - 1)) == 2**64 - 1
    assert _json.loads(str(2**64)) == float(2**64)
