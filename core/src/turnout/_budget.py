"""The retry budget: how many retries a router may make, as a token bucket.

Its tokens live in the router's state store beside the deployments' states,
and are paid for in the `Claim` step (`turnout._state.claim`).
"""

from __future__ import annotations

from attrs import field, frozen

from ._ranges import NON_NEGATIVE

__all__ = ["RetryBudget"]


@frozen
class RetryBudget:
    """A token bucket bounding retries, as gRPC's retry throttling and Envoy's budget do.

    Every call adds `ratio` tokens (up to `burst`); every retry, and every
    fallback into a deployment that is itself failing, takes one; the first
    try of a healthy deployment never does. When upstreams fail broadly,
    attempts stay within about (1 + ratio) x calls + burst. The default ratio,
    0.5, is what an upstream failing 30 % of its answers needs to keep
    answering ~99 % of calls (docs/resilience.md); it caps a total outage at
    1.5 attempts per call.
    """

    ratio: float = field(default=0.5, validator=NON_NEGATIVE)
    burst: float = field(default=10.0, validator=NON_NEGATIVE)
