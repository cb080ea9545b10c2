"""`turnout demo`: fake gateways on loopback, one router over every installed
gateway that describes a demo, scripted failures, and a check of each scenario.

Nothing here names a gateway. Each emulator says how the demo deploys it
(`Emulator.demo_deployment`) and which stories it leads
(`Emulator.demo_scenarios`); `cast` matches those to `stories.STORIES`, the
fallbacks included, and skips what the installed plugins cannot play.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from attrs import frozen

from .demo_view import make_view
from .errors import UsageError
from .output import Column, Output, seconds
from .stories import BREAKER, STORIES, Cast, Stage

if TYPE_CHECKING:
    from turnout.emulation import DemoDeployment, Emulator
    from turnout.fake import FakeGateways

__all__ = ["DESCRIPTION", "HELP", "NAME", "Casting", "Demo", "arguments", "cast", "run"]

NAME = "demo"
HELP = "fake gateways on loopback, a router over every installed provider, scripted failures"
DESCRIPTION = "Scripted scenarios over fake gateways on 127.0.0.1: no keys, no network."
INTRO_COLUMNS = (Column("deployment"), Column("provider"), Column("model"), Column("base_url", wrap=True))
SUMMARY_COLUMNS = (
    Column("#", 2, "right"),
    Column("", 2),
    Column("scenario", 18),
    Column("what happened", 54, wrap=True),
    Column("time", 7, "right"),
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """It takes none."""


def run(args: argparse.Namespace, out: Output) -> int:
    return Demo(out).run()


@frozen
class Casting:
    """What the installed emulators let the demo play: a deployment per provider,
    the scenarios in playing order, and why the others are skipped."""

    deployments: Mapping[str, DemoDeployment]
    casts: Sequence[Cast]
    skipped: Sequence[str]


def _name(provider: str, deployment: DemoDeployment) -> str:
    return deployment.name or provider


def cast(emulators: Mapping[str, Emulator], installed: Sequence[str]) -> Casting:
    """Match the emulators' scenarios to the stories (pure: no I/O).

    A story that needs a fallback takes the one its scenario names, else the
    first other deployment (never one a story sets aside for good)."""
    deployments: dict[str, DemoDeployment] = {}
    for provider in sorted(emulators):
        described = emulators[provider].demo_deployment()
        if described is not None and provider in installed:
            deployments[provider] = described
    set_aside = {
        provider
        for provider in deployments
        for scenario in emulators[provider].demo_scenarios()
        if scenario.story in STORIES and STORIES[scenario.story].sets_aside
    }
    casts: list[Cast] = []
    skipped: list[str] = []
    for key, story in STORIES.items():
        for provider, described in deployments.items():
            for scenario in emulators[provider].demo_scenarios():
                if scenario.story != key:
                    continue
                title = scenario.title or story.title
                others = [p for p in deployments if p != provider and p not in set_aside]
                if scenario.fallback in others:
                    others.insert(0, others.pop(others.index(scenario.fallback)))
                if story.fallback == "needed" and not others:
                    skipped.append(f"{title} ({provider}): needs a second provider to fall back to")
                    continue
                fallback = others[0] if others and story.fallback != "none" else None
                route = f"scenario-{len(casts) + 1}"
                star = _name(provider, described)
                casts.append(
                    Cast(scenario, route, provider, star, fallback and _name(fallback, deployments[fallback]))
                )
    for provider in deployments:
        skipped += [
            f"{provider}: no story {s.story!r} (known: {', '.join(STORIES)})"
            for s in emulators[provider].demo_scenarios()
            if s.story not in STORIES
        ]
    return Casting(deployments, casts, skipped)


class ScenarioResult(NamedTuple):
    name: str
    ok: bool
    summary: str
    elapsed: float


class Demo:
    """Runs the cast scenarios, one after the other, and sums them up."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.stage = Stage(out, make_view(out))
        self.results: list[ScenarioResult] = []

    def run(self) -> int:
        import turnout
        from turnout.fake import FakeGateways

        started = time.monotonic()
        events = self.stage.events
        with FakeGateways(seed=1, observer=lambda served: events.put(("wire", served))) as fake:
            emulators = {name: fake.emulator(name) for name in fake.providers}
            casting = cast(emulators, list(turnout.providers()))
            if not casting.casts:
                why = "; ".join(casting.skipped) or "no installed provider plugin describes a demo deployment"
                raise UsageError(f"the demo has nothing to play with the installed plugins: {why}")
            router = self.build_router(fake, casting)
            self.stage.fake, self.stage.router = fake, router
            try:
                self.intro(fake, router, casting.skipped)
                for number, one in enumerate(casting.casts, 1):
                    self.results.append(self.play(number, one))
            finally:
                router.close()
            counts = fake.counts()
        return self.summary(time.monotonic() - started, counts)

    def build_router(self, fake: FakeGateways, casting: Casting) -> Any:
        import turnout

        deployments = [
            turnout.Deployment(
                _name(provider, d),
                provider,
                d.model,
                api_key=d.api_key,
                base_url=fake.base_url(provider),
                options=dict(d.options),
            )
            for provider, d in casting.deployments.items()
        ]
        routes = {c.route: [c.star, *([c.fallback] if c.fallback else [])] for c in casting.casts}
        events = self.stage.events
        return turnout.Router(
            deployments,
            routes,
            observers=[_Decisions(lambda event: events.put(("decision", event)))],
            deadline=20.0,
            # A retry that would wait longer than this falls back at once when it can.
            max_retry_wait=0.5,
            breaker=BREAKER,
        )

    def intro(self, fake: FakeGateways, router: Any, skipped: Sequence[str]) -> None:
        self.out.prose(f"turnout demo: fake gateways on {fake.root}, no keys, no network beyond 127.0.0.1")
        rows = [[d.name, d.provider, d.model, d.base_url or ""] for d in router.deployments.values()]
        self.out.table(INTRO_COLUMNS, rows, title=f"one router, {len(rows)} gateways:")
        for reason in skipped:
            self.out.note(f"skipped: {reason}")

    def play(self, number: int, one: Cast) -> ScenarioResult:
        import turnout

        story = STORIES[one.scenario.story]
        moral = story.moral.format(star=one.star, fallback=one.fallback)
        self.stage.view.start(
            number, one.scenario.title or story.title, f"{one.scenario.text} {moral}".strip()
        )
        started = time.monotonic()
        try:
            ok, summary = story.play(self.stage, one)
        except turnout.TurnoutError as exc:
            ok, summary = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        self.stage.view.result(ok, summary)
        self.stage.view.stop()
        return ScenarioResult(one.scenario.name or story.name, ok, summary, elapsed)

    def summary(self, elapsed: float, counts: dict[str, int]) -> int:
        out = self.out
        rows = [
            [str(i), out.tick if r.ok else out.cross, r.name, r.summary, seconds(r.elapsed)]
            for i, r in enumerate(self.results, 1)
        ]
        out.heading("Summary")
        out.table(SUMMARY_COLUMNS, rows)
        served = ", ".join(f"{name} {count}" for name, count in counts.items())
        out.prose(f"requests served by the fake gateways: {served}")
        failed = [r.name for r in self.results if not r.ok]
        if failed:
            out.bad(f"{len(failed)} of {len(self.results)} scenarios did not go as designed.")
            return 1
        out.good(f"All {len(self.results)} scenarios went as designed, in {elapsed:.1f} s.")
        return 0


class _Decisions:
    """Hands each decision, as the router makes it, to the scenario's live view."""

    def __init__(self, put: Callable[[Any], None]) -> None:
        self.put = put

    def on_attempt(self, event: Any) -> None:
        self.put(event)
