"""Retry policies: whether to repeat a failed call on the same deployment, and when.

Pure: the decision depends only on the error, how many retries were already
made, whether the call streams, and the random source handed in. The router
owns the deadline: it falls back or gives up when a delay would overrun it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Literal

from attrs import evolve, field, frozen
from attrs.validators import optional

from ._errors import ErrorKind, ProviderError
from ._ranges import FRACTION, MULTIPLIER, NON_NEGATIVE, RETRIES

__all__ = [
    "GiveUp",
    "NamedPolicy",
    "PolicyLayer",
    "Retry",
    "RetryDecision",
    "RetryOverrides",
    "RetryPolicy",
    "backoff",
    "layered_policy",
]


Jitter = Literal["full", "symmetric", "none"]


def backoff(
    n: int,
    *,
    base: float,
    cap: float,
    multiplier: float = 2.0,
    jitter: Jitter = "none",
    ratio: float = 0.25,
    rng: random.Random | None = None,
    draw: float | None = None,
) -> float:
    """Exponential backoff, written once: `base * multiplier**n`, at most `cap`, with
    jitter "full" (uniform in [0, d], AWS's), "symmetric" (d ± ratio·d) or "none".
    Retries, breaker open times and polling under throttling all use it. `draw`: a
    uniform number in [0, 1) already drawn, instead of drawing from `rng` (a breaker's
    open time is computed by a Redis script from the same draw)."""
    try:
        delay = min(cap, base * multiplier ** max(n, 0))
    except OverflowError:  # after thousands of re-trips: the cap, not a crash
        delay = cap
    if jitter == "none":
        return delay
    uniform: Callable[[float, float], float]
    if draw is not None:
        fixed = draw

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * fixed  # what random.uniform does with its draw
    else:
        uniform = (rng or random).uniform
    if jitter == "full":
        return uniform(0.0, delay)
    spread = delay * ratio
    return max(0.0, min(cap, uniform(delay - spread, delay + spread)))


@frozen
class Retry:
    delay: float


@frozen
class GiveUp:
    reason: str


RetryDecision = Retry | GiveUp


def _kind_set(value: object) -> frozenset[ErrorKind] | None:
    if value is None:
        return None
    return frozenset(ErrorKind(v) for v in value)  # type: ignore[attr-defined]


def _status_set(value: object) -> frozenset[int] | None:
    if value is None:
        return None
    return frozenset(int(v) for v in value)  # type: ignore[attr-defined]


@frozen
class RetryPolicy:
    """Exponential backoff with jitter, restricted to what the gateway says is safe.

    `retry_on` limits the kinds retried (None: every retryable kind);
    `retry_statuses` further limits errors that carry an HTTP status (MeshAPI's
    SDK retries 502 but not 500). An error whose `retryable` is false is never
    repeated, and a retry never waits less than the server's `retry_after`.
    """

    max_retries: int = field(default=2, validator=RETRIES)
    base: float = field(default=0.5, validator=NON_NEGATIVE)
    cap: float = field(default=8.0, validator=NON_NEGATIVE)
    multiplier: float = field(default=2.0, validator=MULTIPLIER)
    # "full": uniform in [0, d] (AWS's full jitter); "symmetric": d ± jitter_ratio·d; "none".
    jitter: Literal["full", "symmetric", "none"] = "full"
    jitter_ratio: float = field(default=0.25, validator=FRACTION)
    retry_on: frozenset[ErrorKind] | None = field(default=None, converter=_kind_set)
    retry_statuses: frozenset[int] | None = field(default=None, converter=_status_set)
    # Some SDKs never repeat a streaming request (its first bytes may have been used).
    retry_streams: bool = True
    # With `retry_statuses` set: whether errors without a status (connection
    # failures, client timeouts) are retried too.
    retry_statusless: bool = True

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The delay before retry number `retry` (0 for the first), jitter applied."""
        return backoff(
            retry,
            base=self.base,
            cap=self.cap,
            multiplier=self.multiplier,
            jitter=self.jitter,
            ratio=self.jitter_ratio,
            rng=rng,
        )

    def decide(
        self,
        error: ProviderError,
        retries: int,
        *,
        streaming: bool = False,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Decide for `error` after `retries` retries on this deployment."""
        if not error.retryable:
            return GiveUp("not retryable")
        if streaming and not self.retry_streams:
            return GiveUp("the policy does not repeat streams")
        if retries >= self.max_retries:
            return GiveUp(f"{self.max_retries} retries used")
        if self.retry_on is not None and error.kind not in self.retry_on:
            return GiveUp(f"the policy does not retry {error.kind.value}")
        if self.retry_statuses is not None:
            if error.status is None:
                if not self.retry_statusless:
                    return GiveUp("the policy retries only by status")
            elif error.status not in self.retry_statuses:
                return GiveUp(f"the policy does not retry HTTP {error.status}")
        delay = self.backoff(retries, rng)
        if error.retry_after is not None and error.retry_after > delay:
            delay = error.retry_after
        return Retry(delay)


@frozen
class RetryOverrides:
    """Some fields of a `RetryPolicy`; the rest stay those of the policy it is applied to.

    What a configuration's `[retry]` table builds: `max_retries = 5` under a
    MeshAPI deployment keeps MeshAPI's statuses and its no-streams rule.
    """

    max_retries: int | None = field(default=None, validator=optional(RETRIES))
    base: float | None = field(default=None, validator=optional(NON_NEGATIVE))
    cap: float | None = field(default=None, validator=optional(NON_NEGATIVE))
    multiplier: float | None = field(default=None, validator=optional(MULTIPLIER))
    jitter: Literal["full", "symmetric", "none"] | None = None
    jitter_ratio: float | None = field(default=None, validator=optional(FRACTION))
    retry_on: frozenset[ErrorKind] | None = field(default=None, converter=_kind_set)
    retry_statuses: frozenset[int] | None = field(default=None, converter=_status_set)
    retry_streams: bool | None = None
    retry_statusless: bool | None = None

    def apply(self, policy: RetryPolicy) -> RetryPolicy:
        changes = {name: getattr(self, name) for name in _OVERRIDABLE if getattr(self, name) is not None}
        return evolve(policy, **changes)


_OVERRIDABLE = tuple(a.name for a in RetryOverrides.__attrs_attrs__)


@frozen
class NamedPolicy:
    """A retry policy by the name a plugin (or your code) registered it under
    (`turnout.retry_policies()`), then `overrides` applied to it.

    What `retry_policy = "patient"` in a configuration builds; a plain string
    in its place means the same. The name is looked up when the router is made.
    """

    name: str
    overrides: RetryOverrides | None = None
    # Where the configuration names it (`routes.chat.retry_policy`), for its errors.
    path: str | None = field(default=None, eq=False)


# One layer of retry settings: a policy (replaces), overrides (adjust), a name.
PolicyLayer = RetryPolicy | RetryOverrides | NamedPolicy | str | None


def layered_policy(
    base: RetryPolicy, layers: Iterable[PolicyLayer], named: Callable[[str, str], RetryPolicy]
) -> RetryPolicy:
    """The provider's policy, then the router's, then the deployment's: a policy
    (given, or `named(name, path)`) replaces what came before, overrides change
    only the fields they name. Pure: the names are looked up by the caller's `named`."""
    policy = base
    for layer in layers:
        if isinstance(layer, str):
            layer = NamedPolicy(layer)
        if isinstance(layer, NamedPolicy):
            policy = named(layer.name, layer.path or "retry_policy")
            if layer.overrides is not None:
                policy = layer.overrides.apply(policy)
        elif isinstance(layer, RetryPolicy):
            policy = layer
        elif isinstance(layer, RetryOverrides):
            policy = layer.apply(policy)
    return policy
