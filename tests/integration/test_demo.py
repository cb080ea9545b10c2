"""`turnout demo` as a pipe sees it: plain text, every scenario, exit code 0."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import turnout
from turnout._plugins import Plugins
from turnout.cli.demo import cast
from turnout.cli.stories import STORIES
from turnout.emulation import DemoDeployment, DemoScenario, EmulatedRequest, EmulatedResponse, Emulator, Fault
from turnout_modelroute.provider import key_problem

from .conftest import MODELS, PROVIDERS, run_cli

SCENARIOS = (
    "Rate limit, then success",
    "Authentication failure, fallback to another provider",
    "ModelRoute asynchronous execution",
    "A stream that falls back before its first chunk",
    "A stream interrupted after its first chunk",
    "A breaker opening under a failing provider",
)


def test_the_demo_plays_every_scenario_in_plain_text() -> None:
    result = run_cli("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b" not in out
    for title in SCENARIOS:
        assert title in out
    assert "UNEXPECTED" not in out
    assert "All 6 scenarios went as designed" in out
    for provider in ("meshapi", "mume", "litellm", "mythicdot", "modelroute"):
        assert provider in out
    # What each scenario is about, as a reader sees it.
    assert "rate_limited" in out
    assert "authentication" in out
    assert "POST /v1/executions" in out
    assert "partial_text='echo: " in out
    assert "router.health()" in out
    assert "Traceback" not in result.stderr


def test_the_demo_plays_what_the_installed_plugins_describe() -> None:
    # Without Mume and ModelRoute: their stories are gone, the others still play.
    result = run_cli("demo", timeout=120, env={"TURNOUT_DISABLE_PLUGINS": "mume,modelroute"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "one router, 3 gateways:" in out
    for title in (SCENARIOS[0], SCENARIOS[3], SCENARIOS[4], SCENARIOS[5]):
        assert title in out
    for title in (SCENARIOS[1], SCENARIOS[2]):
        assert title not in out
    assert "All 4 scenarios went as designed" in out


def test_a_missing_fallback_is_replaced_or_the_scenario_skipped() -> None:
    # Without MythicDot, the stories that fell back to it fall back to another gateway.
    result = run_cli("demo", timeout=120, env={"TURNOUT_DISABLE_PLUGINS": "mythicdot"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 5 scenarios went as designed" in result.stdout
    assert "mume 401 -> litellm answered" in result.stdout
    # With Mume alone, its story needs a second gateway: nothing can be played.
    alone = run_cli("demo", env={"TURNOUT_DISABLE_PLUGINS": "meshapi,litellm,mythicdot,modelroute"})
    assert alone.returncode == 2
    assert alone.stderr.count("\n") == 1
    assert "nothing to play" in alone.stderr
    assert "needs a second provider to fall back to" in alone.stderr


def test_the_demo_without_plugins_says_so() -> None:
    result = run_cli("demo", env={"TURNOUT_DISABLE_PLUGINS": "meshapi,mume,litellm,mythicdot,modelroute"})
    assert result.returncode == 2
    assert result.stderr == (
        "turnout: error: the demo has nothing to play with the installed plugins: "
        "no installed provider plugin describes a demo deployment\n"
    )


def test_the_demo_on_an_80_column_terminal_cuts_nothing() -> None:
    """Under a real pseudo-terminal (so rich, live displays and all) 80 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "turnout", "demo"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        close_fds=True,
    )
    os.close(slave)
    received = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
        code = process.wait(timeout=120)
    # Colours go; a cursor move or an erase (rich's live displays redraw) ends a line.
    text = re.sub(r"\x1b\[[0-9;]*m|\x1b\][^\x07]*\x07|\x1b\[\?[0-9;]*[hl]", "", received.decode())
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "\n", text)
    assert code == 0, text
    assert "All 6 scenarios went as designed" in text
    assert "…" not in text
    assert max(len(line) for line in text.split("\n")) <= 80
    # Values that used to be cut at 80 columns, whole (wrapped at most).
    assert "429 rate_limit_exceeded" in text
    assert "/mythicdot/v1" in text


# -- what the emulators describe -------------------------------------------------------


def test_each_emulator_describes_a_deployment_its_provider_accepts() -> None:
    emulators = Plugins().emulators()
    assert set(PROVIDERS) <= set(emulators)
    deployments = {}
    for provider in PROVIDERS:
        described = emulators[provider].demo_deployment()
        assert isinstance(described, DemoDeployment)
        assert described.model == MODELS[provider]
        deployments[provider] = described
    assert deployments["litellm"].options == {"team_id": "team_demo"}
    assert deployments["modelroute"].options == {"poll_interval": 0.05}
    assert key_problem(deployments["modelroute"].api_key) is None
    # The provider checks each deployment (its options, the key's shape) when the router is built.
    router = turnout.Router(
        [
            turnout.Deployment(
                d.name or p,
                p,
                d.model,
                api_key=d.api_key,
                base_url=f"http://127.0.0.1:9/{p}",
                options=d.options,
            )
            for p, d in deployments.items()
        ]
    )
    assert set(router.deployments) == {"mesh", "mume", "litellm", "mythic", "modelroute"}
    router.close()


def test_each_emulators_scenarios_name_known_stories_and_installed_fallbacks() -> None:
    emulators = Plugins().emulators()
    scenarios = [(p, s) for p in PROVIDERS for s in emulators[p].demo_scenarios()]
    assert sorted(s.story for _, s in scenarios) == sorted(STORIES)
    for provider, scenario in scenarios:
        assert scenario.text
        assert scenario.fallback is None or scenario.fallback in PROVIDERS
        assert scenario.fallback != provider
    (execution,) = [s for p, s in scenarios if p == "modelroute"]
    assert execution.title == "ModelRoute asynchronous execution"
    assert execution.check is not None
    good = [
        ("POST", "/v1/executions", 202),
        ("GET", "/v1/executions/e1", 200),
        ("GET", "/v1/executions/e1/result", 200),
    ]
    assert execution.check(good) == (True, ["submit 202", "1 polls", "COMPLETED", "result fetched"])
    assert execution.check(good[:1] + good[2:])[0] is False  # no poll
    assert execution.check(good[:2])[0] is False  # no result


class Stub(Emulator):
    """A gateway that only describes itself (the casting never sends it anything)."""

    def __init__(self, provider: str, *scenarios: DemoScenario, deployed: bool = True) -> None:
        self.name = provider
        self.scenarios = scenarios
        self.deployed = deployed

    def demo_deployment(self) -> DemoDeployment | None:
        return DemoDeployment("m", "k", name=self.name.upper()) if self.deployed else None

    def demo_scenarios(self) -> tuple[DemoScenario, ...]:
        return self.scenarios

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        raise NotImplementedError

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        raise NotImplementedError

    def error_names(self) -> list[str]:
        return []


def test_casting_orders_stories_and_picks_fallbacks() -> None:
    emulators = {
        "a": Stub(
            "a", DemoScenario("breaker", "A fails.", fallback="c"), DemoScenario("rate_limit", "A waits.")
        ),
        "b": Stub("b", DemoScenario("auth_fallback", "B refuses.", fallback="a")),
        "c": Stub("c", DemoScenario("stream_fallback", "C drops.", fallback="zzz")),
        "d": Stub("d", DemoScenario("teleport", "D?"), deployed=False),
    }
    casting = cast(emulators, ["a", "b", "c", "d"])
    assert list(casting.deployments) == ["a", "b", "c"]  # d describes no deployment
    assert [(c.scenario.story, c.star, c.fallback) for c in casting.casts] == [
        ("rate_limit", "A", None),  # needs no fallback
        ("auth_fallback", "B", "A"),  # the one it names
        ("stream_fallback", "C", "A"),  # "zzz" is not installed; b is set aside by its own story
        ("breaker", "A", "C"),
    ]
    assert [c.route for c in casting.casts] == ["scenario-1", "scenario-2", "scenario-3", "scenario-4"]
    assert casting.skipped == []
    # A provider whose plugin is not installed is not cast; a story nobody tells is skipped.
    lonely = cast(emulators, ["b"])
    assert lonely.casts == []
    assert lonely.skipped == [
        "Authentication failure, fallback to another provider (b): needs a second provider to fall back to"
    ]
    unknown = cast({"e": Stub("e", DemoScenario("teleport", "E?"))}, ["e"])
    known = "rate_limit, auth_fallback, call, stream_fallback, stream_cut, breaker"
    assert unknown.skipped == [f"e: no story 'teleport' (known: {known})"]
