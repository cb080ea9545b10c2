"""Error normalization throughput, per installed provider: `python bench/normbench.py SECONDS`.

For each provider `turnout.providers()` finds, the body is the one its own
emulator renders for a rate limit with a Retry-After (`render_error(
"rate_limited", retry_after=2)`); a provider without an emulator gets an
OpenAI envelope with a `Retry-After` header. The loop calls the public
`turnout.normalize_error(...)` (plugin lookup included) for about SECONDS of
CPU per provider, in rounds, and reports normalizations per CPU second. The
bench's own bare `OpenAICompatible` provider is measured too, through
`provider.normalize(...)`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

OPENAI_429 = {
    "status": 429,
    "headers": {"content-type": "application/json", "retry-after": "2", "x-request-id": "req_1"},
    "body": json.dumps(
        {
            "error": {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    ).encode(),
}
ROUNDS = 5


def _case(name: str, emulators: dict[str, Any]) -> tuple[dict[str, Any], str]:
    emulator = emulators.get(name)
    if emulator is not None:
        try:
            reply = emulator.render_error("rate_limited", retry_after=2.0)
        except Exception as exc:  # an emulator that cannot render it: say so, use the default
            return OPENAI_429, f"OpenAI envelope (emulator failed: {type(exc).__name__})"
        return {"status": reply.status, "headers": dict(reply.headers), "body": reply.body}, "its emulator"
    return OPENAI_429, "OpenAI envelope (no emulator)"


def _rate(call: Callable[[], Any], seconds: float) -> tuple[float, list[float]]:
    """Normalizations per CPU second: the median of ROUNDS rounds, and every round's."""
    call()
    batch = 1
    while True:  # size a batch to ~10 ms
        cpu0 = time.process_time()
        for _ in range(batch):
            call()
        if time.process_time() - cpu0 > 0.01:
            break
        batch *= 2
    rates = []
    for _ in range(ROUNDS):
        count, cpu0 = 0, time.process_time()
        while time.process_time() - cpu0 < seconds / ROUNDS:
            for _ in range(batch):
                call()
            count += batch
        rates.append(count / (time.process_time() - cpu0))
    return statistics.median(rates), rates


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    import turnout
    from contenders import loopback_plugins

    results: list[dict[str, Any]] = []
    try:
        infos = turnout.providers()
        emulators = dict(turnout.Plugins().emulators())
    except Exception as exc:  # a broken plugin: report it instead of failing the whole run
        print(json.dumps({"error": f"plugin discovery failed: {type(exc).__name__}: {exc}"}))
        return
    for name, info in sorted(infos.items()):
        case, source = _case(name, emulators)

        def call(name: str = name, case: dict[str, Any] = case) -> Any:
            return turnout.normalize_error(
                name, status=case["status"], headers=case["headers"], body=case["body"]
            )

        error = call()
        rate, rates = _rate(call, seconds)
        results.append(
            {
                "provider": name,
                "distribution": info.distribution,
                "source": source,
                "status": case["status"],
                "kind": error.kind.value,
                "retry_after": error.retry_after,
                "rate": rate,
                "rates": rates,
            }
        )
    bare = loopback_plugins().provider("loopback")
    error = bare.normalize(status=429, headers=OPENAI_429["headers"], body=OPENAI_429["body"])
    rate, rates = _rate(
        lambda: bare.normalize(status=429, headers=OPENAI_429["headers"], body=OPENAI_429["body"]), seconds
    )
    results.append(
        {
            "provider": "OpenAICompatible (bench, no table)",
            "distribution": None,
            "source": "OpenAI envelope, provider.normalize()",
            "status": 429,
            "kind": error.kind.value,
            "retry_after": error.retry_after,
            "rate": rate,
            "rates": rates,
        }
    )
    print(json.dumps({"results": results}))


def measure_normalization(seconds: float) -> dict[str, Any]:
    """Run this module in a fresh interpreter (the harness imports no library itself)."""
    import subprocess
    from pathlib import Path

    from harness import child_env

    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, str(here / "normbench.py"), str(seconds)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=here,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    reply: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


if __name__ == "__main__":
    main()
