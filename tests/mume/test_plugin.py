"""The installed distribution: entry point, hooks, lightness, public API."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from importlib.metadata import distribution

import pytest

import turnout
from turnout.emulation import mock_transport
from turnout_mume.emulator import MumeEmulator
from turnout_mume.provider import Mume

from .helpers import FAST, HI, KEY


def test_discovered_through_the_entry_point() -> None:
    info = turnout.providers()["mume"]
    assert info.distribution == "turnout-mume"
    assert info.version == "0.1.0"
    assert info.module == "turnout_mume.provider"


def test_the_distribution_declares_its_entry_point_and_only_turnout() -> None:
    dist = distribution("turnout-mume")
    points = [ep for ep in dist.entry_points if ep.group == "turnout"]
    assert [(ep.name, ep.value) for ep in points] == [("mume", "turnout_mume")]
    requires = dist.requires or []
    assert sorted(r.split(";")[0].replace(" ", "") for r in requires) == ["attrs>=24.2", "turnout>=0.1"]
    assert resources.files("turnout_mume").joinpath("py.typed").is_file()


def test_hooks_register_one_provider_and_one_emulator() -> None:
    plugins = turnout.Plugins(entry_points=False)
    import turnout_mume

    plugins.register(turnout_mume, "mume")
    plugins.check_pending()
    provider = plugins.providers()["mume"]
    assert isinstance(provider, Mume)
    assert provider.default_base_url == "https://mume.ai/api/v1"
    emulator = plugins.emulators()["mume"]
    assert isinstance(emulator, MumeEmulator)


def test_the_entry_point_plugin_serves_a_router() -> None:
    emulator = turnout.Plugins().emulators()["mume"]
    deployment = turnout.Deployment(
        "m",
        "mume",
        "openai/gpt-4.1-mini",
        api_key=KEY,
        base_url="https://mume.test/api/v1",
        retry_policy=FAST,
    )
    with turnout.Router([deployment], transport=mock_transport({"mume.test": emulator})) as router:
        assert router.chat(HI).content == "echo: hello there"


def test_normalize_error_public_api() -> None:
    err = turnout.normalize_error(
        "mume",
        status=429,
        headers={"Retry-After": "2"},
        body={
            "error": {
                "message": "slow down",
                "type": "requests",
                "code": "rate_limit_exceeded",
                "param": None,
            }
        },
    )
    assert isinstance(err, turnout.RateLimitError)
    assert err.retry_after == 2.0
    assert err.deployment is None


def test_importing_the_plugin_stays_light() -> None:
    heavy = ("httpx", "turnout_mume.provider", "turnout_mume.emulator")
    code = f"import sys, turnout_mume; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_listing_providers_does_not_import_the_emulator() -> None:
    code = (
        "import sys, turnout; turnout.providers(); "
        "print('turnout_mume.provider' in sys.modules, 'turnout_mume.emulator' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True False"


def test_the_package_exports_its_classes_lazily() -> None:
    import turnout_mume

    assert turnout_mume.Mume is Mume
    assert turnout_mume.MumeEmulator is MumeEmulator
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        turnout_mume.Nope  # noqa: B018
