"""What is MythicDot's own around a router: its `organization` option on the wire, its
default base URL, its options checked when the router is built, and the plugin found
through its entry point and hooks.

The router's behaviour (retries, fallbacks, streams, hostile bodies, keys) is tested once,
over a generic provider, in tests/core/test_router_*.py and tests/core/test_secrets.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import turnout
from turnout.emulation import FaultScript, mock_transport
from turnout_mythicdot.emulator import MythicDotEmulator

from .helpers import BASE_URL, HOST, KEY, deployment

HI = [{"role": "user", "content": "hello mythic world"}]
MakeRouter = Callable[..., turnout.Router]


# -- the request on the wire ---------------------------------------------------


def test_organization_option_is_sent_as_a_header(make_router: MakeRouter) -> None:
    script = FaultScript()
    router = make_router(script, [deployment(options={"organization": "org-42"})])
    router.chat(HI)
    assert script.requests[0].headers["mythicdot-organization"] == "org-42"


def test_default_base_url(provider: turnout.Provider) -> None:
    bare = turnout.Deployment("m", "mythicdot", "mythic-4", api_key=KEY)
    request = provider.request(bare, turnout.ChatRequest(HI), stream=False)  # type: ignore[attr-defined]
    assert request.url == "https://api.mythicdot.ai/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("options", "path"),
    [({"organisation": "x"}, "deployments[0].options.organisation"), ({"organization": 7}, "organization")],
)
def test_bad_options_are_config_errors(options: dict[str, Any], path: str) -> None:
    with pytest.raises(turnout.ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        turnout.Router([deployment(options=options)], transport=mock_transport({}))


# -- plugin discovery ------------------------------------------------------------


def test_entry_point_discovery() -> None:
    info = turnout.providers()["mythicdot"]
    assert info.distribution == "turnout-mythicdot"
    assert info.version == "0.1.0"
    assert info.module == "turnout_mythicdot.provider"


def test_registered_through_the_hooks() -> None:
    import turnout_mythicdot

    plugins = turnout.Plugins(entry_points=False)
    plugins.register(turnout_mythicdot)
    plugins.check_pending()
    assert type(plugins.providers()["mythicdot"]).__name__ == "MythicDot"
    assert set(plugins.emulators()) == {"mythicdot"}


def test_registering_the_provider_does_not_import_the_emulator() -> None:
    code = (
        "import sys, turnout_mythicdot\n"
        "found = []\n"
        "turnout_mythicdot.turnout_register_providers(found.append)\n"
        "assert [p.name for p in found] == ['mythicdot'], found\n"
        "assert 'turnout_mythicdot.emulator' not in sys.modules\n"
        "assert 'httpx' not in sys.modules\n"
        "turnout_mythicdot.turnout_register_emulators(found.append)\n"
        "assert 'turnout_mythicdot.emulator' in sys.modules\n"
        "print(type(found[1]).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "MythicDotEmulator"


def test_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTHICDOT_API_KEY", KEY)
    router = turnout.Router.from_config(
        {
            "deployments": [
                {
                    "name": "mythic",
                    "provider": "mythicdot",
                    "model": "mythic-4",
                    "api_key": "env:MYTHICDOT_API_KEY",
                    "base_url": BASE_URL,
                }
            ]
        },
        transport=mock_transport({HOST: MythicDotEmulator()}),
    )
    with router:
        assert router.chat(HI).content == "echo: hello mythic world"
