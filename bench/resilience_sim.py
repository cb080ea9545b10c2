"""How the breaker and the retry budget behave, simulated with turnout's own decisions.

    python bench/resilience_sim.py            # the tables in docs/resilience.md
    python bench/resilience_sim.py --quick    # fewer runs

No sockets and no sleeping: the router's real decision code (`RouterCore`,
its retry layer, the breaker's pure functions, the in-memory store) runs
against simulated upstreams on a simulated clock. Two measurements:

1. **Trip probability**: one deployment whose attempts fail at random with
   probability p, 100 attempts: how often does the breaker open? Shown for
   the old defaults and the new ones, with p from 5 % to 100 %.
2. **Calls answered**: calls at 20 per second against two deployments on
   one upstream that is degraded (p = 30 % of answers failing at random),
   flapping (dead for 20 s every minute), or dead beside a healthy one,
   with the default breaker and budget: the share answered, attempts per
   call, and how many requests the dead upstream receives per open period.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core" / "src"))

import turnout  # noqa: E402
from turnout._binding import bind, check_routes  # noqa: E402
from turnout._call import CallRecord, RouterCore  # noqa: E402
from turnout._flow import Claim, Emit, HTTPResponse, LoadState, Notify, Send, Settle, Sleep  # noqa: E402
from turnout._health import BreakerConfig, DeploymentState, on_failure, on_success  # noqa: E402
from turnout._pump import DONE, Pump  # noqa: E402
from turnout._state import MemoryStore, RetryBudget  # noqa: E402

OK_BODY = json.dumps(
    {"id": "sim", "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
).encode()
FAIL_BODY = json.dumps({"error": {"message": "overloaded", "code": "overloaded"}}).encode()
JSON = {"content-type": "application/json"}


class SimProvider(turnout.OpenAICompatible):
    name = "sim"
    default_base_url = "https://sim.invalid/v1"
    retry_policy = turnout.RetryPolicy(max_retries=2, base=0.5, cap=8.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# An upstream answers an attempt at a time: True for a success.
Upstream = Callable[[str, float, random.Random], bool]


def degraded(p: float) -> Upstream:
    return lambda name, now, rng: rng.random() >= p


def flapping(period: float = 60.0, down: float = 20.0, start: float = 1_700_000_000.0) -> Upstream:
    """Dead for `down` seconds every `period`, starting `period - down` seconds in."""
    return lambda name, now, rng: ((now - start) % period) < period - down


def dead_beside_healthy(dead: str) -> Upstream:
    return lambda name, now, rng: name != dead


@dataclass
class Outcome:
    calls: int = 0
    answered: int = 0
    attempts: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def share(self) -> float:
        return self.answered / self.calls if self.calls else 0.0


def simulate(
    upstream: Upstream,
    *,
    names: Sequence[str] = ("a", "b"),
    calls: int = 2400,
    rate: float = 20.0,
    latency: float = 0.2,
    deadline: float = 10.0,
    breaker: BreakerConfig | None = None,
    budget: RetryBudget | None = None,
    wait_for_healthy: bool = True,
    seed: int = 7,
) -> Outcome:
    """`calls` calls, one every 1/rate seconds, each through the router's decisions."""
    rng = random.Random(seed)
    clock = Clock()
    plugins = turnout.Plugins(entry_points=False)
    plugins.add_provider(SimProvider())
    deployments = [
        turnout.Deployment(n, "sim", "m", api_key=f"sk-sim-{n}", base_url=f"https://{n}.sim/v1")
        for n in names
    ]
    targets = bind(deployments, plugins)
    budget = budget or RetryBudget()
    core = RouterCore(
        targets,
        check_routes(None, list(targets)),
        breaker=breaker,
        budget=budget,
        store=MemoryStore(budget.burst),
        clock=clock,
        wall_clock=clock,
        rng=random.Random(seed + 1),
        wait_for_healthy=wait_for_healthy,
    )
    result = Outcome(requests=dict.fromkeys(names, 0))
    began = clock.now
    for index in range(calls):
        clock.now = began + index / rate
        limits = core.limits(deadline)
        flow = core.call_flow(
            turnout.ChatRequest([{"role": "user", "content": "hi"}]),
            core.table.route(None),
            limits,
            CallRecord(),
            stream=False,
        )
        result.calls += 1
        pump = Pump(flow)
        command: Any = pump.start()
        try:
            while command is not DONE:
                command = pump.send(_perform(command, core, clock, upstream, rng, latency, result, limits))
            result.answered += 1
        except turnout.TurnoutError:
            pass
    result.seconds = clock.now - began
    return result


def _perform(
    command: Any,
    core: RouterCore,
    clock: Clock,
    upstream: Upstream,
    rng: random.Random,
    latency: float,
    result: Outcome,
    limits: turnout.CallLimits,
) -> Any:
    kind = type(command)
    if kind is Send:
        name = command.request.url.split("//", 1)[1].split(".", 1)[0]
        result.requests[name] += 1
        result.attempts += 1
        clock.now += latency
        if upstream(name, clock.now, rng):
            return HTTPResponse(200, JSON, OK_BODY)
        return HTTPResponse(503, JSON, FAIL_BODY)
    if kind is Sleep:
        clock.now += limits.sleep_for(command.seconds)
        return None
    if kind is Claim:
        return core.store.claim(command)
    if kind is Settle:
        return core.store.settle(command)
    if kind is LoadState:
        return core.store.load(command.names)
    if kind in (Emit, Notify):
        return None
    raise AssertionError(f"unexpected {command!r}")


def trip_probability(
    p: float, config: BreakerConfig, *, attempts: int = 100, runs: int = 2000, seed: int = 1
) -> float:
    """How often one deployment's breaker opens within `attempts` random outcomes."""
    rng = random.Random(seed)
    error = turnout.ServiceUnavailableError("simulated")
    tripped = 0
    for _ in range(runs):
        state = DeploymentState()
        for _ in range(attempts):
            if rng.random() < p:
                state = on_failure(state, error, 0.0, config, rng)
                if state.status == "open":
                    tripped += 1
                    break
            else:
                state = on_success(state, 0.1, config)
    return tripped / runs


# The first wave's defaults, every field that has changed since.
OLD = BreakerConfig(
    consecutive_failures=5, failure_rate=0.5, window=20, min_calls=10, open_for=30.0, max_open=300.0
)
OLD_BUDGET = RetryBudget(ratio=0.2, burst=10.0)
NEW = BreakerConfig()


def table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = 400 if args.quick else 2000
    seeds = range(3 if args.quick else 10)
    rates = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    print("## Trip probability within 100 attempts\n")
    rows = [
        [
            f"{p:.0%}",
            f"{trip_probability(p, OLD, runs=runs):.1%}",
            f"{trip_probability(p, NEW, runs=runs):.1%}",
        ]
        for p in rates
    ]
    print(table(rows, ["failure rate", "old defaults", "new defaults"]))
    print("\n## Calls answered (two deployments, 2,400 calls at 20/s over 2 minutes, deadline 10 s)\n")
    scenarios: dict[str, Upstream] = {
        "degraded 30 %": degraded(0.3),
        "degraded 40 %": degraded(0.4),
        "flapping (10 s dead every 30 s)": flapping(30.0, 10.0),
        "flapping (20 s dead every 60 s)": flapping(),
        "one dead, one healthy": dead_beside_healthy("a"),
    }
    spent = RetryBudget(ratio=0.0, burst=0.0)
    rows = []
    for label, upstream in scenarios.items():
        for config_label, config in (("old", OLD), ("new", NEW)):
            budget = OLD_BUDGET if config_label == "old" else RetryBudget()
            waits = config_label == "new"
            outcomes = [
                simulate(upstream, breaker=config, budget=budget, wait_for_healthy=waits, seed=seed)
                for seed in seeds
            ]
            shares = [o.share for o in outcomes]
            per_call = statistics.median(o.attempts / o.calls for o in outcomes)
            dead = (
                statistics.median(o.requests["a"] for o in outcomes) if label.startswith("one dead") else None
            )
            rows.append(
                [
                    label,
                    config_label,
                    f"{statistics.median(shares):.1%} ({min(shares):.1%}–{max(shares):.1%})",
                    f"{per_call:.2f}",
                    "" if dead is None else f"{dead:.0f}",
                ]
            )
    print(
        table(
            rows,
            [
                "upstream",
                "defaults",
                "answered: median (min-max)",
                "attempts/call",
                "requests to the dead one",
            ],
        )
    )
    print("\n## A spent budget never blocks a healthy fallback (primary dead, budget of zero)\n")
    outcomes = [simulate(dead_beside_healthy("a"), budget=spent, seed=s) for s in seeds]
    print(
        f"answered: {min(o.share for o in outcomes):.1%} (every seed); requests to the dead one: "
        f"{max(o.requests['a'] for o in outcomes)} at most"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
