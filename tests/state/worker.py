"""One router process for the multi-process tests: `python worker.py '<json job>'`.

The job names the Redis URL and key prefix, which deployments fail and how,
how many calls to make and the budget; the worker prints one JSON line: each
call's attempts (or its error) and the hosts it sent requests to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(job: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    import tiny

    import turnout
    from turnout.state import RedisStore, RetryBudget

    store = RedisStore(job["url"], prefix=job["prefix"], budget_start=job.get("budget_start", 10.0))
    kw: dict[str, Any] = {}
    if "budget" in job:
        kw["budget"] = RetryBudget(**job["budget"])
    if "retry" in job:
        kw["retry_policy"] = turnout.RetryPolicy(**job["retry"])
    if "breaker" in job:
        kw["breaker"] = turnout._health.BreakerConfig(**job["breaker"])
    router, hosts = tiny.make_router(store, job.get("failing", {}), job.get("names", ("a", "b")), **kw)
    calls: list[Any] = []
    for _ in range(job.get("calls", 1)):
        try:
            response = tiny.chat(router)
        except turnout.TurnoutError as error:
            attempts = getattr(error, "attempts", ())
            calls.append({"error": type(error).__name__, "attempts": tiny.outcomes(attempts)})
        else:
            calls.append({"attempts": tiny.outcomes(response.attempts)})
    health = {name: h.status for name, h in router.health().items()}
    router.close()
    store.close()
    return {"calls": calls, "hosts": hosts, "health": health, "shared": store.shared}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
