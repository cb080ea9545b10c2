"""`[state] backend = "redis"` in the router configuration, and the module's import cost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

import turnout
from turnout._flow import Claim
from turnout._health import BreakerConfig
from turnout.state import RedisStore, RetryBudget

from .conftest import RedisServer
from .tiny import plugins


def config(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "deployments": [{"name": "a", "provider": "tiny", "model": "m", "api_key": "sk-tiny-0123456789"}],
        "state": state,
    }


@pytest.mark.redis
def test_a_router_from_config_keeps_its_state_in_redis(redis_server: RedisServer, prefix: str) -> None:
    router = turnout.Router.from_config(
        config({"backend": "redis", "url": redis_server.url, "prefix": prefix}), plugins=plugins()
    )
    assert isinstance(router.store, RedisStore)
    assert not router.store.cluster
    router.store.claim(Claim(("a",), ("a",), time.time(), BreakerConfig(), RetryBudget(), spend="always"))
    client = redis_server.client()
    assert float(client.get(f"{prefix}budget")) == 9.0  # ten to start with, one spent
    assert json.loads(client.get(f"{prefix}dep:a")) == {"inflight": 1}
    client.close()
    router.close()


def test_a_cluster_is_asked_for_in_the_configuration() -> None:
    router = turnout.Router.from_config(
        config({"backend": "redis", "url": "redis://127.0.0.1:6390/0", "cluster": True}), plugins=plugins()
    )
    assert isinstance(router.store, RedisStore)
    assert router.store.cluster
    assert router.store.key("a") == "{turnout:}dep:a"
    router.close()


def test_the_url_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_TEST_REDIS", "redis://:from-env-pass@127.0.0.1:6390/2")
    router = turnout.Router.from_config(
        config({"backend": "redis", "url": "env:TURNOUT_TEST_REDIS"}), plugins=plugins()
    )
    assert repr(router.store) == "RedisStore('redis://:***@127.0.0.1:6390/2', prefix='turnout:')"
    router.close()


def test_the_default_url_and_prefix() -> None:
    router = turnout.Router.from_config(config({"backend": "redis"}), plugins=plugins())
    assert repr(router.store) == "RedisStore('redis://127.0.0.1:6379/0', prefix='turnout:')"
    router.close()


def test_a_missing_environment_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNOUT_TEST_REDIS", raising=False)
    with pytest.raises(turnout.ConfigError, match=r"state\.url: environment variable TURNOUT_TEST_REDIS"):
        turnout.Router.from_config(
            config({"backend": "redis", "url": "env:TURNOUT_TEST_REDIS"}), plugins=plugins()
        )


def test_a_bad_url_is_a_config_error_that_hides_it() -> None:
    with pytest.raises(turnout.ConfigError) as bad:
        turnout.Router.from_config(
            config({"backend": "redis", "url": "http://:leaky-pass@example.invalid"}), plugins=plugins()
        )
    assert bad.value.path == "state.url"
    assert "leaky-pass" not in str(bad.value)


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(
        turnout.ConfigError, match=r"state\.backend: unknown state backend; known: memory, redis"
    ):
        turnout.Router.from_config(config({"backend": "etcd"}), plugins=plugins())


def test_importing_turnout_state_loads_neither_redis_nor_cattrs() -> None:
    code = (
        "import json, sys, turnout.state; "
        "heavy = ('redis', 'redis.asyncio', 'cattrs', 'httpx'); "
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.redis
def test_a_router_closes_the_store_its_configuration_made_but_not_one_it_was_given(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    monkeypatch.setattr(RedisStore, "close", lambda self: closed.append(self.prefix))
    made = turnout.Router.from_config(
        config({"backend": "redis", "url": redis_server.url, "prefix": prefix}), plugins=plugins()
    )
    made.close()
    assert closed == [prefix]
    given = RedisStore(redis_server.url, prefix=prefix + "given:")
    turnout.Router.from_config(config({}), plugins=plugins(), store=given).close()
    assert closed == [prefix]
