"""Fake gateways over real HTTP: every installed provider's emulator on one loopback server.

    from turnout.fake import FakeGateways

    with FakeGateways(faults={"acme": {"errors": {"rate_limited": 0.2}}}, seed=7) as fake:
        fake.script("other", Fault(error="authentication"))   # the next response, exactly
        router = turnout.Router([turnout.Deployment("a", "acme", "x", api_key="key",
                                                    base_url=fake.base_url("acme"))])
        ...
        fake.requests("acme")                                  # how many requests it answered

Each provider is served under its own path prefix (`/acme/...`,
`/other/...`): the prefix is stripped and the rest of the path handed to the
provider's emulator, which answers exactly as its gateway does. Streams are
real chunked HTTP responses written chunk by chunk, and a `drop_after` fault
really cuts the connection mid-body (the terminating chunk never comes).

What goes wrong, and when, is set per provider:

- a fault profile (`FaultProfile`): error rates by name (a kind or the
  provider's own code), HTML error pages, malformed bodies, error frames and
  dropped connections in streams, latency, a slow first byte, `Retry-After`
  values. Rates are drawn from a random source seeded per provider, so a run
  is reproducible;
- a script: the next N responses' faults exactly (`script(...)`), consumed
  one per request before the profile is consulted;
- at runtime through the admin endpoints under `/_faults` (see docs/cli.md).

The pieces: `faults` (profiles, files, scripts: what goes wrong), `server`
(the HTTP server and its admin API), `wire` (writing replies, cutting
connections). Needs the `turnout[fake]` extra (uvicorn). Not imported by
`import turnout`.
"""

from .faults import FaultProfile, FaultsConfig, describe, fault_from_mapping, load_faults
from .server import ADMIN_PREFIX, FakeGateways, Served

__all__ = [
    "ADMIN_PREFIX",
    "FakeGateways",
    "FaultProfile",
    "FaultsConfig",
    "Served",
    "describe",
    "fault_from_mapping",
    "load_faults",
]
