"""A typed facade over pluggy's PluginManager: the core never calls `pm.hook.*` elsewhere."""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy
from attrs import frozen

from . import hookspecs
from ._errors import ConfigError, ProviderError, TurnoutError

if TYPE_CHECKING:
    from ._provider import Provider
    from .emulation import Emulator

__all__ = [
    "DISABLE_ENV",
    "Plugins",
    "ProviderInfo",
    "default_plugins",
    "normalize_error",
    "providers",
    "register_plugin",
    "register_provider",
]

ENTRY_POINT_GROUP = "turnout"
# Comma-separated plugin (entry-point) names that are never loaded.
DISABLE_ENV = "TURNOUT_DISABLE_PLUGINS"


@frozen
class ProviderInfo:
    name: str
    distribution: str | None
    version: str | None
    module: str


class Plugins:
    """The plugins one router sees: those installed, minus the blocked, plus code-registered."""

    def __init__(self, *, entry_points: bool = True, blocked: Iterable[str] = ()) -> None:
        self._pm = pluggy.PluginManager("turnout")
        self._pm.add_hookspecs(hookspecs)
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for name in {*blocked, *disabled}:
            self._pm.set_blocked(name)
        # Each plugin's distribution and version, from its entry point.
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        if entry_points:
            self._load_entry_points()
        self._lock = threading.Lock()
        self._providers: dict[str, tuple[Provider, ProviderInfo]] | None = None
        self._emulators: dict[str, Emulator] | None = None
        self._code_providers: dict[str, Provider] = {}

    def _load_entry_points(self) -> None:
        """Every installed plugin of the `turnout` entry-point group, with its
        distribution, through `importlib.metadata`'s public API."""
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self._pm.is_blocked(entry.name) or self._pm.has_plugin(entry.name):
                continue
            plugin = entry.load()
            self._pm.register(plugin, name=entry.name)
            dist = entry.dist
            self._dists[entry.name] = (
                (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
            )

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin module or object holding `@hookimpl` functions."""
        with self._lock:
            self._pm.register(plugin, name)
            self._providers = self._emulators = None

    def add_provider(self, provider: Provider) -> None:
        """Register one provider in code (a user's own adapter); replaces one of the same name."""
        with self._lock:
            self._code_providers[provider.name] = provider
            self._providers = None

    def _collect(self, hook_name: str, kind: str) -> list[tuple[Any, str, object]]:
        """Call every implementation of a registration hook on its own, so each
        contribution is attributed to its plugin (and a broken plugin is named)."""
        found: list[tuple[Any, str, object]] = []
        hook = getattr(self._pm.hook, hook_name)
        plugins = [impl.plugin for impl in hook.get_hookimpls()]
        for plugin in reversed(plugins):  # in the order they were registered
            plugin_name = self._pm.get_name(plugin) or repr(plugin)
            # This plugin's implementation alone, called through pluggy.
            caller = self._pm.subset_hook_caller(
                hook_name, remove_plugins=[p for p in plugins if p is not plugin]
            )
            items: list[Any] = []
            try:
                caller(register=items.append)
            except Exception as exc:
                raise TurnoutError(f"plugin {plugin_name!r} failed to register its {kind}: {exc}") from exc
            found.extend((item, plugin_name, plugin) for item in items)
        return found

    def _load_providers(self) -> dict[str, tuple[Provider, ProviderInfo]]:
        from ._provider import Provider

        if self._providers is not None:
            return self._providers
        result: dict[str, tuple[Provider, ProviderInfo]] = {}
        for provider, plugin_name, _ in self._collect("turnout_register_providers", "providers"):
            if not isinstance(provider, Provider):
                raise TurnoutError(f"plugin {plugin_name!r} registered {provider!r}, not a turnout.Provider")
            if provider.name in result:
                other = result[provider.name][1].distribution or result[provider.name][1].module
                raise TurnoutError(
                    f"provider {provider.name!r} is registered twice: by {plugin_name!r} and by {other!r}"
                )
            distribution, version = self._dists.get(plugin_name, (None, None))
            result[provider.name] = (
                provider,
                ProviderInfo(
                    name=provider.name,
                    distribution=distribution,
                    version=version,
                    module=type(provider).__module__,
                ),
            )
        for provider in self._code_providers.values():
            result[provider.name] = (
                provider,
                ProviderInfo(provider.name, None, None, type(provider).__module__),
            )
        self._providers = result
        return result

    def providers(self) -> Mapping[str, Provider]:
        with self._lock:
            return {name: entry[0] for name, entry in self._load_providers().items()}

    def infos(self) -> dict[str, ProviderInfo]:
        with self._lock:
            return {name: entry[1] for name, entry in sorted(self._load_providers().items())}

    def provider(self, name: str, *, path: str | None = None) -> Provider:
        """The provider called `name`, or a ConfigError listing the installed ones."""
        with self._lock:
            loaded = self._load_providers()
        entry = loaded.get(name)
        if entry is None:
            raise ConfigError("unknown provider", path=path, value=name, choices=sorted(loaded))
        return entry[0]

    def emulators(self) -> Mapping[str, Emulator]:
        with self._lock:
            if self._emulators is None:
                found = self._collect("turnout_register_emulators", "emulators")
                self._emulators = {emulator.provider: emulator for emulator, _, _ in found}
            return dict(self._emulators)

    def check_pending(self) -> None:
        """Fail on hook implementations that match no specification (a typo in a plugin)."""
        self._pm.check_pending()


_default: Plugins | None = None
_default_lock = threading.Lock()


def default_plugins() -> Plugins:
    """The process-wide plugins, discovered on first use (never at import)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Plugins()
    return _default


def providers() -> dict[str, ProviderInfo]:
    """The installed providers: `{"meshapi": ProviderInfo(...), ...}`."""
    return default_plugins().infos()


def normalize_error(
    provider: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> ProviderError:
    """The normalized error a provider's gateway means by this response. Sans-IO:
    nothing is sent. `body` may be bytes, str or already-parsed JSON."""
    return (
        default_plugins()
        .provider(provider, path="provider")
        .normalize(status=status, headers=dict(headers or {}), body=body)
    )


def register_provider(provider: Provider) -> None:
    """Make a provider (a user's own adapter) available to every router in this process."""
    default_plugins().add_provider(provider)


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin module or object with `@turnout.hookimpl` functions in code."""
    default_plugins().register(plugin, name)


def _reset_default_plugins() -> Callable[[], None]:
    """For tests: forget the process-wide plugins; returns a function that restores them."""
    global _default
    saved, _default = _default, None

    def restore() -> None:
        global _default
        _default = saved

    return restore
