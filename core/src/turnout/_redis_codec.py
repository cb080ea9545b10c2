"""How router state is laid out in Redis: key names, values, expiry, and URLs shown.

Pure functions of data, shared by both halves of `RedisStore` (and by whatever
later applies the same records in a server-side script):

| key | value |
|---|---|
| `{prefix}dep:{name}` | a `DeploymentState` as compact JSON, fields at their default left out |
| `{prefix}budget` | the retry budget's tokens, `repr(float)` |

A value is kept `ttl` after its last write, or `ttl` past the latest moment it
still matters (a breaker reopening, a cooldown or rate-limit window ending),
whichever is later, and never longer than 30 days.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from attrs import field, frozen

from ._health import DeploymentState

if TYPE_CHECKING:
    import cattrs

__all__ = ["EMPTY", "Layout", "Record", "redact_url", "secrets_of"]

logger = logging.getLogger("turnout.state")

V = TypeVar("V")

EMPTY = DeploymentState()
# However far away a reset time a server announces, nothing is kept longer than this.
MAX_TTL = 30 * 24 * 3600.0


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


def _make_converter() -> cattrs.Converter:
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn

    converter = cattrs.Converter()
    # Defaults are left out: values stay small, and a field added later reads as its default.
    converter.register_unstructure_hook(
        DeploymentState,
        make_dict_unstructure_fn(DeploymentState, converter, _cattrs_omit_if_default=True),
    )
    return converter


@frozen
class Record(Generic[V]):
    """How one kind of value is read from and written to its key."""

    decode: Callable[[bytes | None], V]
    encode: Callable[[V], bytes]
    ttl_ms: Callable[[V], int]


@frozen
class Layout:
    """The keys, values and expiry of one store (one `prefix`)."""

    prefix: str
    ttl: float
    budget_start: float
    budget_key: str = field(init=False)
    state: Record[DeploymentState] = field(init=False)
    budget: Record[float] = field(init=False)
    _converter: Any = field(init=False, factory=_make_converter, repr=False)

    @budget_key.default
    def _budget_key(self) -> str:
        return f"{self.prefix}budget"

    @state.default
    def _state_record(self) -> Record[DeploymentState]:
        return Record(self.decode_state, self.encode_state, self.state_ttl_ms)

    @budget.default
    def _budget_record(self) -> Record[float]:
        return Record(self.decode_tokens, self.encode_tokens, self.tokens_ttl_ms)

    def key(self, name: str) -> str:
        """The key holding deployment `name`'s state."""
        return f"{self.prefix}dep:{name}"

    def decode_state(self, raw: bytes | None) -> DeploymentState:
        if raw is None:
            return EMPTY
        try:
            return self._converter.structure(json.loads(raw), DeploymentState)  # type: ignore[no-any-return]
        except Exception:  # a corrupt value, or one no version of turnout wrote: start afresh
            logger.debug("unreadable deployment state in Redis; treated as empty")
            return EMPTY

    def encode_state(self, state: DeploymentState) -> bytes:
        return json.dumps(self._converter.unstructure(state), separators=(",", ":")).encode()

    def state_ttl_ms(self, state: DeploymentState) -> int:
        """Kept `ttl` after the last write, or `ttl` after the latest moment it still matters."""
        latest = max(state.open_until, state.cooldown_until, state.exhausted_until, state.probe_until)
        return int(min(max(self.ttl, latest - time.time() + self.ttl), MAX_TTL) * 1000)

    def decode_tokens(self, raw: bytes | None) -> float:
        if raw is None:
            return self.budget_start
        try:
            return float(raw)
        except ValueError:
            return self.budget_start

    @staticmethod
    def encode_tokens(tokens: float) -> bytes:
        return repr(float(tokens)).encode()

    def tokens_ttl_ms(self, _: float) -> int:
        return int(self.ttl * 1000)
