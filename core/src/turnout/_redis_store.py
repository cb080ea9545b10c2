"""Router state on Redis: several processes and machines act as one router.

`RedisStore` implements the `StateStore` protocol. Each deployment's
`DeploymentState` is a JSON value under `{prefix}dep:{name}`; the retry
budget's tokens are a number under `{prefix}budget`. An update is an
optimistic transaction (WATCH, GET, apply the pure `fn`, MULTI/SET/EXEC,
again on a conflict), so the decisions stay in `turnout._health` and two
processes can never both take the last probe slot of a half-open breaker.

Redis is never allowed to fail a call: when it cannot be reached the store
serves from a `MemoryStore` in this process (seeded with the last states it
saw), logs one warning on the `turnout.state` logger, and tries Redis again
at most every `retry_interval` seconds. Once Redis answers, sharing resumes
(and that is logged once too); what was learned locally meanwhile stays local.

`redis` (the `turnout[redis]` extra) is imported when a store is created;
each event loop gets its own asyncio client when it first uses the store.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from attrs import evolve

from ._health import DeploymentState
from ._state import MemoryStore

if TYPE_CHECKING:
    import asyncio

    import cattrs

    from ._flow import BudgetFn, StateFn

__all__ = ["DEFAULT_URL", "RedisStore"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = ("redis", "rediss", "unix")

logger = logging.getLogger("turnout.state")

T = TypeVar("T")
V = TypeVar("V")

# How a call reaches its state: Redis as usual, Redis again after an outage, or memory.
_SHARED, _PROBE, _LOCAL = 0, 1, 2
# After this many conflicting transactions in a row, back off a little between tries.
_QUIET_CONFLICTS = 3
# A transaction that keeps losing this often is given up: the update is made locally.
_MAX_CONFLICTS = 1000

# The commands in one round of a transaction (WATCH, GET, MULTI/SET/EXEC): asyncio
# bounds the round as a whole, by this many socket timeouts.
_ROUND_TRIPS = 3
# However far away a reset time a server announces, nothing is kept longer than this.
_MAX_TTL = 30 * 24 * 3600.0

_EMPTY = DeploymentState()


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


def _secrets_of(url: str) -> tuple[str, ...]:
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


class RedisStore:
    """Router state in Redis, shared by every router that uses the same URL and prefix.

    ```python
    store = RedisStore("redis://:password@redis.internal:6379/0", prefix="turnout:")
    router = turnout.Router(deployments, store=store)
    ```

    `socket_timeout` and `connect_timeout` bound each Redis round trip (a
    state update adds a few of them to every call, so they are short);
    `retry_interval` is how long the store serves from memory after Redis
    failed before it tries Redis again; `ttl` is how long a value is kept
    after its last write (longer when a breaker, cooldown or rate-limit
    window ends later). `client_options` go to `redis.Redis.from_url` (TLS
    settings, say).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = "turnout:",
        *,
        budget_start: float = 10.0,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        retry_interval: float = 5.0,
        ttl: float = 3600.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in _SCHEMES:
            # The URL itself is not quoted: it may hold a password.
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        if not ttl > 0 or not retry_interval >= 0:
            raise ValueError("ttl must be positive and retry_interval not negative")
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ImportError("RedisStore needs the redis package: pip install 'turnout[redis]'") from exc
        self.budget_start = budget_start
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.ttl = ttl
        self._url = url
        self._shown_url = redact_url(url)
        self._secrets = _secrets_of(url)
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            **(client_options or {}),
        }
        self._budget_key = f"{prefix}budget"
        self._converter = _make_converter()
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._watch_error: type[Exception] = redis.WatchError
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            # Typed loosely: redis-py's own annotations and types-redis disagree.
            self._client: Any = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._options)
        except ValueError:
            raise ValueError("invalid Redis URL (not shown: it may hold a password)") from None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        # Outage handling: the mode switch, the local stand-in and what Redis last said.
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._local = MemoryStore(budget_start)
        self._seen: dict[str, DeploymentState] = {}
        self._seen_tokens: float | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self._shown_url!r}, prefix={self.prefix!r})"

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable and state is served from this process."""
        return not self._down

    # -- keys and values -----------------------------------------------------

    def key(self, name: str) -> str:
        """The Redis key holding deployment `name`'s state."""
        return f"{self.prefix}dep:{name}"

    def _decode(self, raw: bytes | None) -> DeploymentState:
        if raw is None:
            return _EMPTY
        try:
            return self._converter.structure(json.loads(raw), DeploymentState)
        except Exception:  # a corrupt value, or one no version of turnout wrote: start afresh
            logger.debug("unreadable deployment state in Redis; treated as empty")
            return _EMPTY

    def _encode(self, state: DeploymentState) -> bytes:
        return json.dumps(self._converter.unstructure(state), separators=(",", ":")).encode()

    def _ttl_ms(self, state: DeploymentState) -> int:
        """Kept `ttl` after the last write, or `ttl` after the latest moment it still matters."""
        latest = max(state.open_until, state.cooldown_until, state.exhausted_until, state.probe_until)
        return int(min(max(self.ttl, latest - time.time() + self.ttl), _MAX_TTL) * 1000)

    def _decode_tokens(self, raw: bytes | None) -> float:
        if raw is None:
            return self.budget_start
        try:
            return float(raw)
        except ValueError:
            return self.budget_start

    @staticmethod
    def _encode_tokens(tokens: float) -> bytes:
        return repr(float(tokens)).encode()

    def _tokens_ttl(self, _: float) -> int:
        return int(self.ttl * 1000)

    # -- outage handling -----------------------------------------------------

    def _mode(self) -> int:
        return _SHARED if not self._down else self._outage_mode()

    def _outage_mode(self) -> int:
        now = time.monotonic()
        with self._lock:
            if not self._down:  # another call found Redis back meanwhile
                return _SHARED
            if now >= self._retry_at:
                # This call tries Redis; the others keep to memory until the next interval.
                self._retry_at = now + self.retry_interval
                return _PROBE
        return _LOCAL

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_interval
            if self._down:
                return
            self._down = True
            self._local = self._seeded()
        logger.warning(
            "Redis state store %s unavailable (%s); router state is kept in this process "
            "meanwhile, and Redis is tried every %gs",
            self._shown_url,
            self._describe(exc),
            self.retry_interval,
        )

    def _resumed(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        logger.info("Redis state store %s answers again; router state is shared again", self._shown_url)

    def _seeded(self) -> MemoryStore:
        """A local store starting from the states Redis last gave: open breakers stay open.
        Calls in flight elsewhere are not ours to count."""
        local = MemoryStore(self.budget_start)
        for name, state in list(self._seen.items()):
            local.update(name, _replace_with(evolve(state, inflight=0, probes=0)))
        tokens = self._seen_tokens
        if tokens is not None:
            local.update_budget(_replace_with(tokens))
        return local

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    # -- sync ----------------------------------------------------------------

    def load(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        if not names:
            return {}
        mode = self._mode()
        if mode != _LOCAL:
            try:
                raws = self._client.mget([self.key(name) for name in names])
            except self._errors as exc:
                self._failed(exc)
            else:
                if mode == _PROBE:
                    self._resumed()
                states = {name: self._decode(raw) for name, raw in zip(names, raws, strict=True)}
                self._seen.update(states)
                return states
        return self._local.load(names)

    def update(self, name: str, fn: StateFn) -> Any:
        done = self._update(self.key(name), self._decode, self._encode, self._ttl_ms, fn)
        if done is None:
            return self._local.update(name, fn)
        new, result = done
        self._seen[name] = new
        return result

    def update_budget(self, fn: BudgetFn) -> Any:
        done = self._update(self._budget_key, self._decode_tokens, self._encode_tokens, self._tokens_ttl, fn)
        if done is None:
            return self._local.update_budget(fn)
        self._seen_tokens, result = done
        return result

    def _update(
        self,
        key: str,
        decode: Callable[[bytes | None], V],
        encode: Callable[[V], bytes],
        ttl: Callable[[V], int],
        fn: Callable[[V], tuple[V, Any]],
    ) -> tuple[V, Any] | None:
        """The update, made in Redis; None when it is to be made locally instead."""
        mode = self._mode()
        if mode == _LOCAL:
            return None
        # The calls of this process take turns on a key, so optimistic transactions
        # only ever race other processes' (not dozens of this one's threads).
        with self._key_lock(key):
            if mode == _SHARED and self._down:  # Redis failed while this call waited
                return None
            try:
                done = self._transact(key, decode, encode, ttl, fn)
            except self._errors as exc:
                self._failed(exc)
                return None
        if done is not None and mode == _PROBE:
            self._resumed()
        return done

    def _key_lock(self, key: str) -> threading.Lock:
        lock = self._key_locks.get(key)
        if lock is None:
            lock = self._key_locks.setdefault(key, threading.Lock())
        return lock

    def _transact(
        self,
        key: str,
        decode: Callable[[bytes | None], V],
        encode: Callable[[V], bytes],
        ttl: Callable[[V], int],
        fn: Callable[[V], tuple[V, Any]],
    ) -> tuple[V, Any] | None:
        """WATCH, GET, apply `fn`, MULTI/SET/EXEC; again while another writer got there
        first. None when it kept losing (the caller then updates locally)."""
        with self._client.pipeline(transaction=True) as pipe:
            for conflicts in range(_MAX_CONFLICTS):
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = decode(raw)
                    new, result = fn(current)
                    if raw is not None and new == current:
                        pipe.reset()  # nothing to write; UNWATCH
                        return new, result
                    pipe.multi()
                    pipe.set(key, encode(new), px=ttl(new))
                    pipe.execute()
                    return new, result
                except self._watch_error as conflict:
                    self._raise_if_broken(conflict)
                    if conflicts >= _QUIET_CONFLICTS:
                        time.sleep(random.uniform(0.0, 0.0005 * min(conflicts, 20)))
        return None

    def _raise_if_broken(self, conflict: BaseException) -> None:
        """redis-py reports a connection lost while watching as a WatchError: that is an
        outage, not another writer, and is not retried."""
        cause = conflict.__context__
        if isinstance(cause, self._errors) and not isinstance(cause, self._watch_error):
            raise cause

    def close(self) -> None:
        """Close the connections to Redis (the store may still be used: they reopen)."""
        self._client.close()

    # -- async ---------------------------------------------------------------

    def _loop(self) -> _LoopState:
        """This event loop's client and locks: asyncio connections belong to the loop
        that opened them."""
        import asyncio

        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No per-command socket timeout (redis-py's costs a task per command): each
            # round of a transaction is bounded as a whole instead (`_bounded`).
            options = {**self._options, "socket_timeout": None}
            client = redis.asyncio.Redis.from_url(self._url, retry=Retry(NoBackoff(), 0), **options)
            state = _LoopState(client)
            with self._lock:
                for old in [old for old in self._loops if old.is_closed()]:
                    del self._loops[old]
                self._loops[loop] = state
        return state

    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        if not names:
            return {}
        mode = self._mode()
        if mode != _LOCAL:
            try:
                client = self._loop().client
                async with self._bounded():
                    raws = await client.mget([self.key(name) for name in names])
            except self._errors as exc:
                self._failed(exc)
            else:
                if mode == _PROBE:
                    self._resumed()
                states = {name: self._decode(raw) for name, raw in zip(names, raws, strict=True)}
                self._seen.update(states)
                return states
        return self._local.load(names)

    async def aupdate(self, name: str, fn: StateFn) -> Any:
        done = await self._aupdate(self.key(name), self._decode, self._encode, self._ttl_ms, fn)
        if done is None:
            return self._local.update(name, fn)
        new, result = done
        self._seen[name] = new
        return result

    async def aupdate_budget(self, fn: BudgetFn) -> Any:
        done = await self._aupdate(
            self._budget_key, self._decode_tokens, self._encode_tokens, self._tokens_ttl, fn
        )
        if done is None:
            return self._local.update_budget(fn)
        self._seen_tokens, result = done
        return result

    async def _aupdate(
        self,
        key: str,
        decode: Callable[[bytes | None], V],
        encode: Callable[[V], bytes],
        ttl: Callable[[V], int],
        fn: Callable[[V], tuple[V, Any]],
    ) -> tuple[V, Any] | None:
        mode = self._mode()
        if mode == _LOCAL:
            return None
        loop = self._loop()
        async with loop.lock(key):
            if mode == _SHARED and self._down:
                return None
            try:
                done = await self._atransact(loop.client, key, decode, encode, ttl, fn)
            except self._errors as exc:
                self._failed(exc)
                return None
        if done is not None and mode == _PROBE:
            self._resumed()
        return done

    async def _atransact(
        self,
        client: Any,
        key: str,
        decode: Callable[[bytes | None], V],
        encode: Callable[[V], bytes],
        ttl: Callable[[V], int],
        fn: Callable[[V], tuple[V, Any]],
    ) -> tuple[V, Any] | None:
        async with client.pipeline(transaction=True) as pipe:
            for conflicts in range(_MAX_CONFLICTS):
                try:
                    async with self._bounded():
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        current = decode(raw)
                        new, result = fn(current)
                        if raw is not None and new == current:
                            await pipe.reset()  # nothing to write; UNWATCH
                            return new, result
                        pipe.multi()
                        pipe.set(key, encode(new), px=ttl(new))
                        await pipe.execute()
                        return new, result
                except self._watch_error as conflict:
                    self._raise_if_broken(conflict)
                    if conflicts >= _QUIET_CONFLICTS:
                        await _asleep(random.uniform(0.0, 0.0005 * min(conflicts, 20)))
        return None

    def _bounded(self) -> AbstractAsyncContextManager[Any]:
        """A time limit for one round of Redis commands (TimeoutError is an outage)."""
        import asyncio

        seconds = self._options.get("socket_timeout")
        return asyncio.timeout(None if seconds is None else _ROUND_TRIPS * seconds)

    async def aclose(self) -> None:
        """Close this event loop's connections to Redis (they reopen if the store is used again)."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.pop(loop, None)
        if state is not None:
            await state.client.aclose()


class _LoopState:
    """One event loop's asyncio client, and the locks its tasks take turns with."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        lock = self.locks.get(key)
        if lock is None:
            import asyncio

            lock = self.locks[key] = asyncio.Lock()
        return lock


async def _asleep(seconds: float) -> None:
    import asyncio  # not at the top: `import turnout.state` stays light

    await asyncio.sleep(seconds)


def _replace_with(value: T) -> Callable[[Any], tuple[T, None]]:
    return lambda _: (value, None)
