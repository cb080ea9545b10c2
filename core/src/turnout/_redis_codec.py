"""How router state is laid out in Redis: keys, values, the scripts' arguments and
replies, and URLs shown. Pure functions of data (no I/O).

| key | value |
|---|---|
| `{prefix}dep:{name}` | a `DeploymentState` as compact JSON, fields at their default left out |
| `{prefix}budget` | the retry budget's tokens, a number |
| `{prefix}ops:{store}` | one store's journal (a hash; see `turnout._redis_lua`) |

On a Redis Cluster the prefix is a hash tag (`{turnout:}dep:a`, unless it holds
one already), so that every key of one prefix lives in one slot: a claim
reads several deployments and the budget in one script, and a script may
only touch keys of one slot.

A record is read strictly: `decode_state` takes a JSON object whose known
fields have their types (unknown fields are ignored, missing ones take their
defaults); anything else reads as the empty state. The Lua `decode` in
`turnout._redis_lua` accepts exactly the same, and tests check that they agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from attrs import field, frozen

from ._flow import Claimed
from ._health import DeploymentState

if TYPE_CHECKING:
    from ._flow import Claim, Settle

__all__ = [
    "COUNT_LIMIT",
    "EMPTY",
    "MAX_TTL",
    "Layout",
    "claim_args",
    "claimed_of",
    "decode_state",
    "decode_tokens",
    "encode_state",
    "redact_url",
    "secrets_of",
    "settle_args",
]

EMPTY = DeploymentState()
# However far away a reset time a server announces, nothing is kept longer than this.
MAX_TTL = 30 * 24 * 3600.0
# Counts (in flight, probes, trips, consecutive failures) are integers below this.
COUNT_LIMIT = 2**31


def redact_url(url: str) -> str:
    """The URL with its password (and a token-only user) replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid Redis URL>"
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    user = parts.username or ""
    # `redis://TOKEN@host`: a lone user is how some services pass a password.
    auth = "***" if parts.password is None else f"{user}:***" if user else ":***"
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


def secrets_of(url: str) -> tuple[str, ...]:
    """What `redact_url` hides, to be masked wherever else the URL's parts may show
    (a connection error's text, say)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = [s for s in (parts.password, parts.username if parts.password is None else None) if s]
    return tuple(found)


# -- records -------------------------------------------------------------------------


class _Bad(Exception):
    """A field that does not have its type: the record is unreadable."""


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad
    if isinstance(value, float) and not (math.isfinite(value) and value == math.floor(value)):
        raise _Bad
    if not 0 <= value < COUNT_LIMIT:
        raise _Bad
    return int(value)


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any double: Lua reads it as infinity
        raise _Bad from None
    if not math.isfinite(number):
        raise _Bad
    return number


def _latency(value: Any) -> float | None:
    return None if value is None else _time(value)


def _status(value: Any) -> str:
    if value not in ("closed", "open", "half_open"):
        raise _Bad
    return str(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad
    return value


def _list_of(kind: type) -> Callable[[Any], tuple[Any, ...]]:
    def check(value: Any) -> tuple[Any, ...]:
        # Lua cannot tell `{}` from `[]`: an empty object is an empty list on both sides.
        if isinstance(value, dict) and not value:
            return ()
        if not isinstance(value, list) or not all(type(item) is kind for item in value):
            raise _Bad
        return tuple(value)

    return check


# DeploymentState's fields in order, with what each accepts (as the Lua FIELDS table).
FIELDS: dict[str, Callable[[Any], Any]] = {
    "status": _status,
    "consecutive": _count,
    "window": _list_of(bool),
    "open_until": _time,
    "trips": _count,
    "probes": _count,
    "probe_until": _time,
    "cooldown_until": _time,
    "cooldown_reason": _text,
    "exhausted_until": _time,
    "inflight": _count,
    "latency": _latency,
    "errors": _list_of(str),
}


def decode_state(raw: bytes | str | None) -> DeploymentState:
    """A record as stored (or as a script returns it); the empty state when it is
    missing, corrupt or not a record at all."""
    if raw is None:
        return EMPTY
    try:
        data = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
        if not isinstance(data, dict):
            return EMPTY
        return DeploymentState(**{name: check(data[name]) for name, check in FIELDS.items() if name in data})
    except (ValueError, RecursionError, _Bad):
        return EMPTY


def encode_state(state: DeploymentState) -> bytes:
    """A record as turnout writes it (the scripts write the same fields, numbers in
    their shortest exact form)."""
    fields = {
        name: list(value) if isinstance(value, tuple) else value
        for name in FIELDS
        if (value := getattr(state, name)) != getattr(EMPTY, name)
    }
    return json.dumps(fields, separators=(",", ":")).encode()


_TOKEN_CHARACTERS = frozenset("0123456789.eE+-")


def decode_tokens(raw: bytes | str | None, start: float) -> float:
    """The budget's tokens as stored; `start` when missing or unreadable."""
    if raw is None:
        return start
    text = raw if isinstance(raw, str) else raw.decode("latin-1")
    if not text or not _TOKEN_CHARACTERS.issuperset(text):
        return start
    try:
        tokens = float(text)
    except ValueError:
        return start
    return tokens if math.isfinite(tokens) else start


# -- keys ---------------------------------------------------------------------------


def _has_tag(prefix: str) -> bool:
    """Whether keys starting with `prefix` hash by a tag in it (Redis Cluster's rule:
    from the first `{` to the first `}` after it, when something lies between)."""
    opening = prefix.find("{")
    return opening >= 0 and prefix.find("}", opening + 1) > opening + 1


@frozen
class Layout:
    """The keys and expiry of one store: its `prefix`, hash-tagged when `tagged` (a
    cluster) unless it holds a tag already."""

    prefix: str
    ttl: float
    budget_start: float
    tagged: bool = False
    base: str = field(init=False)
    budget_key: str = field(init=False)

    @base.default
    def _base(self) -> str:
        return f"{{{self.prefix}}}" if self.tagged and not _has_tag(self.prefix) else self.prefix

    @budget_key.default
    def _budget_key(self) -> str:
        return f"{self.base}budget"

    def key(self, name: str) -> str:
        """The key holding deployment `name`'s state."""
        return f"{self.base}dep:{name}"

    def journal(self, store: str) -> str:
        """The key of store `store`'s journal."""
        return f"{self.base}ops:{store}"


# -- the scripts' arguments and replies ---------------------------------------------


def _number(value: float) -> str:
    """A number as the scripts read it back exactly."""
    return repr(float(value))


def _optional(value: float | None) -> str:
    return "" if value is None else _number(value)


def claim_args(
    layout: Layout, journal: str, command: Claim, order: Sequence[str], op: int, now: float
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """CLAIM's keys and arguments for `command`, its candidates in `order`."""
    index = {name: i for i, name in enumerate(command.names, 1)}
    budget, breaker = command.budget, command.breaker
    keys = (journal, layout.budget_key, *(layout.key(name) for name in command.names))
    args = (
        str(op),
        _number(now),
        _number(layout.ttl),
        _number(layout.budget_start),
        _number(command.at),
        "1" if command.deposit else "0",
        _number(budget.ratio),
        _number(budget.burst),
        command.spend,
        str(breaker.probes),
        _number(breaker.probe_timeout),
        *(str(index[name]) for name in order),
    )
    return keys, args


def claimed_of(reply: Sequence[Any], names: Sequence[str], order: tuple[str, ...]) -> tuple[float, Claimed]:
    """What CLAIM replied: the budget's tokens after it, and the `Claimed`."""
    index = int(reply[0])
    states = {name: decode_state(raw) for name, raw in zip(names, reply[4:], strict=True)}
    if not index:
        return float(reply[2]), Claimed(None, states, spent=int(reply[1]) == 1, candidates=order)
    before = decode_state(reply[3])
    return float(reply[2]), Claimed(names[index - 1], states, before, candidates=order)


def settle_args(
    layout: Layout, journal: str, command: Settle, op: int, now: float
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SETTLE's keys and arguments for `command`."""
    breaker, outcome = command.breaker, command.outcome
    return (journal, layout.key(command.name)), (
        str(op),
        _number(now),
        _number(layout.ttl),
        str(breaker.consecutive_failures),
        _number(breaker.failure_rate),
        str(breaker.window),
        str(breaker.min_calls),
        _number(breaker.open_for),
        _number(breaker.max_open),
        _number(breaker.jitter),
        _number(breaker.ewma_alpha),
        outcome.kind,
        _number(outcome.at),
        _optional(outcome.latency),
        outcome.error,
        "1" if outcome.health_failure else "0",
        _number(outcome.cooldown),
        "1" if outcome.rate_limited else "0",
        _optional(outcome.retry_after),
        _number(outcome.draw),
        _number(outcome.exhausted_until),
    )


def states_of(reply: Sequence[Any], names: Sequence[str]) -> dict[str, DeploymentState]:
    """What LOAD replied."""
    return {name: decode_state(raw) for name, raw in zip(names, reply, strict=True)}


def known(seen: Mapping[str, DeploymentState], names: Sequence[str]) -> dict[str, DeploymentState]:
    """The states of `names` as last read (empty where never read)."""
    return {name: seen.get(name, EMPTY) for name in names}
