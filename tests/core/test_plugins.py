"""Plugin discovery through entry points, blocking, code registration, and docs for every hook."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest

import turnout
from turnout import Plugins, hookspecs

from .acme import Acme, AcmeEmulator

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real distribution on sys.path: a module with hookimpls and a dist-info with an entry point."""
    (tmp_path / "turnout_fakeplug.py").write_text(
        textwrap.dedent(
            """
            import turnout
            from tests_core_acme_shim import Acme, AcmeEmulator

            @turnout.hookimpl
            def turnout_register_providers(register):
                register(Acme())

            @turnout.hookimpl
            def turnout_register_emulators(register):
                register(AcmeEmulator())
            """
        )
    )
    (tmp_path / "tests_core_acme_shim.py").write_text(f"from {Acme.__module__} import Acme, AcmeEmulator\n")
    info = tmp_path / "turnout_fakeplug-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: turnout-fakeplug\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[turnout]\nfakeplug = turnout_fakeplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("turnout_fakeplug", None)


def test_entry_points_are_discovered_with_their_distribution(installed_plugin):
    plugins = Plugins()
    info = plugins.infos()["acme"]
    assert (info.distribution, info.version) == ("turnout-fakeplug", "1.2.3")
    assert info.module == Acme.__module__
    assert isinstance(plugins.provider("acme"), Acme)
    assert isinstance(plugins.emulators()["acme"], AcmeEmulator)


def test_the_environment_variable_blocks_a_plugin(installed_plugin, monkeypatch):
    monkeypatch.setenv("TURNOUT_DISABLE_PLUGINS", "other, fakeplug")
    assert "acme" not in Plugins().infos()
    assert "turnout_fakeplug" not in sys.modules


def test_blocking_in_code(installed_plugin):
    assert "acme" not in Plugins(blocked=["fakeplug"]).infos()


def test_providers_registered_in_code_have_no_distribution():
    plugins = Plugins(entry_points=False)
    plugins.add_provider(Acme())
    assert plugins.infos()["acme"] == turnout.ProviderInfo("acme", None, None, Acme.__module__)


def test_a_plugin_module_registered_in_code():
    class Plugin:
        @turnout.hookimpl
        def turnout_register_providers(self, register):
            register(Acme())

    plugins = Plugins(entry_points=False)
    plugins.register(Plugin(), name="mine")
    assert list(plugins.providers()) == ["acme"]


def test_of_two_plugins_registered_in_code_the_later_wins():
    made = []

    class First:
        @turnout.hookimpl
        def turnout_register_providers(self, register):
            made.append(Acme())
            register(made[-1])

    class Second(First):
        pass

    plugins = Plugins(entry_points=False)
    plugins.register(First(), name="first")
    plugins.register(Second(), name="second")
    assert plugins.provider("acme") is made[1]
    assert plugins.infos()["acme"].distribution is None
    # Two installed distributions claiming one name are an error: tests/core/test_precedence.py.


def test_a_broken_plugin_is_named():
    class Broken:
        @turnout.hookimpl
        def turnout_register_providers(self, register):
            raise RuntimeError("oops")

    plugins = Plugins(entry_points=False)
    plugins.register(Broken(), name="broken-one")
    with pytest.raises(
        turnout.TurnoutError, match="plugin 'broken-one' failed to register its providers: oops"
    ):
        plugins.providers()


def test_registering_something_that_is_not_a_provider_is_an_error():
    class Wrong:
        @turnout.hookimpl
        def turnout_register_providers(self, register):
            register("meshapi")

    plugins = Plugins(entry_points=False)
    plugins.register(Wrong(), name="wrong")
    with pytest.raises(
        turnout.ConfigError,
        match=r"plugin 'wrong' \(registered in code\) registered 'meshapi', not a turnout\.Provider",
    ):
        plugins.providers()


def test_a_misspelled_hook_is_caught_by_check_pending():
    class Typo:
        @turnout.hookimpl
        def turnout_register_provider(self, register):  # missing "s"
            register(Acme())

    plugins = Plugins(entry_points=False)
    plugins.register(Typo(), name="typo")
    with pytest.raises(Exception, match="turnout_register_provider"):
        plugins.check_pending()


def hook_names() -> list[str]:
    return [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("turnout_")
    ]


def test_every_hook_is_prefixed_and_documented():
    names = hook_names()
    assert names, "no hooks found"
    text = (DOCS / "plugins.md").read_text()
    documented = set(re.findall(r"^### (turnout_\w+)", text, flags=re.MULTILINE))
    assert set(names) == documented
