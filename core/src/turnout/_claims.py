"""Who supplies each provider, normalizer and retry-policy name: the precedence rules.

Pure: claims in, the claim in force for each name out. What the user registers
in code wins over installed plugins (the later of two in code wins); two
installed plugins claiming one name are a `ConfigError` naming both
distributions, whichever way they were installed, since nothing says which
one the user meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from attrs import evolve, frozen

from ._errors import ConfigError

__all__ = ["CODE", "Claim", "Origin", "resolve"]

T = TypeVar("T")

# How a contribution registered in code is named where a distribution would be.
CODE = "code"


@frozen
class Origin:
    """Where a contribution comes from: an installed plugin (an entry point of a
    distribution) or the user's code."""

    # The plugin's name: its entry point's, or the name it was registered under.
    plugin: str
    distribution: str | None = None
    version: str | None = None
    installed: bool = False

    @property
    def label(self) -> str:
        """The distribution's name; "code" for what was registered in code."""
        if not self.installed:
            return CODE
        return self.distribution or self.plugin

    def describe(self) -> str:
        if not self.installed:
            return f"plugin {self.plugin!r} (registered in code)"
        version = f" {self.version}" if self.version else ""
        return f"{self.label}{version} (entry point {self.plugin!r})"


@frozen
class Claim(Generic[T]):
    """One plugin's contribution under one name."""

    name: str
    value: T
    origin: Origin
    # The installed contribution this one, made in code, replaces.
    replaces: Origin | None = None


def resolve(claims: Iterable[Claim[T]], what: str) -> dict[str, Claim[T]]:
    """The claim in force for each name, in the order names were first claimed."""
    installed: dict[str, Claim[T]] = {}
    code: dict[str, Claim[T]] = {}
    for claim in claims:
        if not claim.origin.installed:
            code[claim.name] = claim
            continue
        other = installed.get(claim.name)
        if other is not None:
            raise ConfigError(
                f"{what} {claim.name!r} is claimed by two installed plugins: "
                f"{other.origin.describe()} and {claim.origin.describe()}; uninstall one, "
                "or turn one off with TURNOUT_DISABLE_PLUGINS=<entry point>"
            )
        installed[claim.name] = claim
    result = dict(installed)
    for name, claim in code.items():
        shadowed = installed.get(name)
        result[name] = evolve(claim, replaces=shadowed.origin if shadowed is not None else None)
    return result
