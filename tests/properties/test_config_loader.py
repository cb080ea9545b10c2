"""The configuration loader on any mapping: a `ConfigError` naming a path, or a router;
never another exception.

Random mappings almost never get past the first missing key, so most examples
start from a configuration that builds and change one to three things in it:
any JSON value (NaN and infinities included) at a known path, a key removed,
or an unknown key added.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import turnout
from turnout._config import load_config

from .strategies import JSON, PROVIDERS, SETTINGS

PLUGINS = turnout.Plugins(entry_points=False)
PLUGINS.add_provider(PROVIDERS["acme"])

BASE: dict[str, Any] = {
    "deadline": 5.0,
    "deployments": [
        {"name": "a", "provider": "acme", "model": "m", "api_key": "sk-acme-a-0123456789"},
        {"name": "b", "provider": "acme", "model": "m", "base_url": "https://b.test/v1"},
    ],
    "routes": {"main": {"deployments": ["a", "b"], "fallbacks": []}},
}
FIELDS = {
    "": ["deadline", "timeout", "max_retry_wait", "max_body", "max_event", "max_stream", "wait_for_healthy",
         "deployments", "routes", "retry", "breaker", "budget", "state"],
    "deployments.0": ["name", "provider", "model", "api_key", "base_url", "weight", "options", "retry",
                      "input_cost", "output_cost"],
    "routes.main": ["deployments", "strategy", "fallbacks", "content_policy_fallbacks",
                    "context_window_fallbacks", "hedge_after"],
    "breaker": ["consecutive_failures", "failure_rate", "window", "min_calls", "open_for", "max_open",
                "jitter", "probes", "probe_timeout", "ewma_alpha"],
    "budget": ["ratio", "burst"],
    "retry": ["max_retries", "base", "cap", "multiplier", "jitter", "jitter_ratio", "retry_on",
              "retry_statuses", "retry_streams", "retry_statusless"],
    "deployments.0.retry": ["max_retries", "base", "cap", "jitter_ratio", "retry_on"],
    "state": ["backend", "url", "prefix"],
}  # fmt: skip
VALUES = st.one_of(
    JSON,
    st.sampled_from([0, -1, 1, 2, 0.0, -0.5, 0.5, 1.5, math.nan, math.inf, -math.inf, 10**30, True, ""]),
    st.sampled_from(["priority", "weighted", "full", "memory", "redis", "env:TURNOUT_NO_SUCH_VAR"]),
    st.sampled_from(["sk-x\n", "sk-ключ-0123", "http://[::1", "http://h:99999/", "ftp://h/", " "]),
    st.lists(st.sampled_from(["a", "b", "main", "nope", "rate_limited", "429"]), max_size=3),
)
EDITS = st.tuples(
    st.sampled_from(["set", "set", "set", "remove", "unknown"]),
    st.sampled_from(sorted(FIELDS)),
    st.integers(0, 100),
    VALUES,
)


def _node(config: dict[str, Any], where: str) -> Any:
    node: Any = config
    for step in [s for s in where.split(".") if s]:
        if isinstance(node, list):
            node = node[int(step)] if step.isdigit() and int(step) < len(node) else None
        elif isinstance(node, dict):
            node = node.setdefault(step, {})
        if not isinstance(node, dict | list):
            return None
    return node


def edited(edits: list[tuple[str, str, int, Any]]) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    for action, where, pick, value in edits:
        node = _node(config, where)
        if not isinstance(node, dict):
            continue
        name = FIELDS[where][pick % len(FIELDS[where])]
        if action == "set":
            node[name] = value
        elif action == "remove":
            node.pop(name, None)
        else:
            node[f"{name}_typo"] = value
    return config


def load(config: Any) -> None:
    """Build a router from `config`: a ConfigError naming a path is the only failure."""
    refusal = ""
    try:
        turnout.Router.from_config(config, plugins=PLUGINS).close()
    except turnout.ConfigError as error:
        refusal = str(error) or "(empty)"
    assert refusal != "(empty)"
    assert "\n" not in refusal
    assert "sk-acme-a-0123456789" not in refusal


def test_the_base_configuration_builds() -> None:
    load_config(BASE)
    turnout.Router.from_config(BASE, plugins=PLUGINS).close()


@SETTINGS
@given(edits=st.lists(EDITS, min_size=1, max_size=3))
def test_a_configuration_with_mistakes_is_a_router_or_a_config_error(edits: list[Any]) -> None:
    load(edited(edits))


@SETTINGS
@given(config=st.dictionaries(st.sampled_from([*FIELDS[""], "x"]), VALUES, max_size=6))
def test_any_mapping_is_a_router_or_a_config_error(config: dict[str, Any]) -> None:
    load(config)
