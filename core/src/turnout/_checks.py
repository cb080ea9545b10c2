"""A condition on a value, written in its type (`Annotated[float, Check(...)]`).

Kept apart from `turnout._structure` (which imports cattrs) so that a class
declaring its checks, such as a provider's options, loads nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Check"]


@attrs.frozen
class Check:
    """A condition on a value, written in its type: `Annotated[float, Check(...)]`.

    The value is structured as the base type (or by `parse`, for a value that
    arrives in another form, such as an HTTP status written as a TOML key),
    then `test` must hold, else `message` is the error, with the path and the value.
    """

    test: Callable[[Any], bool]
    message: str
    parse: Callable[[Any], Any] | None = None
