"""Shared pieces of the meshapi tests: MeshAPI's documented table, typed here from
DESIGN.md § meshapi (not read from the plugin), deployments and fault scripts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import httpx

import turnout
from turnout.emulation import EmulatedRequest, Fault, mock_transport
from turnout_meshapi.emulator import MeshAPIEmulator
from turnout_meshapi.provider import MeshAPI

# code: (documented status, kind). parse_error and stream_interrupted have no status.
DOCUMENTED: Mapping[str, tuple[int | None, str]] = {
    "unauthorized": (401, "authentication"),
    "forbidden": (403, "permission_denied"),
    "not_found": (404, "not_found"),
    "model_not_found": (404, "model_not_found"),
    "spend_limit_exceeded": (402, "insufficient_credits"),
    "validation_error": (422, "validation"),
    "unprocessable_entity": (422, "validation"),
    "rate_limit_exceeded": (429, "rate_limited"),
    "upstream_error": (500, "upstream_error"),
    "gateway_timeout": (500, "timeout"),
    "internal_error": (500, "server_error"),
    "parse_error": (None, "parse_error"),
    "stream_interrupted": (None, "stream_interrupted"),
}

KEY = "rsk_01JTESTSECRETKEYVALUE0000000"
BACKUP_KEY = "rsk_01JBACKUPSECRETKEYVALUE00000"
MODEL = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]

# The plugin's own policy, with its retry decisions intact but millisecond waits.
FAST = attrs.evolve(MeshAPI.retry_policy, base=0.001, cap=0.001)


def deployment(name: str = "mesh", host: str | None = None, **kw: Any) -> turnout.Deployment:
    """A meshapi deployment on `https://<name>.test` (or `host`), with the fast policy."""
    kw.setdefault("api_key", KEY if name == "mesh" else BACKUP_KEY)
    kw.setdefault("retry_policy", FAST)
    kw.setdefault("base_url", f"https://{host or name + '.test'}")
    return turnout.Deployment(name, "meshapi", MODEL, **kw)


class Script:
    """A fault source: per host, the faults of its successive requests (then none),
    recording every request the emulators received."""

    def __init__(self, faults: Mapping[str, Iterable[Fault | None]] | None = None) -> None:
        self.faults = {host: list(items) for host, items in (faults or {}).items()}
        self.seen: list[EmulatedRequest] = []

    def __call__(self, request: EmulatedRequest) -> Fault | None:
        self.seen.append(request)
        queue = self.faults.get(request.headers.get("host", ""))
        return queue.pop(0) if queue else None

    def hosts(self) -> list[str]:
        return [r.headers.get("host", "") for r in self.seen]


def transport(script: Script, *hosts: str) -> httpx.MockTransport:
    names = hosts or ("mesh.test", "backup.test")
    return mock_transport({host: MeshAPIEmulator() for host in names}, script)
