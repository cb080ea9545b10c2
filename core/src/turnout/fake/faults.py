"""What goes wrong at a fake gateway, and how often: fault profiles, fault files,
scripted faults.

Files, mappings and admin requests are structured by cattrs through
`turnout._structure`: the conditions on a value are written in its type
(`Rate`, `Seconds`, `Count`, `Status`), and a mistake is one `ConfigError`
naming the path (`acme.errors.rate_limited`), the bad value, and for an
unknown key the one it most likely meant.
"""

from __future__ import annotations

import json
import os
import random
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import cattrs
from attrs import asdict, field, frozen

from turnout._errors import ConfigError
from turnout._structure import Check, make_converter, structure
from turnout.emulation import Count, Fault, Seconds, Status

__all__ = [
    "QUIET",
    "FaultProfile",
    "FaultsConfig",
    "describe",
    "fault_from_mapping",
    "load_faults",
]


Rate = Annotated[float, Check(lambda v: 0.0 <= v <= 1.0, "must be a rate between 0 and 1")]


# Seconds: one number, or a list of them to pick from (structured by `_some_seconds`).
SomeSeconds = Annotated[tuple[float, ...], "one or more numbers of seconds"]


@frozen
class FaultProfile:
    """How often one provider fails, and how. Rates are per request.

    One draw per request picks at most one of: an HTML page (`html`, by
    status), an error (`errors`, by name: an ErrorKind value or the provider's
    own code), a malformed 200 (`malformed`). A second draw picks, for a
    streamed success, an in-band error frame (`stream_errors`, after
    `stream_error_after` content chunks) or a dropped connection (`drops`,
    after `drop_after` chunks).
    """

    errors: Mapping[str, Rate] = field(factory=dict)
    html: Mapping[Status, Rate] = field(factory=dict)
    malformed: Rate = 0.0
    stream_errors: Mapping[str, Rate] = field(factory=dict)
    stream_error_after: Count = 1
    drops: Rate = 0.0
    drop_after: Count = 1
    # Retry-After sent with errors: one value, or several to pick from at random.
    retry_after: SomeSeconds = ()
    # Seconds before the response starts, before its first body byte, between stream chunks.
    latency: Seconds = 0.0
    first_byte_delay: Seconds = 0.0
    chunk_delay: Seconds = 0.0

    @classmethod
    def from_mapping(cls, data: Any, path: str = "faults") -> FaultProfile:
        """A profile from a TOML/JSON table; mistakes raise ConfigError naming the path."""
        if isinstance(data, FaultProfile):
            return data
        profile = structure(_CONVERTER, data, FaultProfile, root=path)
        if sum(profile.errors.values()) + sum(profile.html.values()) + profile.malformed > 1.0 + 1e-9:
            raise ConfigError("errors, html and malformed rates add up to more than 1", path=path)
        if sum(profile.stream_errors.values()) + profile.drops > 1.0 + 1e-9:
            raise ConfigError("stream_errors and drops rates add up to more than 1", path=path)
        return profile

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-able data (what the admin endpoint shows)."""
        data = asdict(self)
        data["html"] = {str(k): v for k, v in self.html.items()}
        data["retry_after"] = list(self.retry_after)
        return data

    @property
    def quiet(self) -> bool:
        return self == QUIET

    def draw(self, rng: random.Random) -> Fault:
        """The fault for one request (two draws, always, so runs stay reproducible)."""
        first, second = rng.random(), rng.random()
        delays: dict[str, Any] = {"latency": self.latency, "first_byte_delay": self.first_byte_delay}
        total = 0.0
        for status, rate in self.html.items():
            total += rate
            if first < total:
                return Fault(html=status, **delays)
        for name, rate in self.errors.items():
            total += rate
            if first < total:
                wait = rng.choice(self.retry_after) if self.retry_after else None
                return Fault(error=name, retry_after=wait, **delays)
        total += self.malformed
        if first < total:
            return Fault(malformed=True, **delays)
        total = 0.0
        for name, rate in self.stream_errors.items():
            total += rate
            if second < total:
                return Fault(stream_error=name, stream_error_after=self.stream_error_after, **delays)
        total += self.drops
        if second < total:
            return Fault(drop_after=self.drop_after, **delays)
        return Fault(**delays)


QUIET = FaultProfile()


def fault_from_mapping(data: Any, path: str = "fault") -> Fault | None:
    """A `Fault` from JSON (`{"error": "rate_limited", "retry_after": 0.5}`); null or
    `{}` is a normal answer, and a field that is null keeps its default."""
    if data is None or isinstance(data, Fault):
        return data
    if isinstance(data, Mapping):
        data = {key: value for key, value in data.items() if value is not None}
    return structure(_CONVERTER, data, Fault, root=path)


@frozen
class FaultsConfig:
    """A faults file: a seed and a profile per provider. `"*"` holds defaults for
    every provider: a provider's own table overrides its keys."""

    profiles: Mapping[str, FaultProfile] = field(factory=dict)
    seed: int | None = None

    @classmethod
    def from_mapping(cls, data: Any, path: str = "") -> FaultsConfig:
        if isinstance(data, FaultsConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(
                "the faults must be a table of provider = profile", path=path or None, value=data
            )
        seed = data.get("seed")
        if seed is not None:
            seed = structure(_CONVERTER, seed, int, root=_join(path, "seed"))
        # "*" holds defaults: a provider's own table overrides its keys.
        default = structure(_CONVERTER, data.get("*", {}), dict[str, Any], root=_join(path, "*"))
        profiles: dict[str, FaultProfile] = {}
        for name, value in data.items():
            if name == "seed":
                continue
            merged = {**default, **value} if isinstance(value, Mapping) else value
            profiles[str(name)] = FaultProfile.from_mapping(merged, _join(path, str(name)))
        return cls(profiles, seed)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_faults(source: str | os.PathLike[str] | Mapping[str, Any] | FaultsConfig | None) -> FaultsConfig:
    """Faults from a TOML or JSON file (by extension; TOML otherwise) or the same mapping."""
    if source is None:
        return FaultsConfig()
    if isinstance(source, FaultsConfig | Mapping):
        return FaultsConfig.from_mapping(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the faults file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the faults file is not UTF-8", path=str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"invalid {kind}: {exc}", path=str(path)) from None
    return FaultsConfig.from_mapping(data)


def describe(fault: Fault | None, *, streamed: bool = True) -> str:
    """A fault in a few words, for logs and tables ("" for none). The stream faults
    are left out of a reply that is not a stream (they did not apply)."""
    if fault is None:
        return ""
    if fault.html is not None:
        return f"HTML {fault.html} page"
    if fault.error is not None:
        after = f", Retry-After {fault.retry_after:g}s" if fault.retry_after is not None else ""
        return f"{fault.error}{after}"
    if fault.malformed:
        return "malformed body"
    parts = []
    if fault.stream_error is not None and streamed:
        parts.append(f"{fault.stream_error} frame after {fault.stream_error_after} chunks")
    if fault.drop_after is not None and streamed:
        parts.append(f"dropped after {fault.drop_after} chunks")
    if fault.latency:
        parts.append(f"latency {fault.latency:g}s")
    if fault.first_byte_delay:
        parts.append(f"first byte after {fault.first_byte_delay:g}s")
    return ", ".join(parts)


def _some_seconds(value: Any, _: Any) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("must not be empty")
        return tuple(_CONVERTER.structure(value, tuple[Seconds, ...]))
    return (_CONVERTER.structure(value, Seconds),)


_CONVERTER: cattrs.Converter = make_converter()
_CONVERTER.register_structure_hook_factory(lambda cls: cls == SomeSeconds, lambda _: _some_seconds)
