"""Router state on Redis: several processes and machines act as one router.

`RedisStore` implements the `StateStore` protocol. Each deployment's
`DeploymentState` is a JSON value under `{prefix}dep:{name}`; the retry
budget's tokens are a number under `{prefix}budget` (`_redis_codec`). Each of
a call's steps is one server-side script, one round trip (`_redis_lua`): a
claim reads every deployment of the route and the budget and takes its place
atomically, a settle applies an outcome, and two processes can never both take
the last probe slot of a half-open breaker.

Redis is never allowed to fail a call, nor to cost it its deadline: each round
trip is bounded by the store's budget (`socket_timeout`) and a claim by the
time left in the call too. When Redis cannot be reached, or is slower than its
budget, the store serves from a `MemoryStore` in this process (seeded with the
last states it saw), logs one warning on the `turnout.state` logger, and tries
Redis again at most every `retry_interval` seconds (`_redis_outage`). Once
Redis answers, sharing resumes (and that is logged once too); what was learned
locally meanwhile stays local. A connection that breaks (an idle one the
server closed, say) is replaced once before anything is declared.

All of that is decided once, in the flows of `_redis_flow`: generators that
yield Redis operations. This module only performs them, with redis-py's
blocking client or its asyncio one, on one server or on a Redis Cluster.

`redis` (the `turnout[redis]` extra) is imported when a store is created;
each event loop gets its own asyncio client when it first uses the store.
"""

from __future__ import annotations

import inspect
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._health import DeploymentState
from ._pump import Done, Pump, acapture, capture
from ._redis_codec import Layout, redact_url, secrets_of
from ._redis_flow import Eval, Failures, Flow, Op, Reconnect, RedisCore
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

    Each step of a call (a claim before an attempt, a settle after it) is one
    round trip, bounded by `socket_timeout` (a Redis slower than that counts as
    down); opening a connection is bounded by `connect_timeout`.
    `retry_interval` is how long the store serves from memory after Redis
    failed before it tries Redis again; `ttl` is how long a value is kept
    after its last write (longer when a breaker, cooldown or rate-limit window
    ends later). `cluster=True` talks to a Redis Cluster (the URL names one of
    its nodes). `client_options` go to redis-py's `from_url` (TLS settings, say).
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
        cluster: bool = False,
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
        self.cluster = cluster
        self._url = url
        self._shown_url = redact_url(url)
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            **_quiet(redis.Redis),
            **(client_options or {}),
        }
        # Opening a connection: the connect, then the handshake's round trips (AUTH...).
        self._connect_budget = (connect_timeout or 0.0) + (socket_timeout or 0.0)
        try:
            self._performer = _blocking(redis, url, cluster, self._options)
        except ValueError:
            raise ValueError("invalid Redis URL (not shown: it may hold a password)") from None
        layout = Layout(prefix, ttl, budget_start, tagged=cluster)
        self._core = RedisCore(
            layout,
            Outage(self._shown_url, secrets_of(url), retry_interval, budget_start),
            Failures.of_redis(),
            socket_timeout,
            layout.journal(secrets.token_hex(6)),
        )
        self._loops: dict[asyncio.AbstractEventLoop, _Async | _AsyncCluster] = {}
        self._loops_lock = threading.Lock()

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

    def claim(self, command: Claim, within: float | None = None) -> Claimed:
        return self._drive(self._core.claim(command, within))

    def settle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        return self._drive(self._core.settle(command))

    def _drive(self, flow: Flow[R]) -> R:
        """Perform the flow's operations with the blocking client."""
        perform = self._performer.perform
        pump = Pump(flow)
        try:
            op = pump.start()
            while not isinstance(op, Done):
                op = pump.resume(capture(perform, op, Exception))
            return pump.result  # type: ignore[return-value]
        finally:
            flow.close()

    def close(self) -> None:
        """Close the connections to Redis (the store may still be used: they reopen)."""
        self._performer.close()

    # -- async ---------------------------------------------------------------

    async def aload(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        return await self._adrive(self._core.load(names))

    async def aclaim(self, command: Claim, within: float | None = None) -> Claimed:
        return await self._adrive(self._core.claim(command, within))

    async def asettle(self, command: Settle) -> tuple[DeploymentState, DeploymentState]:
        return await self._adrive(self._core.settle(command))

    async def _adrive(self, flow: Flow[R]) -> R:
        """Perform the flow's operations with this event loop's asyncio client."""
        perform = self._loop().perform
        pump = Pump(flow)
        try:
            op = pump.start()
            while not isinstance(op, Done):
                op = pump.resume(await acapture(perform(op), Exception))
            return pump.result  # type: ignore[return-value]
        finally:
            flow.close()

    def _loop(self) -> _Async | _AsyncCluster:
        """This event loop's performer: asyncio connections belong to the loop that
        opened them."""
        import asyncio

        loop = asyncio.get_running_loop()
        performer = self._loops.get(loop)
        if performer is None:
            import redis

            # No per-command socket timeout (redis-py's costs a task per command): each
            # round trip is bounded as a whole instead.
            options = {**self._options, "socket_timeout": None}
            performer = _asynchronous(redis, self._url, self.cluster, options, self._connect_budget)
            with self._loops_lock:
                for old in [old for old in self._loops if old.is_closed()]:
                    del self._loops[old]
                self._loops[loop] = performer
        return performer

    async def aclose(self) -> None:
        """Close this event loop's connections to Redis (they reopen if the store is used again)."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._loops_lock:
            performer = self._loops.pop(loop, None)
        if performer is not None:
            await performer.client.aclose()


def _quiet(client: Any) -> dict[str, Any]:
    """Options that spare each new connection redis-py's CLIENT SETINFO round trips
    (two more round trips before the first command, on a slow Redis)."""
    if "driver_info" in inspect.signature(client).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def _unnamed(get_connection: Callable[..., Any]) -> tuple[str, ...]:
    """The arguments a pool's `get_connection` needs (a command name, in redis-py 5)."""
    parameter = inspect.signature(get_connection).parameters.get("command_name")
    return ("EVALSHA",) if parameter is not None and parameter.default is inspect.Parameter.empty else ()


def _blocking(redis: Any, url: str, cluster: bool, options: dict[str, Any]) -> _Blocking | _BlockingCluster:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Typed loosely: redis-py's own annotations and types-redis disagree.
    if cluster:
        from redis.cluster import RedisCluster
        from redis.connection import parse_url

        parse_url(url)  # a bad URL is the caller's mistake, now; an unreachable cluster is not
        return _BlockingCluster(lambda: RedisCluster.from_url(url, retry=Retry(NoBackoff(), 0), **options))
    return _Blocking(redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options), redis.TimeoutError)


def _asynchronous(
    redis: Any, url: str, cluster: bool, options: dict[str, Any], connect_budget: float
) -> _Async | _AsyncCluster:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client: Any
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        client = RedisCluster.from_url(url, retry=Retry(NoBackoff(), 0), **options)  # type: ignore[arg-type]
        return _AsyncCluster(client, connect_budget)
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    return _Async(client, connect_budget, redis.ResponseError)


class _Blocking:
    """Performs the operations on one server with redis-py's blocking client, a
    connection of its pool at a time, so that a round trip has its own time limit."""

    def __init__(self, client: Any, timeout_error: type[Exception]) -> None:
        self.client = client
        self.pool = client.connection_pool
        self.timeout_error = timeout_error
        self.named = _unnamed(self.pool.get_connection)

    def close(self) -> None:
        self.client.close()

    def perform(self, op: Op) -> Any:
        if type(op) is Reconnect:
            return self.pool.disconnect(inuse_connections=False)
        assert type(op) is Eval
        connection = self.pool.get_connection(*self.named)
        try:
            connection.send_command(*op.command())
            if op.timeout is not None and not connection.can_read(timeout=op.timeout):
                connection.disconnect()  # its reply, if it comes, is nobody's
                raise self.timeout_error(f"no reply within {op.timeout:.3g}s")
            return connection.read_response()
        finally:
            self.pool.release(connection)


class _BlockingCluster:
    """Performs the operations on a Redis Cluster: redis-py's cluster client finds the
    slot's node (and replaces a broken connection itself); each read is bounded by the
    client's socket timeout. The client is made at the first operation (it reaches the
    cluster as it is made, and a cluster that is down is an outage, not an error)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.made: Any = None
        self.lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self.lock:
            if self.made is None:
                self.made = self.make()
            return self.made

    def perform(self, op: Op) -> Any:
        if type(op) is Reconnect:
            return None
        assert type(op) is Eval
        return self.client.execute_command(*op.command())

    def close(self) -> None:
        with self.lock:
            made, self.made = self.made, None
        if made is not None:
            made.close()


class _Async:
    """Performs the operations on one server with one event loop's asyncio client."""

    def __init__(self, client: Any, connect_budget: float, response_error: type[Exception]) -> None:
        self.client = client
        self.pool = client.connection_pool
        self.connect_budget = connect_budget
        self.response_error = response_error
        self.named = _unnamed(self.pool.get_connection)

    async def perform(self, op: Op) -> Any:
        import asyncio  # not at the top: `import turnout.state` stays light

        if type(op) is Reconnect:
            return await self.pool.disconnect(inuse_connections=False)
        assert type(op) is Eval
        async with asyncio.timeout(self.connect_budget):
            connection = await self.pool.get_connection(*self.named)
        try:
            async with asyncio.timeout(op.timeout):
                await connection.send_command(*op.command())
                return await connection.read_response()
        except self.response_error:
            raise  # an error reply: the connection is fine
        except BaseException:
            await connection.disconnect(nowait=True)  # its reply, if it comes, is nobody's
            raise
        finally:
            await self.pool.release(connection)


class _AsyncCluster:
    """Performs the operations on a Redis Cluster with one event loop's asyncio client."""

    def __init__(self, client: Any, connect_budget: float) -> None:
        self.client = client
        self.connect_budget = connect_budget

    async def perform(self, op: Op) -> Any:
        import asyncio

        if type(op) is Reconnect:
            return None
        assert type(op) is Eval
        async with asyncio.timeout(None if op.timeout is None else op.timeout + self.connect_budget):
            return await self.client.execute_command(*op.command())
