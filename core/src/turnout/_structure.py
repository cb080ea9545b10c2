"""User data in, attrs instances out: the one edge where configuration, deployment
options and fault files are checked.

cattrs structures the data; this module turns what cattrs reports into one
`ConfigError` a person can act on: the path (`deployments[2].weight`), the bad
value, the allowed choices, and for an unknown key the known key it most
likely meant (`modle`: did you mean `model`?). Scalars are strict: `"2"` is not
a number and `1` is not `true`; a table is a mapping, never something cattrs
happens to be able to iterate. A condition on a value is written in its type,
`Annotated[float, Check(...)]`, so it is checked where the value is and its
error names the value's own path (`acme.errors.rate_limited`).
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_mapping_structure_fn

from ._checks import Check
from ._errors import ConfigError
from ._ranges import OutOfRange

__all__ = ["BadValue", "Check", "ChoiceError", "make_converter", "structure", "suggestion"]

T = TypeVar("T")


class BadValue(ValueError):
    """A value that fails a check, carrying it: the error shows this value (a
    mapping key has no path of its own to look it up by)."""

    def __init__(self, message: str, value: Any) -> None:
        self.value = value
        super().__init__(message)


class ChoiceError(BadValue):
    """A value outside a fixed set (a `Literal` or an enum)."""

    def __init__(self, value: Any, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)
        super().__init__(f"must be one of {', '.join(self.choices)}", value)


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


def _checks(cls: Any) -> list[Check]:
    if get_origin(cls) is not Annotated:
        return []
    return [m for m in cls.__metadata__ if isinstance(m, Check)]


def _checked_hook(converter: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Any:
        base, checks = get_args(cls)[0], _checks(cls)

        def structure(value: Any, _: Any) -> Any:
            result = value
            for check in checks:
                try:
                    result = check.parse(result) if check.parse else converter.structure(result, base)
                except (TypeError, ValueError) as exc:  # a scalar's own error, with its value
                    raise BadValue(str(exc), value) from None
                if not check.test(result):
                    raise BadValue(check.message, value)
            return result

        return structure

    return factory


def _is_mapping(cls: Any) -> bool:
    origin = get_origin(cls) or cls
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _tables(converter: cattrs.Converter) -> Callable[[Any], Any]:
    """cattrs' own hooks for attrs classes and mappings, refusing what is not a mapping
    (cattrs would report `3` for a table as an AttributeError)."""

    def factory(cls: Any) -> Any:
        inner = (
            make_dict_structure_fn(cls, converter)
            if attrs.has(cls)
            else make_mapping_structure_fn(cls, converter, detailed_validation=converter.detailed_validation)
        )

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError("expected a table")
            return inner(value, cls)

        return structure

    return factory


def make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """A converter with strict scalars and tables, finite floats, `Check`s, and choice
    errors for `Literal`s and enums. A factory, not a global, so each edge can add hooks."""
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(str, _strict(str, "a string", str))
    converter.register_structure_hook(float, _strict((int, float), "a number", _finite))
    converter.register_structure_hook(int, _strict(int, "an integer", int))
    converter.register_structure_hook(bool, _strict(bool, "true or false", bool))
    converter.register_structure_hook_factory(
        lambda cls: attrs.has(cls) or _is_mapping(cls), _tables(converter)
    )
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_enum, _enum_hook)
    converter.register_structure_hook_factory(lambda cls: bool(_checks(cls)), _checked_hook(converter))
    return converter


def suggestion(word: str, known: Sequence[str]) -> str:
    """`; did you mean 'model'?` for a near miss, else the known names."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(sorted(known))}" if known else ""


# One step of a path: how it is written (`.name`, `[0]`) and the key into the data.
Step = tuple[str, Any]


def _leaves(exc: BaseException, steps: tuple[Step, ...]) -> list[tuple[tuple[Step, ...], BaseException]]:
    """Every leaf error of a cattrs exception group, with its path. Mapping keys are
    written like attributes (`errors.rate_limited`), list indexes in brackets."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return [(steps, exc)]
    found: list[tuple[tuple[Step, ...], BaseException]] = []
    with_notes, without = exc.group_exceptions()
    mapping = isinstance(exc, IterableValidationError) and _is_mapping(exc.cl)
    for sub, note in with_notes:
        if isinstance(note, AttributeValidationNote):
            step: Step = (f".{note.name}", note.name)
        else:
            step = (f".{_key(note.index)}" if mapping else f"[{note.index}]", note.index)
        found.extend(_leaves(sub, (*steps, step)))
    for sub in without:
        found.extend(_leaves(sub, steps))
    return found


def _first(exc: BaseException) -> tuple[tuple[Step, ...], BaseException]:
    """The leaf to report: an unknown key first (`modle` explains a missing `model`)."""
    leaves = _leaves(exc, ())
    for steps, leaf in leaves:
        if isinstance(leaf, ForbiddenExtraKeysError):
            return steps, leaf
    return leaves[0]


def _key(key: Any) -> str:
    """A mapping key as a path shows it: as written, unless it would break the one line
    an error is (a newline, a control character), then quoted."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _lookup(data: Any, steps: Sequence[Step]) -> Any:
    node = data
    for _, key in steps:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
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
        steps, leaf = _first(exc)
        raise _config_error(leaf, steps, root, data) from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise _config_error(exc, (), root, data) from None


def _config_error(leaf: BaseException, steps: tuple[Step, ...], root: str, data: Any) -> ConfigError:
    where = "".join(written for written, _ in steps).lstrip(".")
    if isinstance(leaf, ForbiddenExtraKeysError):
        extra = sorted(leaf.extra_fields)[0]
        known = _field_names(leaf.cl)
        return ConfigError(
            f"unknown key{suggestion(extra, known)}",
            path=_join(root, _join(where, _key(extra))),
            show_value=False,
        )
    path = _join(root, where)
    if isinstance(leaf, OutOfRange):  # an attrs validator's refusal, naming its field
        return ConfigError(leaf.reason, path=_join(path, leaf.field), value=leaf.value)
    if isinstance(leaf, KeyError):
        return ConfigError("required field missing", path=path)
    value = _lookup(data, steps)
    if isinstance(leaf, BadValue):
        return ConfigError(str(leaf), path=path, value=leaf.value)
    if isinstance(leaf, TypeError | ValueError):
        return ConfigError(str(leaf), path=path, value=value)
    return ConfigError(f"invalid value ({type(leaf).__name__})", path=path, value=value)
