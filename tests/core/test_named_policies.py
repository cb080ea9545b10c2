"""Named retry policies in configuration: router, route and deployment level, the most
specific winning, `[retry]` tables on top, and every mistake a ConfigError with its path."""

from __future__ import annotations

import attrs
import pytest

import turnout
from turnout import Plugins, RetryPolicy

from .acme import Acme

PATIENT = RetryPolicy(max_retries=6, base=1.0, cap=60.0)
EAGER = RetryPolicy(max_retries=1, base=0.01, cap=0.1, jitter="none")


@pytest.fixture
def named(plugins: Plugins) -> Plugins:
    plugins.add_retry_policy("patient", PATIENT)
    plugins.add_retry_policy("eager", EAGER)
    return plugins


def dep(name: str, **kw: object) -> dict[str, object]:
    return {"name": name, "provider": "acme", "model": "m", "base_url": f"https://{name}.test/v1", **kw}


def router(plugins: Plugins, config: dict[str, object]) -> turnout.Router:
    return turnout.Router.from_config(config, plugins=plugins)


def test_the_router_level_replaces_every_providers_default(named: Plugins) -> None:
    r = router(named, {"retry_policy": "patient", "deployments": [dep("a"), dep("b")]})
    assert r.policy("a") == r.policy("b") == PATIENT


def test_the_most_specific_level_wins(named: Plugins) -> None:
    r = router(
        named,
        {
            "retry_policy": "patient",
            "deployments": [dep("a"), dep("b"), dep("c", retry_policy="patient"), dep("d")],
            "routes": {"fast": {"deployments": ["b", "c"], "retry_policy": "eager"}, "rest": ["a", "d"]},
        },
    )
    assert r.policy("a") == r.policy("d") == PATIENT  # the router's
    assert r.policy("b", "fast") == EAGER  # its route's, over the router's
    assert r.policy("c", "fast") == PATIENT  # its own, over its route's
    assert r.policy("b") == PATIENT  # through no route that sets one: the router's


def test_a_retry_table_changes_fields_of_the_named_policy_at_its_level(named: Plugins) -> None:
    r = router(
        named,
        {
            "retry_policy": "patient",
            "retry": {"max_retries": 2},
            "deployments": [
                dep("a"),
                dep("b", retry={"cap": 5.0}),
                dep("c", retry_policy="eager", retry={"base": 0.5}),
            ],
        },
    )
    assert r.policy("a") == attrs.evolve(PATIENT, max_retries=2)
    # A deployment's [retry] adjusts what it inherits.
    assert r.policy("b") == attrs.evolve(PATIENT, max_retries=2, cap=5.0)
    # A deployment's own name replaces the router's policy and its table.
    assert r.policy("c") == attrs.evolve(EAGER, base=0.5)


def test_without_a_name_the_providers_default_stays(named: Plugins) -> None:
    assert router(named, {"deployments": [dep("a")]}).policy("a") == Acme.retry_policy


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"retry_policy": "patiant", "deployments": [dep("a")]}, "retry_policy"),
        ({"deployments": [dep("a"), dep("b", retry_policy="patiant")]}, "deployments[1].retry_policy"),
        (
            {
                "deployments": [dep("a")],
                "routes": {"chat": {"deployments": ["a"], "retry_policy": "patiant"}},
            },
            "routes.chat.retry_policy",
        ),
    ],
)
def test_an_unknown_name_names_the_path_and_the_known_names(named: Plugins, config, path: str) -> None:
    with pytest.raises(turnout.ConfigError) as info:
        router(named, config)
    assert info.value.path == path
    assert str(info.value) == f"{path}: unknown retry policy (got 'patiant'); known: eager, patient"


def test_a_name_that_is_not_a_string_is_a_type_error_with_its_path(named: Plugins) -> None:
    with pytest.raises(turnout.ConfigError) as info:
        router(named, {"deployments": [dep("a", retry_policy=3)]})
    assert info.value.path == "deployments[0].retry_policy"


def test_a_deployment_in_two_routes_has_each_routes_policy(named: Plugins) -> None:
    config = {
        "deployments": [dep("a"), dep("b")],
        "routes": {"chat": {"deployments": ["a", "b"], "retry_policy": "eager"}, "batch": ["b"]},
    }
    r = router(named, config)
    assert r.policy("b", "chat") == EAGER
    assert r.policy("b", "batch") == r.policy("b") == Acme.retry_policy
    # Its own retry_policy wins in every route.
    config["deployments"] = [dep("a"), dep("b", retry_policy="patient")]
    r = router(named, config)
    assert (r.policy("a", "chat"), r.policy("b", "chat"), r.policy("b", "batch")) == (EAGER, PATIENT, PATIENT)


def test_a_route_policy_no_deployment_uses_is_refused(named: Plugins) -> None:
    config = {
        "deployments": [dep("a", retry_policy="patient")],
        "routes": {"chat": {"deployments": ["a"], "retry_policy": "typo"}},
    }
    with pytest.raises(turnout.ConfigError, match="applies to no deployment") as info:
        router(named, config)
    assert info.value.path == "routes.chat.retry_policy"


def test_in_code_a_deployment_or_a_router_names_one(named: Plugins) -> None:
    deployments = [
        turnout.Deployment("a", "acme", "m", base_url="https://a.test/v1", retry_policy="eager"),
        turnout.Deployment("b", "acme", "m", base_url="https://b.test/v1"),
    ]
    r = turnout.Router(
        deployments,
        plugins=named,
        retry_policy=turnout.NamedPolicy("patient", turnout.RetryOverrides(max_retries=3)),  # type: ignore[arg-type]
    )
    assert r.policy("a") == EAGER
    assert r.policy("b") == attrs.evolve(PATIENT, max_retries=3)
    with pytest.raises(turnout.ConfigError) as info:
        turnout.Router(deployments, plugins=named, retry_policy={"max_retries": 3})  # type: ignore[arg-type]
    assert info.value.path == "retry_policy"


def test_effective_policy_looks_names_up_in_the_process(default_acme: None) -> None:
    turnout.register_retry_policy("patient", PATIENT)
    assert turnout.effective_policy(Acme.retry_policy, "patient") == PATIENT
    with pytest.raises(turnout.ConfigError, match="known: patient"):
        turnout.effective_policy(Acme.retry_policy, turnout.NamedPolicy("other"))


def test_in_code_a_route_names_one(named: Plugins) -> None:
    deployments = [turnout.Deployment(n, "acme", "m", base_url=f"https://{n}.test/v1") for n in "ab"]
    routes = {"chat": turnout.Route("chat", ("a", "b"), retry_policy="eager"), "other": ["b"]}
    r = turnout.Router(deployments, routes, plugins=named)
    assert r.policy("a", "chat") == r.policy("b", "chat") == EAGER
    assert r.policy("b", "other") == Acme.retry_policy
    with pytest.raises(turnout.ConfigError) as info:
        turnout.Router(
            deployments, {"chat": turnout.Route("chat", ("a",), retry_policy="typo")}, plugins=named
        )
    assert info.value.path == "routes.chat.retry_policy"
