"""The stories `turnout demo` can tell, as a table: `STORIES`.

A story is the part every gateway shares: which fault the fake scripts, which
calls are made, what the router must have done, and what that means in words.
The gateway in the lead and its own words come from its emulator
(`Emulator.demo_scenarios`), so this module names no gateway. Each play takes
the `Stage` (the output, the fake gateways, the router) and a `Cast` (the
scenario's deployments and route), and returns whether it went as designed
and a one-line summary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from attrs import frozen

from turnout._errors import KIND_RULES, ErrorKind
from turnout._health import BreakerConfig

from .demo_view import HEALTH_COLUMNS, DemoView, health_rows
from .output import Output

if TYPE_CHECKING:
    from turnout.emulation import DemoScenario
    from turnout.fake import FakeGateways

__all__ = ["BREAKER", "PROMPT", "STORIES", "Cast", "Stage", "Story"]

PROMPT = [{"role": "user", "content": "Tell me how a railway turnout works"}]
RETRY_AFTER = 0.5
CUT_AFTER = 3
CALLS = 20
# Short breaker times, so the demo shows a probe within seconds.
BREAKER = BreakerConfig(consecutive_failures=5, open_for=0.5, max_open=2.0)

Emit = Callable[[str, Any], None]


@frozen
class Cast:
    """A scenario and its players: the deployments of its route, by name."""

    scenario: DemoScenario
    route: str
    provider: str
    star: str
    fallback: str | None = None


class Stage:
    """What a play works with: the output, the fake gateways, the router, and
    `drive`, which runs a call while showing what the gateways receive."""

    def __init__(self, out: Output, view: DemoView) -> None:
        self.out = out
        self.view = view
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.fake: FakeGateways
        self.router: Any = None

    def drive(self, work: Callable[[Emit], Any], *, wire: bool = True) -> Any:
        """Run `work` in a thread; meanwhile show what the gateways receive (unless
        not `wire`) and what the work emits ("chunk" deltas, "call" rows)."""
        box: dict[str, Any] = {}

        def emit(kind: str, value: Any) -> None:
            self.events.put((kind, value))

        def runner() -> None:
            try:
                box["value"] = work(emit)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=runner, name="turnout-demo-call", daemon=True)
        thread.start()
        while thread.is_alive() or not self.events.empty():
            try:
                kind, value = self.events.get(timeout=0.02)
            except queue.Empty:
                continue
            if kind == "wire" and wire:
                self.view.wire(value)
            elif kind == "chunk":
                self.view.chunk(value)
            elif kind == "call":
                self.view.call(value)
            elif kind == "decision" and wire:
                self.view.decision(value)
        thread.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def chat(self, route: str) -> Any:
        return self.drive(lambda emit: self.router.chat(PROMPT, model=route))

    def stream(self, route: str) -> Any:
        def work(emit: Emit) -> Any:
            with self.router.stream(PROMPT, model=route) as stream:
                for chunk in stream:
                    emit("chunk", chunk.delta)
            return stream

        return self.drive(work)


Outcome = tuple[bool, str]


def _fail_once(
    stage: Stage, cast: Cast, kind: str, *, stream: bool = False, **fault: Any
) -> tuple[Any, Any, bool]:
    """Script a `Fault(**fault)` on the lead, make the call and show its attempts:
    the result, the first attempt's error, and whether that error was of `kind`
    and one more attempt answered."""
    from turnout.emulation import Fault

    stage.fake.script(cast.provider, Fault(**fault))
    result = stage.stream(cast.route) if stream else stage.chat(cast.route)
    attempts = result.attempts
    stage.view.attempts(attempts)
    first = attempts[0].error
    return result, first, len(attempts) == 2 and first is not None and first.kind == kind and attempts[1].ok


def rate_limit(stage: Stage, cast: Cast) -> Outcome:
    response, first, failed_once = _fail_once(
        stage, cast, "rate_limited", error="rate_limited", retry_after=RETRY_AFTER
    )
    waited = response.attempts[-1].waited
    arrow = stage.out.arrow
    status = first.status if first is not None else stage.out.dash
    return failed_once and waited >= RETRY_AFTER, (
        f"{status} {arrow} waited {waited:.2f} s {arrow} {response.deployment} answered"
    )


def auth_fallback(stage: Stage, cast: Cast) -> Outcome:
    response, first, failed_once = _fail_once(stage, cast, "authentication", error="authentication")
    status = first.status if first is not None else stage.out.dash
    return failed_once and response.deployment == cast.fallback, (
        f"{cast.star} {status} {stage.out.arrow} {response.deployment} answered"
    )


def call(stage: Stage, cast: Cast) -> Outcome:
    before = len(stage.fake.log(cast.provider))
    response = stage.chat(cast.route)
    stage.view.attempts(response.attempts)
    wire = [(s.method, s.path, s.status) for s in stage.fake.log(cast.provider)[before:]]
    check = cast.scenario.check
    ok, steps = check(wire) if check is not None else (True, [f"{cast.star} answered"])
    return ok and response.deployment == cast.star, f" {stage.out.arrow} ".join(steps)


def stream_fallback(stage: Stage, cast: Cast) -> Outcome:
    stream, _, failed_once = _fail_once(stage, cast, "stream_interrupted", stream=True, drop_after=0)
    whole = stream.deployment == cast.fallback and stream.text == "echo: " + PROMPT[0]["content"]
    return failed_once and whole, (
        f"{cast.star} cut before chunk 1 {stage.out.arrow} {stream.deployment} streamed the answer"
    )


def stream_cut(stage: Stage, cast: Cast) -> Outcome:
    import turnout
    from turnout.emulation import Fault

    stage.fake.script(cast.provider, Fault(drop_after=CUT_AFTER))
    try:
        stage.stream(cast.route)
    except turnout.StreamInterruptedError as error:
        stage.view.attempts(error.attempts)
        ok = bool(error.partial_text) and len(error.attempts) == 1
        return ok, f"{cast.star} cut after chunk {CUT_AFTER}: partial_text={error.partial_text!r}"
    return False, "the stream was not interrupted"


def breaker(stage: Stage, cast: Cast) -> Outcome:
    stage.fake.set_faults(cast.provider, {"errors": {"unavailable": 1.0}})
    before = stage.fake.requests(cast.provider)
    stage.view.calls_start(CALLS, f"calls (the breaker of {cast.star})")
    arrow, cross, tick = stage.out.arrow, stage.out.cross, stage.out.tick
    seen = {"answered": 0, "probes": 0, "opened_at": 0}

    def work(emit: Emit) -> None:
        for number in range(1, CALLS + 1):
            was_open = stage.router.health()[cast.star].trips > 0
            response = stage.router.chat(PROMPT, model=cast.route)
            seen["answered"] += 1
            steps = [
                f"{a.deployment} {tick if a.ok else cross + ' ' + (a.error.kind if a.error else '')}"
                for a in response.attempts
            ]
            health = stage.router.health()[cast.star]
            tried = any(a.deployment == cast.star for a in response.attempts)
            note = ""
            if tried and was_open:
                seen["probes"] += 1
                note = "probe (half-open)"
            elif not tried:
                note = "skipped: breaker open" if health.status == "open" else "skipped"
            if not seen["opened_at"] and health.trips > 0:
                seen["opened_at"] = number
                note = "breaker opens"
            emit("call", [str(number), f" {arrow} ".join(steps), health.status, note])
            time.sleep(0.05)

    try:
        stage.drive(work, wire=False)
    finally:
        stage.fake.set_faults(cast.provider, None)
    received = stage.fake.requests(cast.provider) - before
    stage.view.table(HEALTH_COLUMNS, health_rows(stage.router.health(), stage.out.dash), "router.health()")
    answered, probes, opened_at = seen["answered"], seen["probes"], seen["opened_at"]
    ok = answered == CALLS and opened_at > 0 and received < CALLS and probes >= 1
    return ok, (
        f"{answered}/{CALLS} answered; {cast.star} open at call {opened_at or None}, "
        f"then {probes} probe{'s' if probes != 1 else ''}"
    )


class Story(NamedTuple):
    title: str
    # Its name in the summary.
    name: str
    # What the router does, after the gateway's own words: `{star}` and `{fallback}`
    # are the deployments' names.
    moral: str
    play: Callable[[Stage, Cast], Outcome]
    # Whether its route needs a second deployment to fall back to.
    fallback: Literal["none", "optional", "needed"] = "none"
    # Whether it sets its lead aside for longer than the demo (it is no one's fallback).
    sets_aside: bool = False


_AUTH_COOLDOWN = KIND_RULES[ErrorKind.AUTHENTICATION].cooldown or 0.0

# In the order the demo plays them.
STORIES: Mapping[str, Story] = {
    "rate_limit": Story(
        "Rate limit, then success",
        "rate limit",
        f"The router waits at least that long ({RETRY_AFTER:g} s here) and retries the same "
        "deployment, which answers.",
        rate_limit,
    ),
    "auth_fallback": Story(
        "Authentication failure, fallback to another provider",
        "auth fallback",
        "Retrying cannot help, so the router falls back to {fallback} at once, and sets {star} "
        f"aside for {_AUTH_COOLDOWN / 60:g} minutes.",
        auth_fallback,
        "needed",
        sets_aside=True,
    ),
    "call": Story("A call", "call", "", call),
    "stream_fallback": Story(
        "A stream that falls back before its first chunk",
        "stream fallback",
        "No text has reached the caller, so the call can still move: the router opens the same "
        "stream on {fallback}.",
        stream_fallback,
        "needed",
    ),
    "stream_cut": Story(
        "A stream interrupted after its first chunk",
        "stream cut",
        f"Here it drops after {CUT_AFTER} chunks. Text has reached the caller, so the call cannot "
        "move: StreamInterruptedError is raised with partial_text.",
        stream_cut,
        "optional",
    ),
    "breaker": Story(
        "A breaker opening under a failing provider",
        "breaker",
        "Each call falls back to {fallback}; after "
        f"{BREAKER.consecutive_failures} consecutive failures the breaker of {{star}} opens and "
        f"{{star}} receives only a probe when the breaker half-opens (after {BREAKER.open_for:g} s "
        "here, doubling on each re-trip).",
        breaker,
        "needed",
    ),
}
