"""The distribution: its entry point, its one dependency, its hook, and installed = on."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from importlib.metadata import distribution

import pytest

import turnout
import turnout_otel
from tests.core.acme import Acme
from tests.core.calls import HI, emulated
from tests.core.conftest import deployment
from turnout_otel import OpenTelemetryObserver

from .conftest import Telemetry


def test_the_distribution_declares_its_entry_point_and_depends_on_the_api_only() -> None:
    dist = distribution("turnout-otel")
    assert [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "turnout"] == [
        ("otel", "turnout_otel")
    ]
    requires = [r.replace(" ", "") for r in dist.requires or []]
    assert sorted(r for r in requires if "extra==" not in r) == [
        "attrs>=24.2",
        "opentelemetry-api>=1.30",
        "turnout>=0.1",
    ]
    assert [r.split(";")[0] for r in requires if "extra==" in r] == ["opentelemetry-sdk>=1.30"]
    assert resources.files("turnout_otel").joinpath("py.typed").is_file()


def test_the_hook_registers_one_observer() -> None:
    registered: list[object] = []
    turnout_otel.turnout_register_observers(register=registered.append)
    [observer] = registered
    assert isinstance(observer, OpenTelemetryObserver)


def test_discovery_does_not_import_opentelemetry_and_nothing_sets_a_provider() -> None:
    """turnout loads every installed plugin module when it looks for providers: this one
    costs nothing until used, and using it never touches the global providers."""
    code = """
import sys
import turnout, turnout_otel
turnout.providers()
assert "opentelemetry" not in sys.modules, "imported at discovery"
registered = []
turnout_otel.turnout_register_observers(register=registered.append)
from opentelemetry import metrics, trace
print(type(trace.get_tracer_provider()).__name__, type(metrics.get_meter_provider()).__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ProxyTracerProvider", "_ProxyMeterProvider"]


def test_the_installed_plugin_gives_one_observer_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = turnout.Plugins()  # the installed plugins: turnout-otel among them
    plugins.check_pending()  # its hook matches the core's specification
    assert [type(o) for o in plugins.observers()].count(OpenTelemetryObserver) == 1
    monkeypatch.setenv("TURNOUT_DISABLE_PLUGINS", "otel")
    assert not any(isinstance(o, OpenTelemetryObserver) for o in turnout.Plugins().observers())


@pytest.mark.xfail(strict=True, reason="needs routers to take their plugins' observers (issue 19 wiring)")
def test_installed_is_on_and_disabling_the_plugin_turns_it_off(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def one_call() -> int:
        plugins = turnout.Plugins()  # the installed plugins: turnout-otel among them
        plugins.add_provider(Acme())
        telemetry.reset()
        with turnout.Router([deployment("a")], plugins=plugins, transport=emulated()) as router:
            router.chat(HI)
        return len(telemetry.spans())

    assert one_call() == 2
    monkeypatch.setenv("TURNOUT_DISABLE_PLUGINS", "otel")
    assert one_call() == 0
