"""The plugin as installed: entry point, registration, lightness, configuration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import turnout
import turnout_meshapi
from turnout.emulation import Emulator
from turnout_meshapi.emulator import MeshAPIEmulator
from turnout_meshapi.provider import DEFAULT_BASE_URL, MeshAPI

from .helpers import KEY, MODEL


def test_discovered_through_the_entry_point() -> None:
    info = turnout.providers()["meshapi"]
    assert info.name == "meshapi"
    assert info.distribution == "turnout-meshapi"
    assert info.version == "0.1.0"
    assert info.module == "turnout_meshapi.provider"


def test_a_fresh_plugin_manager_finds_the_provider_and_the_emulator() -> None:
    plugins = turnout.Plugins()
    assert isinstance(plugins.provider("meshapi"), MeshAPI)
    emulator = plugins.emulators()["meshapi"]
    assert isinstance(emulator, MeshAPIEmulator)
    assert isinstance(emulator, Emulator)
    plugins.check_pending()


def test_blocking_the_plugin_hides_it() -> None:
    plugins = turnout.Plugins(blocked=["meshapi"])
    assert "meshapi" not in plugins.infos()


def test_the_package_exports_the_provider() -> None:
    assert turnout_meshapi.MeshAPI is MeshAPI
    assert turnout_meshapi.MeshAPIEmulator is MeshAPIEmulator
    assert "MeshAPI" in turnout_meshapi.__all__


def test_the_provider_describes_meshapi() -> None:
    provider = MeshAPI()
    assert provider.name == "meshapi"
    assert DEFAULT_BASE_URL == "https://api.meshapi.ai"
    assert provider.default_base_url == DEFAULT_BASE_URL
    assert provider.chat_path == "/v1/chat/completions"
    assert isinstance(provider, turnout.OpenAICompatible)
    dep = turnout.Deployment("mesh", "meshapi", MODEL, api_key=KEY)
    assert provider.auth_headers(dep) == {"authorization": f"Bearer {KEY}"}
    assert repr(provider) == "<MeshAPI 'meshapi'>"


def test_importing_the_package_is_light() -> None:
    code = (
        "import sys, turnout_meshapi\n"
        "heavy = [m for m in ('httpx', 'turnout_meshapi.provider', 'turnout_meshapi.emulator',"
        " 'turnout._openai', 'turnout.emulation') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_registering_providers_does_not_import_the_emulator() -> None:
    code = (
        "import sys, turnout\n"
        "assert 'meshapi' in turnout.providers()\n"
        "print('turnout_meshapi.emulator' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_unknown_options_are_a_config_error() -> None:
    dep = turnout.Deployment("mesh", "meshapi", MODEL, api_key=KEY, options={"poll_interval": 2})
    with pytest.raises(turnout.ConfigError) as caught:
        turnout.Router([dep])
    assert caught.value.path == "deployments[0].options.poll_interval"


def test_options_headers_and_params_are_sent() -> None:
    dep = turnout.Deployment(
        "mesh",
        "meshapi",
        MODEL,
        api_key=KEY,
        options={"headers": {"X-Title": "turnout-tests"}, "params": {"temperature": 0.2}},
    )
    request = MeshAPI().request(dep, turnout.ChatRequest([{"role": "user", "content": "hi"}]), stream=False)
    assert request.url == "https://api.meshapi.ai/v1/chat/completions"
    assert request.headers["x-title"] == "turnout-tests"
    assert json.loads(request.content)["temperature"] == 0.2
    assert KEY not in repr(request)


def test_from_config_with_an_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHAPI_API_KEY", KEY)
    router = turnout.Router.from_config(
        {
            "deployments": [
                {"name": "mesh", "provider": "meshapi", "model": MODEL, "api_key": "env:MESHAPI_API_KEY"}
            ]
        }
    )
    try:
        dep = router.deployments["mesh"]
        assert dep.key() == KEY
        assert KEY not in repr(dep)
    finally:
        router.close()
