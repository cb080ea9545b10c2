"""A typed facade over pluggy's PluginManager: the core never calls `pm.hook.*` elsewhere.

What plugins contribute (providers, normalizers, named retry policies,
emulators, observers) is collected one plugin at a time, so every
contribution is attributed to its distribution; `turnout._claims` decides
which one is in force when several claim a name.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy
from attrs import frozen

from . import hookspecs
from ._claims import Claim, Origin, resolve
from ._errors import ConfigError, ProviderError, TurnoutError

if TYPE_CHECKING:
    from ._normalize import ErrorNormalizer
    from ._provider import Provider
    from ._retry import PolicyLayer, RetryPolicy
    from .emulation import Emulator

__all__ = [
    "DISABLE_ENV",
    "Plugins",
    "ProviderInfo",
    "RetryPolicyInfo",
    "default_plugins",
    "effective_policy",
    "normalize_error",
    "providers",
    "register_normalizer",
    "register_plugin",
    "register_provider",
    "register_retry_policy",
    "retry_policies",
]

ENTRY_POINT_GROUP = "turnout"
# Comma-separated plugin (entry-point) names that are never loaded.
DISABLE_ENV = "TURNOUT_DISABLE_PLUGINS"

log = logging.getLogger("turnout.plugins")


@frozen
class ProviderInfo:
    """An installed provider and where it comes from.

    `distribution` and `version` are None for a provider registered in code.
    `normalizer` names who replaced the provider's own normalizer (a
    distribution, or "code"), None when its own is in force. `replaces` names
    the installed distribution whose provider of the same name a registration
    in code replaces.
    """

    name: str
    distribution: str | None
    version: str | None
    module: str
    normalizer: str | None = None
    replaces: str | None = None


@frozen
class RetryPolicyInfo:
    """A named retry policy and where it comes from (`distribution` None: in code)."""

    name: str
    policy: RetryPolicy
    distribution: str | None
    version: str | None
    replaces: str | None = None


@frozen
class _Loaded:
    providers: Mapping[str, tuple[Provider, ProviderInfo]]
    policies: Mapping[str, RetryPolicyInfo]


class Plugins:
    """The plugins one router sees: those installed, minus the blocked, plus code-registered."""

    def __init__(self, *, entry_points: bool = True, blocked: Iterable[str] = ()) -> None:
        self._pm = pluggy.PluginManager("turnout")
        self._pm.add_hookspecs(hookspecs)
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for name in {*blocked, *disabled}:
            self._pm.set_blocked(name)
        # Each installed plugin's distribution and version, from its entry point.
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        if entry_points:
            self._load_entry_points()
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._emulators: dict[str, Emulator] | None = None
        self._observers: list[object] | None = None
        # What was registered in code one by one (not through a plugin), by hook.
        self._code: dict[str, list[tuple[Any, ...]]] = {}

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

    # -- registering in code ---------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin module or object holding `@hookimpl` functions (it counts
        as registered in code: it wins over installed plugins)."""
        with self._lock:
            self._pm.register(plugin, name)
            self._loaded = self._emulators = self._observers = None

    def _add(self, hook: str, *args: Any) -> None:
        with self._lock:
            self._code.setdefault(hook, []).append(args)
            self._loaded = self._emulators = None

    def add_provider(self, provider: Provider) -> None:
        """Register one provider in code (a user's own adapter); it replaces an
        installed one of the same name, and `infos()` says so."""
        self._add("turnout_register_providers", provider)

    def add_normalizer(self, provider_name: str, normalizer: ErrorNormalizer) -> None:
        """Read the errors of provider `provider_name` with `normalizer`, in code."""
        self._add("turnout_register_normalizers", provider_name, normalizer)

    def add_retry_policy(self, name: str, policy: RetryPolicy) -> None:
        """A named retry policy, in code: configuration may then say `retry_policy = name`."""
        self._add("turnout_register_retry_policies", name, policy)

    # -- collecting -------------------------------------------------------------------

    def _origin(self, plugin_name: str) -> Origin:
        if plugin_name in self._dists:
            distribution, version = self._dists[plugin_name]
            return Origin(plugin_name, distribution, version, installed=True)
        return Origin(plugin_name)

    def _collect(self, hook_name: str, kind: str) -> list[tuple[tuple[Any, ...], Origin]]:
        """Call every implementation of a registration hook on its own, so each
        contribution is attributed to its plugin (and a broken plugin is named);
        then what was registered in code one by one."""
        found: list[tuple[tuple[Any, ...], Origin]] = []
        hook = getattr(self._pm.hook, hook_name)
        # In the order they were registered (pluggy calls them the other way round).
        plugins = [impl.plugin for impl in hook.get_hookimpls()]
        for plugin in plugins:
            plugin_name = self._pm.get_name(plugin) or repr(plugin)
            # This plugin's implementation alone, called through pluggy.
            caller = self._pm.subset_hook_caller(
                hook_name, remove_plugins=[p for p in plugins if p is not plugin]
            )
            items: list[tuple[Any, ...]] = []
            try:
                caller(register=_register_for(hook_name, items))
            except Exception as exc:
                raise TurnoutError(f"plugin {plugin_name!r} failed to register its {kind}: {exc}") from exc
            origin = self._origin(plugin_name)
            found.extend((item, origin) for item in items)
        found.extend((item, Origin("code")) for item in self._code.get(hook_name, ()))
        return found

    def _load(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = _Loaded(self._load_providers(), self._load_policies())
        return self._loaded

    def _load_providers(self) -> dict[str, tuple[Provider, ProviderInfo]]:
        from ._provider import Provider

        claims = []
        for (provider,), origin in self._collect("turnout_register_providers", "providers"):
            if not isinstance(provider, Provider):
                raise ConfigError(f"{origin.describe()} registered {provider!r}, not a turnout.Provider")
            claims.append(Claim(provider.name, provider, origin))
        chosen = resolve(claims, "provider")
        normalizers = []
        for (name, normalizer), origin in self._collect("turnout_register_normalizers", "normalizers"):
            if not isinstance(name, str) or not callable(getattr(normalizer, "normalize", None)):
                raise ConfigError(
                    f"{origin.describe()} registered a normalizer as ({name!r}, {normalizer!r}): "
                    "expected a provider name and an object with normalize(*, status, headers, body)"
                )
            normalizers.append(Claim(name, normalizer, origin))
        replaced = resolve(normalizers, "normalizer for provider")
        result: dict[str, tuple[Provider, ProviderInfo]] = {}
        for name, claim in chosen.items():
            provider, origin = claim.value, claim.origin
            normalizer = replaced.get(name)
            # A provider registered in code is used as it is: only a normalizer
            # registered in code applies to it.
            if normalizer is not None and (origin.installed or not normalizer.origin.installed):
                provider = _with_normalizer(provider, normalizer.value, normalizer.origin.label)
            else:
                normalizer = None
            info = ProviderInfo(
                name=name,
                distribution=origin.distribution if origin.installed else None,
                version=origin.version if origin.installed else None,
                module=type(claim.value).__module__,
                normalizer=normalizer.origin.label if normalizer is not None else None,
                replaces=claim.replaces.label if claim.replaces is not None else None,
            )
            result[name] = (provider, info)
        for name, claim in replaced.items():
            if name not in chosen:
                raise ConfigError(
                    f"{claim.origin.describe()} registered a normalizer for provider {name!r}, "
                    "which is not installed",
                    choices=sorted(chosen),
                )
        return result

    def _load_policies(self) -> dict[str, RetryPolicyInfo]:
        from ._retry import RetryPolicy

        claims = []
        for (name, policy), origin in self._collect("turnout_register_retry_policies", "retry policies"):
            if not isinstance(name, str) or not name or not isinstance(policy, RetryPolicy):
                raise ConfigError(
                    f"{origin.describe()} registered a retry policy as ({name!r}, {policy!r}): "
                    "expected a name and a turnout.RetryPolicy"
                )
            claims.append(Claim(name, policy, origin))
        return {
            name: RetryPolicyInfo(
                name,
                claim.value,
                claim.origin.distribution if claim.origin.installed else None,
                claim.origin.version if claim.origin.installed else None,
                claim.replaces.label if claim.replaces is not None else None,
            )
            for name, claim in sorted(resolve(claims, "retry policy").items())
        }

    # -- what routers and users read ---------------------------------------------------

    def providers(self) -> Mapping[str, Provider]:
        with self._lock:
            return {name: entry[0] for name, entry in self._load().providers.items()}

    def infos(self) -> dict[str, ProviderInfo]:
        with self._lock:
            return {name: entry[1] for name, entry in sorted(self._load().providers.items())}

    def provider(self, name: str, *, path: str | None = None) -> Provider:
        """The provider called `name`, or a ConfigError listing the installed ones."""
        with self._lock:
            loaded = self._load().providers
        entry = loaded.get(name)
        if entry is None:
            raise ConfigError("unknown provider", path=path, value=name, choices=sorted(loaded))
        return entry[0]

    def retry_policies(self) -> dict[str, RetryPolicyInfo]:
        """The named retry policies, each with the distribution that supplied it."""
        with self._lock:
            return dict(self._load().policies)

    def retry_policy(self, name: str, *, path: str | None = None) -> RetryPolicy:
        """The retry policy registered as `name`, or a ConfigError naming the known ones."""
        with self._lock:
            policies = self._load().policies
        info = policies.get(name) if isinstance(name, str) else None
        if info is None:
            raise ConfigError(
                "unknown retry policy", path=path, value=name, choices=sorted(policies), choices_are="known"
            )
        return info.policy

    def named_policy(self, name: str, path: str) -> RetryPolicy:
        """`retry_policy(name, path=path)`, as `layered_policy` looks names up."""
        return self.retry_policy(name, path=path)

    def emulators(self) -> Mapping[str, Emulator]:
        with self._lock:
            if self._emulators is None:
                found = self._collect("turnout_register_emulators", "emulators")
                claims = [Claim(emulator.provider, emulator, origin) for (emulator,), origin in found]
                self._emulators = {name: c.value for name, c in resolve(claims, "emulator for").items()}
            return dict(self._emulators)

    def observers(self) -> list[object]:
        """What plugins registered through `turnout_register_observers`, in order (the
        same objects on every call: a router's observers are made once)."""
        with self._lock:
            if self._observers is None:
                found = self._collect("turnout_register_observers", "observers")
                self._observers = [observer for (observer,), _ in found]
            return list(self._observers)

    def check_pending(self) -> None:
        """Fail on hook implementations that match no specification (a typo in a plugin)."""
        self._pm.check_pending()


def _register_for(hook_name: str, items: list[tuple[Any, ...]]) -> Callable[..., None]:
    """The `register` callback a hook receives, with the hook's own arguments (so a
    plugin calling it wrongly fails in its own code, with Python's message)."""
    if hook_name in ("turnout_register_normalizers", "turnout_register_retry_policies"):

        def register_named(name: Any, value: Any) -> None:
            items.append((name, value))

        return register_named

    def register(value: Any) -> None:
        items.append((value,))

    return register


class _Guarded:
    """A plugin's normalizer in front of a provider: its error, attributed to the
    provider; if it raises or returns something else, the provider's own reading
    (a gateway's error never becomes a crash), and a warning naming the plugin."""

    def __init__(self, provider: Provider, normalizer: ErrorNormalizer, source: str) -> None:
        self.provider = provider
        self.normalizer = normalizer
        self.source = source

    def __call__(
        self, *, status: int | None, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> ProviderError:
        try:
            error: object = self.normalizer.normalize(status=status, headers=headers, body=body)
        except Exception as exc:  # the plugin's bug must not become the caller's crash
            problem = f"raised {type(exc).__name__}"
        else:
            if isinstance(error, ProviderError):
                error.provider = self.provider.name
                return error
            problem = f"returned {type(error).__name__}, not a ProviderError"
        log.warning(
            "the normalizer from %s for provider %r %s; the provider's own was used",
            self.source,
            self.provider.name,
            problem,
        )
        return self.provider.normalize(status=status, headers=headers, body=body)


def _with_normalizer(provider: Provider, normalizer: ErrorNormalizer, source: str) -> Provider:
    """A copy of `provider` whose errors `normalizer` reads: every path that reads an
    error (`error_from`, stream frames, `normalize_error`) calls `self.normalize`."""
    clone = copy.copy(provider)
    try:
        vars(clone)["normalize"] = _Guarded(provider, normalizer, source)
    except TypeError:
        raise ConfigError(
            f"the normalizer from {source} cannot be put in front of provider {provider.name!r}: "
            f"{type(provider).__name__} has __slots__"
        ) from None
    return clone


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


def retry_policies() -> dict[str, RetryPolicyInfo]:
    """The named retry policies: `{"patient": RetryPolicyInfo(...), ...}`."""
    return default_plugins().retry_policies()


def effective_policy(base: RetryPolicy, *layers: PolicyLayer, plugins: Plugins | None = None) -> RetryPolicy:
    """The provider's policy, then the router's, then the deployment's: a policy
    (given, or named and looked up in `plugins`, by default the process's)
    replaces what came before, overrides change only the fields they name."""
    from ._retry import layered_policy

    return layered_policy(base, layers, (plugins or default_plugins()).named_policy)


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
    """Make a provider (a user's own adapter) available to every router in this process.
    It wins over an installed provider of the same name (`providers()` says so)."""
    default_plugins().add_provider(provider)


def register_normalizer(provider_name: str, normalizer: ErrorNormalizer) -> None:
    """Read the errors of provider `provider_name` with `normalizer`, in every router."""
    default_plugins().add_normalizer(provider_name, normalizer)


def register_retry_policy(name: str, policy: RetryPolicy) -> None:
    """A named retry policy for every router's configuration (`retry_policy = name`)."""
    default_plugins().add_retry_policy(name, policy)


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
