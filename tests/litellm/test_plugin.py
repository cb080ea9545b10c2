"""Packaging: entry-point discovery, lazy imports, and the generated docs table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import turnout
import turnout_litellm
from turnout_litellm.emulator import LiteLLMEmulator
from turnout_litellm.provider import LiteLLM

ROOT = Path(__file__).resolve().parents[2]


def test_discovered_through_the_entry_point():
    info = turnout.providers()["litellm"]
    assert info.distribution == "turnout-litellm"
    assert info.version == "0.1.0"
    assert info.module == "turnout_litellm.provider"


def test_a_fresh_plugin_manager_finds_provider_and_emulator():
    plugins = turnout.Plugins()
    assert isinstance(plugins.provider("litellm"), LiteLLM)
    assert isinstance(plugins.emulators()["litellm"], LiteLLMEmulator)
    plugins.check_pending()


def test_blocking_the_plugin_hides_it():
    plugins = turnout.Plugins(blocked=["litellm"])
    assert "litellm" not in plugins.providers()
    with pytest.raises(turnout.ConfigError) as raised:
        turnout.Router(
            [turnout.Deployment("x", "litellm", "m", base_url="https://x.test", options={"team_id": "t"})],
            plugins=plugins,
        )
    assert raised.value.path == "deployments[0].provider"


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_importing_and_registering_is_light():
    out = run(
        "import sys, turnout, turnout_litellm\n"
        "print('turnout_litellm.session' in sys.modules, 'turnout_litellm.emulator' in sys.modules)\n"
        "turnout.providers()\n"
        "print('turnout_litellm.provider' in sys.modules, 'turnout_litellm.emulator' in sys.modules,"
        " 'turnout_litellm.session' in sys.modules)\n"
    )
    assert out.splitlines() == ["False False", "True False False"]


def test_session_names_load_on_first_access():
    from turnout_litellm.session import AsyncJobSession, JobSession

    assert turnout_litellm.JobSession is JobSession
    assert turnout_litellm.AsyncJobSession is AsyncJobSession
    assert turnout_litellm.LiteLLM is LiteLLM
    with pytest.raises(AttributeError):
        _ = turnout_litellm.NoSuchThing


def test_provider_repr_and_defaults():
    provider = LiteLLM()
    assert repr(provider) == "<LiteLLM 'litellm'>"
    assert provider.default_base_url == ""
    assert provider.clean_close_ends_stream is True


def load_gen_tables():
    spec = importlib.util.spec_from_file_location("gen_tables", ROOT / "docs" / "gen_tables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_page_includes_the_generated_table():
    page = (ROOT / "docs" / "providers" / "litellm.md").read_text()
    assert '--8<-- "litellm.md"' in page
    for topic in ("team_id", "job_type", "base_url", "JobSession", "AsyncJobSession", "120 s"):
        assert topic in page


def test_generated_table_documents_the_wording_rules_and_policy():
    table = load_gen_tables().provider_table(LiteLLM())
    assert "| `\\bcredits?\\b` | 403 | `insufficient_credits` |" in table
    assert "| 422 | `validation` |" in table
    assert "2 retries, base 1 s, cap 32 s, symmetric jitter" in table
