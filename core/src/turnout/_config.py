"""Router configuration: TOML (or the same mapping) structured by cattrs.

Mistakes become one `ConfigError` naming the path (`deployments[2].weight`)
and the bad value. Scalars are checked strictly: `weight = "2"` is an error,
not silently 2.0, and unknown keys are typos, not ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import cattrs
from attrs import field, frozen

from ._checks import Check
from ._errors import ConfigError
from ._health import BreakerConfig
from ._limits import DEFAULT_MAX_BODY, DEFAULT_MAX_EVENT, DEFAULT_MAX_STREAM
from ._models import Deployment, Secret
from ._retry import NamedPolicy, PolicyLayer, RetryOverrides
from ._routing import Route
from ._state import RetryBudget, StateStore
from ._structure import make_converter, structure

__all__ = ["RouterConfig", "ServerConfig", "load_config", "resolve_secret"]

ENV_PREFIX = "env:"


@frozen
class DeploymentConfig:
    name: str
    provider: str
    model: str
    api_key: str | None = None
    base_url: str | None = None
    weight: float = 1.0
    options: dict[str, Any] = field(factory=dict)
    retry: RetryOverrides | None = None
    retry_policy: str | None = None
    input_cost: float = 0.0
    output_cost: float = 0.0


@frozen
class RouteConfig:
    deployments: list[str]
    strategy: str = "priority"
    fallbacks: list[str] = field(factory=list)
    content_policy_fallbacks: list[str] = field(factory=list)
    context_window_fallbacks: list[str] = field(factory=list)
    hedge_after: float | None = None
    retry_policy: str | None = None


@frozen
class StateConfig:
    backend: str = "memory"
    url: str | None = None
    prefix: str = "turnout:"
    # The URL names a node of a Redis Cluster.
    cluster: bool = False


@frozen
class ServerConfig:
    """`[server]`: read by `turnout serve` only; a router built from the same file
    ignores it. `api_keys` may be `env:NAME` (see `resolve_secret`)."""

    api_keys: list[str] = field(factory=list)
    # Bytes of one request body; a larger one is refused (413) before it is parsed.
    max_body: Annotated[int, Check(lambda n: n > 0, "must be a positive number of bytes")] = 4 * 1024 * 1024
    # Seconds in-flight calls have to finish once the server is told to stop.
    grace_period: Annotated[float, Check(lambda s: s >= 0, "must be zero or more seconds")] = 30.0


@frozen
class RouterConfig:
    deployments: list[DeploymentConfig]
    deadline: float = 600.0
    timeout: float = 60.0
    max_retry_wait: float = 30.0
    max_body: int = DEFAULT_MAX_BODY
    max_event: int = DEFAULT_MAX_EVENT
    max_stream: int = DEFAULT_MAX_STREAM
    routes: dict[str, RouteConfig] = field(factory=dict)
    retry: RetryOverrides | None = None
    retry_policy: str | None = None
    breaker: BreakerConfig | None = None
    budget: RetryBudget | None = None
    wait_for_healthy: bool = True
    state: StateConfig | None = None
    server: ServerConfig | None = None

    def router_kwargs(self) -> dict[str, Any]:
        self._check_route_policies()
        deployments = [
            Deployment(
                name=d.name,
                provider=d.provider,
                model=d.model,
                api_key=_resolve_key(d.api_key, f"deployments[{i}].api_key"),
                base_url=d.base_url,
                weight=d.weight,
                options=d.options,
                retry_policy=_named(d.retry_policy, d.retry, f"deployments[{i}].retry_policy"),
                input_cost=d.input_cost,
                output_cost=d.output_cost,
            )
            for i, d in enumerate(self.deployments)
        ]
        routes = {
            name: Route(
                name,
                tuple(r.deployments),
                r.strategy,
                tuple(r.fallbacks),
                tuple(r.content_policy_fallbacks),
                tuple(r.context_window_fallbacks),
                r.hedge_after,
                _named(r.retry_policy, None, f"routes.{name}.retry_policy"),
            )
            for name, r in self.routes.items()
        }
        return {
            "deployments": deployments,
            "routes": routes or None,
            "deadline": self.deadline,
            "timeout": self.timeout,
            "max_retry_wait": self.max_retry_wait,
            "max_body": self.max_body,
            "max_event": self.max_event,
            "max_stream": self.max_stream,
            "retry_policy": _named(self.retry_policy, self.retry, "retry_policy"),
            "breaker": self.breaker,
            "budget": self.budget,
            "wait_for_healthy": self.wait_for_healthy,
            "store": _store(self.state),
        }

    def _check_route_policies(self) -> None:
        """A route's retry_policy that no deployment would use is a mistake (its name
        would not even be checked): each of its deployments names its own."""
        own = {d.name for d in self.deployments if d.retry_policy is not None}
        for name, route in self.routes.items():
            if route.retry_policy is not None and route.deployments and set(route.deployments) <= own:
                raise ConfigError(
                    "applies to no deployment: each deployment of this route sets its own retry_policy",
                    path=f"routes.{name}.retry_policy",
                    value=route.retry_policy,
                )


def _named(name: str | None, overrides: RetryOverrides | None, path: str) -> PolicyLayer:
    """`retry_policy = name` with the same level's `[retry]` table applied to it."""
    if name is None:
        return overrides
    return NamedPolicy(name, overrides, path=path)


STATE_BACKENDS = ("memory", "redis")


def _store(state: StateConfig | None) -> StateStore | None:
    if state is None or state.backend == "memory":
        return None
    if state.backend == "redis":
        # The URL may carry a password: like an api key it may come from the
        # environment, and it is never shown in an error.
        url = _resolve_key(state.url, "state.url")
        try:
            from ._redis_store import DEFAULT_URL, RedisStore

            return RedisStore(
                url.reveal() if url is not None else DEFAULT_URL, prefix=state.prefix, cluster=state.cluster
            )
        except ImportError:
            raise ConfigError(
                "the redis backend needs the redis package: pip install 'turnout[redis]'",
                path="state.backend",
            ) from None
        except ValueError as exc:
            raise ConfigError(str(exc), path="state.url", show_value=False) from None
    raise ConfigError(
        f"unknown state backend; known: {', '.join(STATE_BACKENDS)}",
        path="state.backend",
        value=state.backend,
    )


def resolve_secret(value: str, path: str) -> Secret:
    """A secret from the configuration: `env:NAME` reads the environment; a ConfigError
    naming `path` (never the value) when the variable is not set."""
    found = _resolve_key(value, path)
    assert found is not None
    return found


def _resolve_key(value: str | None, path: str) -> Secret | None:
    if value is None:
        return None
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        found = os.environ.get(name)
        if not found:
            raise ConfigError(f"environment variable {name} is not set", path=path, show_value=False)
        return Secret(found)
    return Secret(value)


def _make_converter() -> cattrs.Converter:
    converter = make_converter()

    def route(value: Any, _: Any) -> RouteConfig:
        # `routes = { chat = ["a", "b"] }` is shorthand for a table with `deployments`.
        if isinstance(value, list):
            value = {"deployments": value}
        if not isinstance(value, Mapping):
            raise TypeError("expected a list of deployment names or a table")
        return converter.structure_attrs_fromdict(value, RouteConfig)

    converter.register_structure_hook(RouteConfig, route)
    return converter


_converter: cattrs.Converter | None = None


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> RouterConfig:
    global _converter
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration file: {exc.strerror}", path=str(path)) from None
        except UnicodeDecodeError:
            raise ConfigError("the configuration file is not UTF-8", path=str(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from None
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a table", value=type(data).__name__)
    if _converter is None:
        _converter = _make_converter()
    return structure(_converter, data, RouterConfig)
