"""The ranges configured numbers must lie in, checked where each number is declared.

A breaker window of 0 grows the breaker's history by one entry per call for
ever; a NaN timeout fails later with a raw `ValueError`; a negative retry
count or budget means nothing. So each such field of an attrs class carries
its range as a validator (`window: int = field(default=20, validator=COUNT)`):
the class refuses the value when it is built in code, and the configuration
loader (cattrs, `turnout._structure`) reports the same refusal with the
value's whole path (`breaker.window`), because the error names its field.
"""

from __future__ import annotations

import math
from typing import Any

from attrs import frozen

from ._errors import ConfigError

__all__ = [
    "COUNT",
    "FRACTION",
    "MULTIPLIER",
    "NON_NEGATIVE",
    "POSITIVE",
    "POSITIVE_INT",
    "RETRIES",
    "SHARE",
    "OutOfRange",
    "Range",
]


class OutOfRange(ConfigError):
    """A configured number outside its range; `field` names it within its class."""

    def __init__(self, owner: str, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(reason, path=f"{owner}.{field}" if owner else field, value=value)


@frozen
class Range:
    """A finite number (an integer when `integer`) from `low` to `high`; `low` itself
    is excluded when `above`. An attrs validator, and a check with a path."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    integer: bool = False

    def holds(self, value: Any) -> bool:
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        what = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            opening = "(" if self.above else "["
            return f"{what} in {opening}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.above else '>='} {self.low:g}"
        return what if self.high is None else f"{what} <= {self.high:g}"

    def check(self, value: Any, path: str) -> None:
        """Raise `OutOfRange` naming `path` unless `value` lies in the range."""
        if not self.holds(value):
            raise OutOfRange("", path, value, f"must be {self.describe()}")

    def __call__(self, instance: Any, attribute: Any, value: Any) -> None:
        if not self.holds(value):
            raise OutOfRange(type(instance).__name__, attribute.name, value, f"must be {self.describe()}")


POSITIVE = Range(0.0, above=True)
NON_NEGATIVE = Range(0.0)
POSITIVE_INT = Range(0, above=True, integer=True)
# How many of something: at least one.
COUNT = Range(1, integer=True)
RETRIES = Range(0, integer=True)
# A share of calls that may trip a breaker (0 would trip on every call).
SHARE = Range(0.0, 1.0, above=True)
FRACTION = Range(0.0, 1.0)
MULTIPLIER = Range(1.0)
