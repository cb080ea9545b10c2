"""Router state on Redis: several processes and machines act as one router.

`RedisStore` implements the `StateStore` protocol. Each deployment's
`DeploymentState` is a JSON value under `{prefix}dep:{name}`; the retry
budget's tokens are a number under `{prefix}budget` (`_redis_codec`). An
update is an optimistic transaction (WATCH, GET, apply the pure `fn`,
MULTI/SET/EXEC, again on a conflict), so the decisions stay in
`turnout._health` and two processes can never both take the last probe slot
of a half-open breaker.

Redis is never allowed to fail a call: when it cannot be reached the store
serves from a `MemoryStore` in this process (seeded with the last states it
saw), logs one warning on the `turnout.state` logger, and tries Redis again
at most every `retry_interval` seconds (`_redis_outage`). Once Redis answers,
sharing resumes (and that is logged once too); what was learned locally
meanwhile stays local. A connection that breaks (an idle one the server
closed, say) is replaced once before anything is declared.

All of that is decided once, in the flows of `_redis_flow`: generators that
yield Redis operations. This module only performs them, with redis-py's
blocking client (`_Blocking`) or its asyncio one (`_Async`).

`redis` (the `turnout[redis]` extra) is imported when a store is created;
each event loop gets its own asyncio client when it first uses the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._health import DeploymentState
from ._pump import Done, Pump, acapture, capture
from ._redis_codec import Layout, redact_url, secrets_of
from ._redis_flow import (
    Failures,
    Flow,
    MGet,
    Op,
    Reconnect,
    RedisCore,
    Sleep,
    TakeTurn,
    Unwatch,
    WatchGet,
    Write,
)
from ._redis_outage import Outage

if TYPE_CHECKING:
    import asyncio

    from ._flow import Claim, Claimed, Settle

__all__ = ["DEFAULT_URL", "RedisStore", "redact_url"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = ("redis", "rediss", "unix")

R = TypeVar("R")


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
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            **(client_options or {}),
        }
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            # Typed loosely: redis-py's own annotations and types-redis disagree.
            self._client: Any = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._options)
        except ValueError:
            raise ValueError("invalid Redis URL (not shown: it may hold a password)") from None
        self._core = RedisCore(
            Layout(prefix, ttl, budget_start),
            Outage(self._shown_url, secrets_of(url), retry_interval, budget_start),
            Failures.of_redis(),
            self._options.get("socket_timeout"),
        )
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._loops_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._shown_url!r}, prefix={self.prefix!r})"

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable and state is served from this process."""
        return not self._core.outage.down

    def key(self, name: str) -> str:
        """The Redis key holding deployment `name`'s state."""
        return self._core.layout.key(name)

    # -- sync ----------------------------------------------------------------

    def load(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        return self._drive(self._core.load(names))

    def claim(self, command: Claim) -> Claimed:
        return self._drive(self._core.claim(command))

    def settle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        return self._drive(self._core.settle(command))

    def _drive(self, flow: Flow[R]) -> R:
        """Perform the flow's operations with the blocking client; each command is
        bounded by the client's socket timeout."""
        shell = _Blocking(self._client, self._key_lock)
        pump = Pump(flow)
        try:
            op = pump.start()
            while not isinstance(op, Done):
                op = pump.resume(capture(shell.perform, op, Exception))
            return pump.result  # type: ignore[return-value]
        finally:
            flow.close()
            shell.close()

    def _key_lock(self, key: str) -> threading.Lock:
        lock = self._key_locks.get(key)
        if lock is None:
            lock = self._key_locks.setdefault(key, threading.Lock())
        return lock

    def close(self) -> None:
        """Close the connections to Redis (the store may still be used: they reopen)."""
        self._client.close()

    # -- async ---------------------------------------------------------------

    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        loop = self._loop()
        return await self._adrive(loop, self._core.load(names, loop.clock))

    async def aclaim(self, command: Claim) -> Claimed:
        loop = self._loop()
        return await self._adrive(loop, self._core.claim(command, loop.clock))

    async def asettle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        loop = self._loop()
        return await self._adrive(loop, self._core.settle(command, loop.clock))

    async def _adrive(self, loop: _LoopState, flow: Flow[R]) -> R:
        """Perform the flow's operations with this loop's asyncio client; each round of
        commands is bounded by the deadline the flow gives it."""
        shell = _Async(loop)
        pump = Pump(flow)
        try:
            op = pump.start()
            while not isinstance(op, Done):
                op = pump.resume(await acapture(shell.perform(op), Exception))
            return pump.result  # type: ignore[return-value]
        finally:
            flow.close()
            await shell.close()

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
            # round of commands is bounded as a whole instead (the flows' deadlines).
            options = {**self._options, "socket_timeout": None}
            client = redis.asyncio.Redis.from_url(self._url, retry=Retry(NoBackoff(), 0), **options)
            state = _LoopState(client, loop.time)
            with self._loops_lock:
                for old in [old for old in self._loops if old.is_closed()]:
                    del self._loops[old]
                self._loops[loop] = state
        return state

    async def aclose(self) -> None:
        """Close this event loop's connections to Redis (they reopen if the store is used again)."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._loops_lock:
            state = self._loops.pop(loop, None)
        if state is not None:
            await state.client.aclose()


class _Blocking:
    """Performs one flow's operations with redis-py's blocking client."""

    def __init__(self, client: Any, key_lock: Callable[[str], threading.Lock]) -> None:
        self.client = client
        self.key_lock = key_lock
        self.pipe: Any = None
        self.turns: list[threading.Lock] = []

    def perform(self, op: Op) -> Any:
        match op:
            case MGet(keys=keys):
                return self.client.mget(keys)
            case WatchGet(key=key):
                if self.pipe is None:
                    self.pipe = self.client.pipeline(transaction=True)
                self.pipe.watch(key)
                return self.pipe.get(key)
            case Write(key=key, value=value, ttl_ms=ttl_ms):
                self.pipe.multi()
                self.pipe.set(key, value, px=ttl_ms)
                return self.pipe.execute()
            case Unwatch():
                return self.pipe.reset()
            case Reconnect():
                self.close_pipeline()
                return self.client.connection_pool.disconnect(inuse_connections=False)
            case Sleep(seconds=seconds):
                return time.sleep(seconds)
            case TakeTurn(key=key):
                lock = self.key_lock(key)
                lock.acquire()
                return self.turns.append(lock)

    def close_pipeline(self) -> None:
        if self.pipe is not None:
            self.pipe.reset()  # UNWATCH if need be; the connection goes back to the pool
            self.pipe = None

    def close(self) -> None:
        try:
            self.close_pipeline()
        finally:
            for lock in reversed(self.turns):
                lock.release()


class _Async:
    """Performs one flow's operations with one event loop's asyncio client."""

    def __init__(self, loop: _LoopState) -> None:
        self.loop = loop
        self.client = loop.client
        self.pipe: Any = None
        self.turns: list[asyncio.Lock] = []

    async def perform(self, op: Op) -> Any:
        import asyncio  # not at the top: `import turnout.state` stays light

        if isinstance(op, Sleep):
            return await asyncio.sleep(op.seconds)
        if isinstance(op, TakeTurn):
            lock = self.loop.lock(op.key)
            await lock.acquire()
            return self.turns.append(lock)
        async with asyncio.timeout_at(op.deadline):
            match op:
                case MGet(keys=keys):
                    return await self.client.mget(keys)
                case WatchGet(key=key):
                    if self.pipe is None:
                        self.pipe = self.client.pipeline(transaction=True)
                    await self.pipe.watch(key)
                    return await self.pipe.get(key)
                case Write(key=key, value=value, ttl_ms=ttl_ms):
                    self.pipe.multi()
                    self.pipe.set(key, value, px=ttl_ms)
                    return await self.pipe.execute()
                case Unwatch():
                    return await self.pipe.reset()
                case Reconnect():
                    await self.close_pipeline()
                    return await self.client.connection_pool.disconnect(inuse_connections=False)

    async def close_pipeline(self) -> None:
        if self.pipe is not None:
            pipe, self.pipe = self.pipe, None
            await pipe.reset()

    async def close(self) -> None:
        try:
            await self.close_pipeline()
        finally:
            for lock in reversed(self.turns):
                lock.release()


class _LoopState:
    """One event loop's asyncio client and clock, and the locks its tasks take turns with."""

    def __init__(self, client: Any, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self.locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        lock = self.locks.get(key)
        if lock is None:
            import asyncio

            lock = self.locks[key] = asyncio.Lock()
        return lock
