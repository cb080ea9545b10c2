"""A tiny OpenAI-compatible gateway ("tiny"), its emulator and a router factory.

Used in-process by the tests and by `worker.py` in separate processes, so it
imports nothing but turnout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import turnout
from turnout import CodeRule, ErrorKind, ErrorTable, OpenAICompatible, RetryPolicy
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, OpenAIEmulator, mock_transport

CODES = {
    "invalid_key": CodeRule(ErrorKind.AUTHENTICATION, 401),
    "slow_down": CodeRule(ErrorKind.RATE_LIMITED, 429),
    "oops": CodeRule(ErrorKind.SERVER_ERROR, 500),
    "overloaded": CodeRule(ErrorKind.UNAVAILABLE, 503),
}
KIND_CODES = {rule.kind.value: code for code, rule in CODES.items()}
NO_RETRY = RetryPolicy(max_retries=0)


class Tiny(OpenAICompatible):
    name = "tiny"
    default_base_url = "https://tiny.test/v1"
    error_table = ErrorTable(codes=CODES)
    retry_policy = RetryPolicy(max_retries=2, base=0.001, cap=0.001, jitter="none")


class TinyEmulator(OpenAIEmulator):
    provider = "tiny"

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        code = KIND_CODES.get(error, error)
        status = CODES[code].status if code in CODES else 404
        headers: list[tuple[str, str]] = [("x-request-id", request_id or self.next_id())]
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        body = {"error": {"message": f"tiny says {code}", "type": "error", "code": code, "param": None}}
        return EmulatedResponse.json(status or 500, body, headers)

    def error_names(self) -> Sequence[str]:
        return list(CODES)


def plugins() -> turnout.Plugins:
    """Plugins holding only tiny: nothing installed is needed."""
    found = turnout.Plugins(entry_points=False)
    found.add_provider(Tiny())
    return found


def deployment(name: str) -> turnout.Deployment:
    """A tiny deployment on its own host, `<name>.test`."""
    return turnout.Deployment(
        name,
        "tiny",
        f"model-{name}",
        api_key=f"sk-tiny-{name}-0123456789",
        base_url=f"https://{name}.test/v1",
    )


def make_router(
    store: Any, failing: dict[str, str] | None = None, names: Sequence[str] = ("a", "b"), **kw: Any
) -> tuple[turnout.Router, list[str]]:
    """A router over tiny deployments; `failing` maps a host's deployment name to the
    error it always answers. Returns the router and the list of hosts it sent to."""
    failing = failing or {}
    hosts: list[str] = []

    def faults(request: EmulatedRequest) -> Fault | None:
        hosts.append(request.host)
        error = failing.get(request.host.removesuffix(".test"))
        return Fault(error=error) if error else None

    transport = mock_transport({f"{n}.test": TinyEmulator() for n in names}, faults)
    kw.setdefault("retry_policy", NO_RETRY)
    # These tests are about sharing a breaker, not its calibration: it trips after five.
    kw.setdefault("breaker", turnout.BreakerConfig(consecutive_failures=5))
    router = turnout.Router(
        [deployment(n) for n in names], plugins=plugins(), transport=transport, store=store, **kw
    )
    return router, hosts


def chat(router: turnout.Router) -> turnout.ChatResponse:
    return router.chat([{"role": "user", "content": "hello"}])


def outcomes(attempts: Sequence[turnout.Attempt]) -> list[tuple[str, str | None]]:
    return [(a.deployment, a.error.kind.value if a.error else None) for a in attempts]
