"""Router.from_config: TOML or a mapping; every mistake is a ConfigError naming path and value."""

from __future__ import annotations

import textwrap

import attrs
import pytest

import turnout

from .acme import Acme

GOOD = """
deadline = 120.0
[[deployments]]
name = "a"
provider = "acme"
model = "m-a"
api_key = "env:ACME_KEY_A"
base_url = "https://a.test/v1"
[[deployments]]
name = "b"
provider = "acme"
model = "m-b"
api_key = "literal-key-b"
base_url = "https://b.test/v1"
options = { headers = { x-team = "blue" } }
[deployments.retry]
max_retries = 5
base = 0.25
[routes.chat]
deployments = ["a", "b"]
fallbacks = ["backup"]
[routes]
backup = ["b"]
"""


def load(tmp_path, text, plugins, **kw):
    path = tmp_path / "turnout.toml"
    path.write_text(textwrap.dedent(text))
    return turnout.Router.from_config(path, plugins=plugins, **kw)


def test_a_toml_file_builds_the_router(tmp_path, plugins, monkeypatch):
    monkeypatch.setenv("ACME_KEY_A", "from-the-environment")
    router = load(tmp_path, GOOD, plugins)
    assert router.deadline == 120.0
    assert router.deployments["a"].key() == "from-the-environment"
    assert router.deployments["b"].options["headers"] == {"x-team": "blue"}
    # The table adjusts the provider's documented policy; it does not replace it.
    assert router.policy("b") == attrs.evolve(Acme.retry_policy, max_retries=5, base=0.25)
    assert router.policy("b").cap == Acme.retry_policy.cap == 8.0
    assert router.policy("a") == Acme.retry_policy
    assert router.routes["chat"].deployments == ("a", "b")
    assert router.routes["chat"].fallbacks == ("backup",)
    assert router.routes["backup"].deployments == ("b",)
    assert router.route(None).name == "chat"
    router.close()


def test_a_mapping_works_the_same(plugins):
    config = {
        "deployments": [{"name": "a", "provider": "acme", "model": "m", "base_url": "https://a.test/v1"}],
        "routes": {"chat": {"deployments": ["a"], "strategy": "priority"}},
    }
    router = turnout.AsyncRouter.from_config(config, plugins=plugins)
    assert router.deadline == 600.0
    assert list(router.routes) == ["chat"]


def bad(plugins, config):
    with pytest.raises(turnout.ConfigError) as info:
        turnout.Router.from_config(config, plugins=plugins)
    return info.value


def dep(**kw):
    base = {"name": "a", "provider": "acme", "model": "m", "base_url": "https://a.test/v1"}
    base.update(kw)
    return base


def test_unknown_provider_names_the_path_the_value_and_the_installed(plugins):
    error = bad(plugins, {"deployments": [dep(), dep(name="b"), dep(name="c", provider="meshap")]})
    assert error.path == "deployments[2].provider"
    assert str(error) == "deployments[2].provider: unknown provider (got 'meshap'); installed: acme"


def test_wrong_types_are_errors_not_coercions(plugins):
    error = bad(plugins, {"deployments": [dep(), dep(name="b", weight="2")]})
    assert error.path == "deployments[1].weight"
    assert "'2'" in str(error)
    assert bad(plugins, {"deployments": [dep(model=5)]}).path == "deployments[0].model"
    assert bad(plugins, {"deadline": True, "deployments": [dep()]}).path == "deadline"


def test_missing_fields_and_unknown_keys(plugins):
    assert bad(plugins, {"deployments": [{"name": "a", "provider": "acme"}]}).path == "deployments[0].model"
    error = bad(plugins, {"deployments": [dep(modle="x")]})
    assert error.path == "deployments[0].modle"
    assert "unknown key" in str(error)
    assert bad(plugins, {"deployment": []}).path in ("deployment", "deployments")


def test_route_mistakes_name_their_path(plugins):
    two = [dep(), dep(name="b", base_url="https://b.test/v1")]
    error = bad(plugins, {"deployments": two, "routes": {"chat": ["a", "x"]}})
    assert error.path == "routes.chat.deployments[1]"
    error = bad(
        plugins, {"deployments": two, "routes": {"chat": {"deployments": ["a"], "fallbacks": ["nope"]}}}
    )
    assert error.path == "routes.chat.fallbacks[0]"
    error = bad(
        plugins, {"deployments": two, "routes": {"chat": {"deployments": ["a"], "strategy": "fastest"}}}
    )
    assert error.path == "routes.chat.strategy"


def test_duplicate_names_bad_urls_and_deadline(plugins):
    assert bad(plugins, {"deployments": [dep(), dep()]}).path == "deployments[1].name"
    assert bad(plugins, {"deployments": [dep(base_url="ftp://x")]}).path == "deployments[0].base_url"
    assert bad(plugins, {"deadline": -1, "deployments": [dep()]}).path == "deadline"
    assert bad(plugins, {"deployments": []}).path == "deployments"


def test_unknown_deployment_options_are_rejected(plugins):
    error = bad(plugins, {"deployments": [dep(options={"tem_id": 1})]})
    assert error.path == "deployments[0].options.tem_id"


def test_a_missing_environment_variable_is_named_without_a_value(plugins, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    error = bad(plugins, {"deployments": [dep(api_key="env:NOT_SET_ANYWHERE")]})
    assert error.path == "deployments[0].api_key"
    assert "NOT_SET_ANYWHERE is not set" in str(error)


def test_unreadable_and_invalid_files(tmp_path, plugins):
    with pytest.raises(turnout.ConfigError, match="cannot read"):
        turnout.Router.from_config(tmp_path / "missing.toml", plugins=plugins)
    broken = tmp_path / "broken.toml"
    broken.write_text("deadline = = 3")
    with pytest.raises(turnout.ConfigError, match="invalid TOML"):
        turnout.Router.from_config(broken, plugins=plugins)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(turnout.ConfigError, match="not UTF-8"):
        turnout.Router.from_config(binary, plugins=plugins)


def test_constructing_in_code_reports_the_same_paths(plugins):
    deps = [turnout.Deployment("a", "acme", "m"), turnout.Deployment("b", "nope", "m")]
    with pytest.raises(turnout.ConfigError) as info:
        turnout.Router(deps, plugins=plugins)
    assert info.value.path == "deployments[1].provider"


def test_a_top_level_retry_table_adjusts_every_deployment(plugins):
    config = {
        "retry": {"max_retries": 0},
        "deployments": [
            dep(),
            dep(name="b", base_url="https://b.test/v1", retry={"max_retries": 4, "jitter": "none"}),
        ],
    }
    router = turnout.Router.from_config(config, plugins=plugins)
    assert router.policy("a") == attrs.evolve(Acme.retry_policy, max_retries=0)
    assert router.policy("b") == attrs.evolve(Acme.retry_policy, max_retries=4, jitter="none")


def test_a_bad_retry_value_names_its_path(plugins):
    error = bad(plugins, {"deployments": [dep(retry={"jitter": "sometimes"})]})
    assert error.path == "deployments[0].retry.jitter"
    error = bad(plugins, {"deployments": [dep(retry={"retry_on": ["rate_limited", "typo_kind"]})]})
    assert error.path == "deployments[0].retry"
    assert "'typo_kind' is not a valid ErrorKind" in str(error)
