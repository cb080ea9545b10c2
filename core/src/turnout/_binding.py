"""From what the user configured to what the router can use, checked at construction.

Each deployment is bound to its provider (found through the plugins) and its
effective retry policy; routes are checked against the deployments. Anything
the router could not use raises `ConfigError` naming the path, here, before
any request: an unknown provider, a key with whitespace, control or non-ASCII
characters (it would fail every call, and leak into transport errors), a
`base_url` that does not parse, a number that is not finite or out of range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from attrs import evolve, field, frozen

from ._errors import ConfigError
from ._logmask import hide_in_logs
from ._models import Deployment
from ._ranges import Range
from ._retry import NamedPolicy, PolicyLayer, RetryOverrides, RetryPolicy, layered_policy
from ._routing import DEFAULT_ROUTE, STRATEGIES, Route, route_from

if TYPE_CHECKING:
    from ._plugins import Plugins
    from ._provider import Provider

__all__ = [
    "MAX_URL_LENGTH",
    "Target",
    "bind",
    "check_key",
    "check_positive",
    "check_routes",
    "policy_layer",
]

# A base URL longer than this is a mistake (a pasted document), not an address.
MAX_URL_LENGTH = 2048


@frozen
class Target:
    """A deployment bound to its provider and its effective retry policies."""

    deployment: Deployment
    provider: Provider
    # Its policy on a call that reaches it through a route with no retry_policy...
    policy: RetryPolicy
    # ...and through each route that sets one (by route name).
    route_policies: Mapping[str, RetryPolicy] = field(factory=dict)

    def policy_for(self, route: str | None) -> RetryPolicy:
        return self.policy if route is None else self.route_policies.get(route, self.policy)


def check_positive(value: Any, path: str, *, allow_zero: bool = False, integer: bool = False) -> None:
    """A finite positive number (or zero), else a ConfigError naming `path`."""
    Range(0, above=not allow_zero, integer=integer).check(value, path)


def check_key(key: str | None, path: str) -> None:
    """Visible ASCII only: a trailing newline or a non-ASCII character would fail every
    call, inside the HTTP library, with the key in its message. The key is never shown."""
    if key is None:
        return
    if not key:
        raise ConfigError("is empty", path=path, show_value=False)
    for index, char in enumerate(key):
        if not ("!" <= char <= "~"):
            what = (
                "whitespace" if char.isspace() else "a control character" if char.isascii() else "non-ASCII"
            )
            raise ConfigError(
                f"holds {what} at position {index} (a key is visible ASCII only; "
                "was it read from a file with its newline?)",
                path=path,
                show_value=False,
            )


def check_url(url: str, path: str) -> None:
    """An http(s) URL with a host, a valid port and nothing that cannot be sent."""
    if len(url) > MAX_URL_LENGTH:
        raise ConfigError(f"is {len(url)} characters long (at most {MAX_URL_LENGTH})", path=path)
    if any(not ("!" <= char <= "~") for char in url):
        raise ConfigError("holds whitespace, control or non-ASCII characters", path=path, value=url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"is not a valid URL ({exc})", path=path, value=url) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError("must be an http:// or https:// URL", path=path, value=url)
    if not parts.hostname:
        raise ConfigError("has no host", path=path, value=url)
    if port == 0:
        raise ConfigError("has port 0", path=path, value=url)


def _check_deployment(deployment: Deployment, path: str) -> None:
    for attribute in ("name", "model"):
        value = getattr(deployment, attribute)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("must be a non-empty string", path=f"{path}.{attribute}", value=value)
    check_positive(deployment.weight, f"{path}.weight", allow_zero=True)
    check_positive(deployment.input_cost, f"{path}.input_cost", allow_zero=True)
    check_positive(deployment.output_cost, f"{path}.output_cost", allow_zero=True)


def policy_layer(layer: Any, path: str) -> PolicyLayer:
    """A layer of retry settings, checked; a named one remembers where it was set."""
    if isinstance(layer, str):
        return NamedPolicy(layer, path=path)
    if isinstance(layer, NamedPolicy):
        return layer if layer.path is not None else evolve(layer, path=path)
    if layer is None or isinstance(layer, RetryPolicy | RetryOverrides):
        return layer
    raise ConfigError(
        "must be a turnout.RetryPolicy, RetryOverrides, or the name of a retry policy",
        path=path,
        value=type(layer).__name__,
    )


def bind(
    deployments: Sequence[Deployment],
    plugins: Plugins,
    policy: PolicyLayer = None,
    routes: Mapping[str, Route] | None = None,
) -> dict[str, Target]:
    """Each deployment with its provider and effective retry policies, checked: the
    provider's, then the router's, then the route's (for each route that lists it
    and sets one), then the deployment's (named policies looked up in `plugins`;
    an unknown name is a ConfigError naming the known ones)."""
    router_layer = policy_layer(policy, "retry_policy")
    route_layers = {
        name: (route.deployments, policy_layer(route.retry_policy, f"routes.{name}.retry_policy"))
        for name, route in (routes or {}).items()
        if route.retry_policy is not None
    }
    if not deployments:
        raise ConfigError("at least one deployment is needed", path="deployments")
    targets: dict[str, Target] = {}
    for index, deployment in enumerate(deployments):
        path = f"deployments[{index}]"
        if not isinstance(deployment, Deployment):
            raise ConfigError("must be a turnout.Deployment", path=path, value=type(deployment).__name__)
        if deployment.name in targets:
            raise ConfigError("duplicate deployment name", path=f"{path}.name", value=deployment.name)
        _check_deployment(deployment, path)
        provider = plugins.provider(deployment.provider, path=f"{path}.provider")
        # The provider's own checks first: it explains a missing base URL best.
        provider.check_deployment(deployment, path)
        # An empty key is refused too (`key()` reads it as no key at all).
        key = deployment.api_key.reveal() if deployment.api_key is not None else None
        check_key(key, f"{path}.api_key")
        base = deployment.base_url or provider.default_base_url
        if not base:
            raise ConfigError(
                f"provider {provider.name!r} has no public URL: set one", path=f"{path}.base_url"
            )
        check_url(base, f"{path}.base_url")
        own = policy_layer(deployment.retry_policy, f"{path}.retry_policy")
        effective = layered_policy(provider.retry_policy, (router_layer, own), plugins.named_policy)
        by_route = {
            name: layered_policy(provider.retry_policy, (router_layer, layer, own), plugins.named_policy)
            for name, (listed, layer) in route_layers.items()
            if deployment.name in listed
        }
        target = targets[deployment.name] = Target(deployment, provider, effective, by_route)
        hide_in_logs(key, target)
    # A route's named policy is checked even when every deployment overrides it.
    for _, layer in route_layers.values():
        layered_policy(RetryPolicy(), (layer,), plugins.named_policy)
    return targets


def check_routes(routes: Mapping[str, Any] | None, deployments: Sequence[str]) -> dict[str, Route]:
    """The routes, each naming known deployments, strategies and routes."""
    if not routes:
        return {DEFAULT_ROUTE: Route(DEFAULT_ROUTE, tuple(deployments))}
    known = set(deployments)
    checked: dict[str, Route] = {}
    for name, spec in routes.items():
        path = f"routes.{name}"
        route = route_from(name, spec)
        if not route.deployments:
            raise ConfigError("a route needs at least one deployment", path=f"{path}.deployments")
        for i, dep in enumerate(route.deployments):
            if dep not in known:
                raise ConfigError("unknown deployment", path=f"{path}.deployments[{i}]", value=dep)
        if route.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy; known: {', '.join(sorted(STRATEGIES))}",
                path=f"{path}.strategy",
                value=route.strategy,
            )
        if route.hedge_after is not None:
            check_positive(route.hedge_after, f"{path}.hedge_after")
        checked[name] = route
    for name, route in checked.items():
        for attr in ("fallbacks", "content_policy_fallbacks", "context_window_fallbacks"):
            for i, other in enumerate(getattr(route, attr)):
                if other not in checked:
                    raise ConfigError("unknown route", path=f"routes.{name}.{attr}[{i}]", value=other)
    return checked
