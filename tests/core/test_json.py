"""turnout._json: orjson's speed with the stdlib's answers (values and errors)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout import _json

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
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


@settings(max_examples=300)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnrulsaN \\u\ud800', max_size=30))
def test_any_text_gives_the_stdlib_value_or_error(text: str) -> None:
    assert _outcome(_json.loads, text) == _outcome(json.loads, text)


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


@pytest.mark.parametrize(
    "digits",
    [
        str(2**63 - 1),
        str(2**63),
        str(2**64 - 1),
        str(2**64),  # where orjson would give a float
        str(-(2**63) - 1),
        "9" * 308,  # a float from orjson...
        "9" * 309,  # ...and past that, declined
        "9" * 4300,
        "0." + "1" * 40,
    ],
)
def test_long_numbers_stay_exact(digits: str) -> None:
    for data in (f'{{"n": {digits}}}', f'{{"n": {digits}}}'.encode()):
        assert _outcome(_json.loads, data) == _outcome(json.loads, data)
        if _outcome(json.loads, data)[0] == "value":
            assert type(_json.loads(data)["n"]) is type(json.loads(data)["n"])


def test_a_long_run_of_digits_in_text_is_only_slower() -> None:
    data = '{"id": "chatcmpl-12345678901234567890123", "n": 1, "s": "\ud800"}'
    assert _json.loads(data) == json.loads(data)


@settings(max_examples=300)
@given(_VALUES)
def test_a_stream_event_parses_to_what_the_stdlib_gives(value: Any) -> None:
    text = json.dumps(value)
    expected = _outcome(json.loads, text)
    if len(max(re.findall(r"\d+", text), key=len, default="")) < 19:
        assert _outcome(_json.event, text) == expected
    else:  # an integer past 64 bits may come back the nearest float: never another value
        assert _outcome(_json.event, text) in (expected, _outcome(_floats_past_64_bits, text))


def _floats_past_64_bits(data: str) -> Any:
    """The stdlib's reading, but an integer outside [-2**63, 2**64) as its nearest float
    (one too large for a float stays exact: orjson declines it, the stdlib reads it)."""

    def number(digits: str) -> int | float:
        value = int(digits)
        return value if -(2**63) <= value < 2**64 or abs(value) >= 10**308 else float(value)

    return json.loads(data, parse_int=number)


@pytest.mark.parametrize(
    "data",
    [
        '{"choices": [], "usage": {"prompt_tokens": 18446744073709551616}}',
        '{"error": {"code": 123456789012345678901234567890, "message": "no"}}',
    ],
)
def test_an_event_with_usage_or_an_error_is_read_exactly(data: str) -> None:
    assert repr(_json.event(data)) == repr(json.loads(data))
