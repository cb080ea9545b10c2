"""User data in, attrs instances out: the one edge where configuration, deployment
options and fault files are checked.

cattrs structures the data; this module turns what cattrs reports into one
`ConfigError` a person can act on: the path (`deployments[2].weight`), the bad
value, the allowed choices, and for an unknown key the known key it most
likely meant (`modle`: did you mean `model`?). Scalars are strict: `"2"` is not
a number and `1` is not `true`.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from ._errors import ConfigError

__all__ = ["ChoiceError", "make_converter", "structure", "suggestion"]

T = TypeVar("T")


class ChoiceError(ValueError):
    """A value outside a fixed set (a `Literal` or an enum)."""

    def __init__(self, value: Any, choices: Sequence[str]) -> None:
        self.value = value
        self.choices = tuple(choices)
        super().__init__(f"must be one of {', '.join(self.choices)}")


def _strict(expected: type | tuple[type, ...], label: str, convert: Any) -> Any:
    allowed = expected if isinstance(expected, tuple) else (expected,)

    def structure(value: Any, _: Any) -> Any:
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise TypeError(f"expected {label}")
        return convert(value)

    return structure


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _is_literal(cls: Any) -> bool:
    return get_origin(cls) is Literal


def _literal_hook(cls: Any) -> Any:
    choices = get_args(cls)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) or value not in choices:
            raise ChoiceError(value, [str(c) for c in choices])
        return value

    return structure


def _is_enum(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, enum.Enum)


def _enum_hook(cls: type[enum.Enum]) -> Any:
    def structure(value: Any, _: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            raise ChoiceError(value, [str(member.value) for member in cls]) from None

    return structure


def make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """A converter with strict scalars, finite floats, and choice errors for
    `Literal`s and enums. A factory, not a global, so each edge can add hooks."""
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(str, _strict(str, "a string", str))
    converter.register_structure_hook(float, _strict((int, float), "a number", _finite))
    converter.register_structure_hook(int, _strict(int, "an integer", int))
    converter.register_structure_hook(bool, _strict(bool, "true or false", bool))
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_enum, _enum_hook)
    return converter


def suggestion(word: str, known: Sequence[str]) -> str:
    """`; did you mean 'model'?` for a near miss, else the known names."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(sorted(known))}" if known else ""


def _leaves(exc: BaseException, path: str) -> list[tuple[str, BaseException]]:
    """Every leaf error of a cattrs exception group, with its path."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return [(path, exc)]
    found: list[tuple[str, BaseException]] = []
    with_notes, without = exc.group_exceptions()
    for sub, note in with_notes:
        if isinstance(note, AttributeValidationNote):
            found.extend(_leaves(sub, f"{path}.{note.name}" if path else note.name))
        else:
            found.extend(_leaves(sub, f"{path}[{note.index}]"))
    for sub in without:
        found.extend(_leaves(sub, path))
    return found


def _first(exc: BaseException) -> tuple[str, BaseException]:
    """The leaf to report: an unknown key first (`modle` explains a missing `model`)."""
    leaves = _leaves(exc, "")
    for where, leaf in leaves:
        if isinstance(leaf, ForbiddenExtraKeysError):
            return where, leaf
    return leaves[0]


def _lookup(data: Any, path: str) -> Any:
    node = data
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node


def _field_names(cls: Any) -> list[str]:
    if attrs.has(cls):
        return [a.alias or a.name for a in attrs.fields(cls)]
    return []


def _join(root: str, path: str) -> str:
    if not root:
        return path
    if not path:
        return root
    return f"{root}{path}" if path.startswith("[") else f"{root}.{path}"


def structure(converter: cattrs.Converter, data: Any, cls: type[T], *, root: str = "") -> T:
    """`data` structured as `cls`, or one ConfigError naming the path under `root`."""
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        where, leaf = _first(exc)
        raise _config_error(leaf, where, root, data) from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise _config_error(exc, "", root, data) from None


def _config_error(leaf: BaseException, where: str, root: str, data: Any) -> ConfigError:
    if isinstance(leaf, ForbiddenExtraKeysError):
        extra = sorted(leaf.extra_fields)[0]
        known = _field_names(leaf.cl)
        return ConfigError(
            f"unknown key{suggestion(extra, known)}", path=_join(root, _join(where, extra)), show_value=False
        )
    path = _join(root, where)
    if isinstance(leaf, KeyError):
        return ConfigError("required field missing", path=path)
    value = _lookup(data, where)
    if isinstance(leaf, ChoiceError):
        return ConfigError(str(leaf), path=path, value=leaf.value)
    if isinstance(leaf, TypeError | ValueError):
        return ConfigError(str(leaf), path=path, value=value)
    return ConfigError(f"invalid value ({type(leaf).__name__})", path=path, value=value)
