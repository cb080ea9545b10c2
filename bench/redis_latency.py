"""What sharing router state on Redis adds to each call.

    python bench/redis_latency.py [--calls 2000] [--redis-url redis://...]

Starts its own `redis-server` on a free loopback port (unless `--redis-url`
is given), then sends the same sequential calls through `turnout.Router`
(and `turnout.AsyncRouter`) over an in-process mock transport, once with the
default `MemoryStore` and once with a `RedisStore`, and prints the median and
p90 latency per call and what Redis adds to them. A call does four state
operations (budget deposit, load, admit, success): the difference is their
Redis round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import turnout
from turnout.emulation import EmulatedResponse, OpenAIEmulator, mock_transport
from turnout.state import MemoryStore, RedisStore

MESSAGES = [{"role": "user", "content": "hello"}]


class Bench(turnout.OpenAICompatible):
    name = "bench"
    default_base_url = "https://bench.test/v1"
    error_table = turnout.ErrorTable(codes={})
    retry_policy = turnout.RetryPolicy(max_retries=0)


class BenchEmulator(OpenAIEmulator):
    provider = "bench"

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        return EmulatedResponse.json(500, {"error": {"message": error, "code": error}})

    def error_names(self) -> Sequence[str]:
        return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server), or pass --redis-url")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.02)
            client.close()
            yield url
        finally:
            process.terminate()
            process.wait(10)


def router_kwargs(store: Any) -> dict[str, Any]:
    plugins = turnout.Plugins(entry_points=False)
    plugins.add_provider(Bench())
    deployments = [
        turnout.Deployment(n, "bench", "m", api_key="sk-bench-0123456789", base_url=f"https://{n}.test/v1")
        for n in ("a", "b")
    ]
    transport = mock_transport({"a.test": BenchEmulator(), "b.test": BenchEmulator()})
    return {"deployments": deployments, "plugins": plugins, "transport": transport, "store": store}


def timed_sync(stores: Sequence[Any], calls: int, warmup: int) -> list[list[float]]:
    """Per-call latencies through one router per store, the routers taking turns
    call by call so that whatever else the machine does falls on all of them alike."""
    routers = [turnout.Router(**router_kwargs(store)) for store in stores]
    samples: list[list[float]] = [[] for _ in routers]
    clock = time.perf_counter
    for i in range(warmup + calls):
        for router, out in zip(routers, samples, strict=True):
            started = clock()
            router.chat(MESSAGES)
            if i >= warmup:
                out.append(clock() - started)
    for router in routers:
        router.close()
    return samples


def timed_async(stores: Sequence[Any], calls: int, warmup: int) -> list[list[float]]:
    async def main() -> list[list[float]]:
        routers = [turnout.AsyncRouter(**router_kwargs(store)) for store in stores]
        samples: list[list[float]] = [[] for _ in routers]
        clock = time.perf_counter
        for i in range(warmup + calls):
            for router, out in zip(routers, samples, strict=True):
                started = clock()
                await router.chat(MESSAGES)
                if i >= warmup:
                    out.append(clock() - started)
        for router, store in zip(routers, stores, strict=True):
            await router.aclose()
            aclose = getattr(store, "aclose", None)
            if aclose is not None:
                await aclose()
        return samples

    return asyncio.run(main())


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def commands_served(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    stats = client.info("commandstats")
    client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


Row = tuple[str, float, float, float, float, float]


def measure(
    name: str, run: Callable[[Sequence[Any], int, int], list[list[float]]], url: str, calls: int, warmup: int
) -> Row:
    store = RedisStore(url, prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    before = commands_served(url)
    memory, shared = run([MemoryStore(), store], calls, warmup)
    per_call = (commands_served(url) - before) / (calls + warmup)
    assert store.shared, "Redis was lost during the run"
    store.close()
    return name, statistics.median(memory), p90(memory), statistics.median(shared), p90(shared), per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    args = parser.parse_args()

    def run(url: str) -> list[Row]:
        return [
            measure("Router (sync)", timed_sync, url, args.calls, args.warmup),
            measure("AsyncRouter", timed_async, url, args.calls, args.warmup),
        ]

    if args.redis_url:
        rows = run(args.redis_url)
    else:
        with redis_server() as url:
            rows = run(url)

    ms = 1000.0
    print(f"{args.calls} sequential calls each, mock transport, Redis on loopback; milliseconds per call")
    header = (
        f"{'router':<15} {'memory p50':>10} {'p90':>7} {'redis p50':>10} {'p90':>7}"
        f" {'added p50':>10} {'p90':>7} {'cmds/call':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, m50, m90, r50, r90, commands in rows:
        print(
            f"{name:<15} {m50 * ms:>10.3f} {m90 * ms:>7.3f} {r50 * ms:>10.3f} {r90 * ms:>7.3f}"
            f" {(r50 - m50) * ms:>10.3f} {(r90 - m90) * ms:>7.3f} {commands:>9.1f}"
        )


if __name__ == "__main__":
    main()
