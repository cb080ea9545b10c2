"""Parsing the JSON a gateway sends: with orjson when it is installed, as the stdlib would.

Every answer and every stream event is JSON, so parsing it is the largest single
cost of a streamed chunk (a tool-call event: about 2.2 µs with `json.loads`,
0.7 µs with orjson). orjson is a dependency of turnout on CPython; elsewhere,
or if it is missing, the stdlib parses.

The stdlib stays the judge, so a body gives the same value, or the same
`ValueError` / `RecursionError`, with orjson or without it:

- whatever orjson declines (its limits are stricter: `NaN`, lone surrogates,
  text not in UTF-8, nesting past 1,024 levels) is parsed again by `json.loads`;
- a body with a run of 19 digits or more goes to `json.loads` at once: orjson
  reads an integer past 64 bits as a float (or, past ~309 digits, declines it,
  depending on its version), where the stdlib keeps it exact. Every integer of 18
  digits fits in 64 bits. The check costs about 0.3 µs (a byte-wise translate); a
  long number inside a string only sends that body the slow way.

`event` is for the events of a stream, where that 0.3 µs is a tenth of what
turnout spends on a chunk: an event that mentions `usage` or `error` is read as
`loads` reads it; in any other, turnout reads only strings (text, refusals,
tool-call pieces, ids) and tool-call indexes, and an index past 2**63 is malformed
whichever parser read it. So a chunk is the same either way. (A plugin whose
`chunk_from` reads another number from an event gets orjson's reading of it.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["event", "loads"]


def _orjson() -> Callable[[str | bytes], Any] | None:
    try:
        from orjson import loads as fast
    except ImportError:  # pragma: no cover - installed with turnout on CPython
        return None
    return fast


_FAST = _orjson()
# Every digit as "0", every other byte as "x": a run of 19 digits is then a substring.
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def _orjson_first(data: str | bytes) -> Any:
    """orjson's reading, or the stdlib's of what orjson declines."""
    assert _FAST is not None
    try:
        return _FAST(data)
    except ValueError:  # orjson's JSONDecodeError: the stdlib decides
        return json.loads(data)


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, faster: the same values and the same errors."""
    if _FAST is None:
        return json.loads(data)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return json.loads(data)
    return _orjson_first(data)


def event(data: str) -> Any:
    """One stream event's JSON: as `loads` reads it if it mentions usage or an error,
    else without the check for long numbers (see the module's docstring)."""
    if _FAST is None or "usage" in data or "error" in data:
        return loads(data)
    return _orjson_first(data)
