"""Packaging, discovery and configuration checks."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import turnout
import turnout_modelroute
from turnout_modelroute.emulator import ModelRouteEmulator
from turnout_modelroute.provider import KEY_LENGTH, ModelRoute, fake_key, key_problem

from .conftest import BASE, KEY, deployment


def test_discovered_through_its_entry_point() -> None:
    info = turnout.providers()["modelroute"]
    assert info.distribution == "turnout-modelroute"
    assert info.version == "0.1.0"
    assert info.module == "turnout_modelroute.provider"


def test_hooks_register_the_provider_and_the_emulator() -> None:
    plugins = turnout.Plugins(entry_points=False)
    plugins.register(turnout_modelroute, "modelroute")
    assert isinstance(plugins.providers()["modelroute"], ModelRoute)
    assert isinstance(plugins.emulators()["modelroute"], ModelRouteEmulator)
    plugins.check_pending()


def test_importing_the_plugin_loads_neither_provider_nor_emulator() -> None:
    code = (
        "import sys, turnout_modelroute;"
        "loaded = [m for m in ('turnout_modelroute.provider', 'turnout_modelroute.emulator', 'httpx')"
        " if m in sys.modules];"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_provider_basics() -> None:
    provider = ModelRoute()
    assert provider.name == "modelroute"
    assert provider.default_base_url == "https://api.modelroute.ai"
    policy = provider.retry_policy
    assert (policy.max_retries, policy.base, policy.cap, policy.jitter) == (3, 1.0, 30.0, "full")


def test_a_well_formed_key_is_accepted() -> None:
    assert len(KEY) == KEY_LENGTH
    assert key_problem(KEY) is None
    router = turnout.Router([deployment()])
    assert "mr" in router.deployments
    router.close()


def test_an_uppercase_key_and_any_checksum_are_accepted() -> None:
    # The CRC32 is not verified (its input is undocumented): only the shape is.
    body = fake_key("x")[3:67]
    assert key_problem(f"sk_{body.upper()}_00000000") is None
    assert key_problem(f"sk_{body}_deadBEEF") is None


BAD_KEYS = {
    "wrong prefix": "pk_" + KEY[3:],
    "too short": KEY[:-1],
    "too long": KEY + "0",
    "not hex": KEY[:10] + "g" + KEY[11:],
    "no separator": KEY[:67] + "-" + KEY[68:],
    "whitespace": KEY + "\n",
    "a bearer header": "Bearer " + KEY,
    "another gateway's": "rsk_live_" + "a" * 40,
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_bad_key_is_refused_at_construction_without_showing_it(key: str) -> None:
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router([deployment("ok"), deployment("bad", api_key=key)])
    error = caught.value
    assert error.path == "deployments[1].api_key"
    assert "sk_<64 hex>_<8 hex>" in str(error)
    for shown in (str(error), repr(error), repr(error.args), str(error.value)):
        assert key not in shown
        assert key.strip()[:20] not in shown


def test_a_missing_key_is_refused() -> None:
    with pytest.raises(turnout.ConfigError, match=r"deployments\[0\]\.api_key: .*missing"):
        turnout.Router([deployment(api_key=None)])


@pytest.mark.parametrize("interval", [0, -1, "2", True, float("nan"), float("inf")])
def test_poll_interval_must_be_a_positive_number(interval: Any) -> None:
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router([deployment(options={"poll_interval": interval})])
    assert caught.value.path == "deployments[0].options.poll_interval"


def test_unknown_options_are_refused() -> None:
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router([deployment(options={"pol_interval": 1})])
    assert caught.value.path == "deployments[0].options.pol_interval"
    assert "did you mean 'poll_interval'?" in str(caught.value)  # typed options (ModelRouteOptions)


@pytest.mark.parametrize("option", ["params", "metadata"])
def test_params_and_metadata_must_be_tables(option: str) -> None:
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router([deployment(options={option: ["x"]})])
    assert caught.value.path == f"deployments[0].options.{option}"


def test_from_config_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROUTE_TEST_KEY", KEY)
    config = {
        "deployments": [
            {
                "name": "mr",
                "provider": "modelroute",
                "model": "m",
                "api_key": "env:MODELROUTE_TEST_KEY",
                "base_url": BASE,
                "options": {"poll_interval": 0.5},
            }
        ]
    }
    router = turnout.Router.from_config(config)
    dep = router.deployments["mr"]
    assert dep.key() == KEY
    assert dep.options["poll_interval"] == 0.5
    router.close()
    monkeypatch.setenv("MODELROUTE_TEST_KEY", "sk_not_a_real_key")
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router.from_config(config)
    assert caught.value.path == "deployments[0].api_key"
    assert "sk_not_a_real_key" not in str(caught.value)


def test_the_key_is_not_in_reprs() -> None:
    dep = deployment()
    provider = ModelRoute()
    for text in (repr(dep), str(dep), repr(dep.api_key), repr(provider), str(provider)):
        assert KEY not in text
