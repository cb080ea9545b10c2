from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import turnout
from turnout import Plugins
from turnout._binding import bind, check_routes
from turnout._call import RouterCore
from turnout._plugins import _reset_default_plugins

from .acme import Acme, AcmeEmulator
from .calls import Calls
from .distributions import install  # noqa: F401  (a fixture: real installed distributions)
from .scripted import FakeClock


@pytest.fixture
def plugins() -> Plugins:
    """Plugins with only the acme provider: the core is tested without any installed plugin."""
    found = Plugins(entry_points=False)
    found.add_provider(Acme())
    return found


@pytest.fixture
def default_acme() -> Iterator[None]:
    """The process-wide plugins, replaced by a fresh set holding acme, restored afterwards."""
    restore = _reset_default_plugins()
    turnout.register_provider(Acme())
    yield
    restore()


@pytest.fixture(params=["sync", "async"])
def calls(request: pytest.FixtureRequest, plugins: Plugins) -> Calls:
    """Whole calls through `turnout.Router` or `turnout.AsyncRouter`: every test that uses it
    runs with both, and they must make the same decisions."""
    return Calls(request.param, plugins)


@pytest.fixture
def emulator() -> AcmeEmulator:
    return AcmeEmulator()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


FAST = turnout.RetryPolicy(max_retries=2, base=0.001, cap=0.001, jitter="none")


def deployment(name: str, **kw: Any) -> turnout.Deployment:
    """An acme deployment on its own host, `<name>.test`, with its own key."""
    kw.setdefault("api_key", f"sk-acme-{name}-0123456789")
    kw.setdefault("base_url", f"https://{name}.test/v1")
    return turnout.Deployment(name, "acme", f"model-{name}", **kw)


@pytest.fixture
def make_core(plugins: Plugins, clock: FakeClock) -> Callable[..., RouterCore]:
    """The router's decisions, bound to acme deployments, on the fake clock (no transport)."""

    def make(deployments: list[turnout.Deployment], routes: Any = None, **kw: Any) -> RouterCore:
        kw.setdefault("rng", random.Random(7))
        kw.setdefault("wall_clock", clock)
        policy = kw.pop("retry_policy", None)
        checked = check_routes(routes, [d.name for d in deployments])
        return RouterCore(bind(deployments, plugins, policy, checked), checked, clock=clock, **kw)

    return make
