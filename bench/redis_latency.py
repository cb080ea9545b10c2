"""What sharing router state on Redis adds to each call, in time and in round trips.

    python bench/redis_latency.py [--calls 2000] [--count 200] [--redis-url redis://...]
    python bench/redis_latency.py --calls 1000 --rounds 5 --against 229566b --output docs/benchmarks.md

Starts its own `redis-server` on a free loopback port (unless `--redis-url`
is given), then sends the same sequential calls through `turnout.Router`
(and `turnout.AsyncRouter`) over an in-process mock transport, once with the
default `MemoryStore` and once with a `RedisStore`, and prints the median and
p90 latency per call and what Redis adds to them.

Then it counts, exactly, what one plain successful call asks of Redis: the
commands the server ran (`INFO commandstats` before and after `--count`
calls, the bench's own INFO left out) and the round trips, counted by a
loopback proxy between the store and the server (a round trip is a request
sent after the last reply came back: a pipelined batch is one). The counted
calls come after a warm-up, so connections are open and scripts loaded, as
in a running service; the connections opened while counting are shown too.
On another server (`--redis-url`) other clients' commands would be counted
as well: use one of its own.

`--rounds N` runs the whole of it N times, each in a fresh process, and
shows medians; `--against REV` measures the store of git revision REV too
(its core/src exported to a temporary directory and put on PYTHONPATH), the
two taking turns round by round; `--output` writes the section of
docs/benchmarks.md between the markers `REDIS_START` and `REDIS_END`
(bench/merge.py), the rest of the page as its own runs made it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from attrs import asdict, frozen

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


Row = tuple[str, float, float, float, float]


def measure(
    name: str, run: Callable[[Sequence[Any], int, int], list[list[float]]], url: str, calls: int, warmup: int
) -> Row:
    store = RedisStore(url, prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    memory, shared = run([MemoryStore(), store], calls, warmup)
    assert store.shared, "Redis was lost during the run"
    store.close()
    return name, statistics.median(memory), p90(memory), statistics.median(shared), p90(shared)


# -- counting --------------------------------------------------------------------------


def first_command(buffer: bytes | bytearray) -> tuple[str, int] | None:
    """The name of the first whole command in `buffer` (a RESP request: an array of
    bulk strings) and its length in bytes; None while it has not all come."""
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    if buffer[:1] != b"*":
        raise ValueError("not a RESP request")
    at, name = end + 2, ""
    for i in range(int(buffer[1:end])):
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(buffer[at + 1 : end])  # `$<size>`
        at = end + 2
        if len(buffer) < at + size + 2:
            return None
        if i == 0:
            name = bytes(buffer[at : at + size]).decode().lower()
        at += size + 2
    return name, at


class CountingProxy:
    """A loopback TCP proxy in front of Redis that counts round trips, the commands
    sent through it and the connections.

    On each connection, data from the client that follows a reply (or opens the
    connection) starts a round trip; more data before the next reply (a request
    sent in pieces, a pipelined batch) is the same round trip. The proxy runs its
    own event loop on a thread of its own; `close()` ends it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.round_trips = 0
        self.connections = 0
        self.sent: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="counting-proxy", daemon=True)
        self.server: asyncio.Server | None = None
        self.serving: set[asyncio.Task[Any]] = set()
        self.pipes: set[asyncio.Future[Any]] = set()

    def start(self) -> CountingProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        return self

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def counts(self) -> tuple[Counter[str], int, int]:
        """The commands sent (by name), round trips and connections so far."""
        with self.lock:
            return Counter(self.sent), self.round_trips, self.connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.serving.add(task)
        with self.lock:
            self.connections += 1
        replied = [True]  # whether the server spoke last on this connection

        async def requests() -> None:
            pending = bytearray()
            while data := await reader.read(65536):
                pending += data
                with self.lock:
                    if replied[0]:
                        replied[0] = False
                        self.round_trips += 1
                    while (found := first_command(pending)) is not None:
                        self.sent[found[0]] += 1
                        del pending[: found[1]]
                up_writer.write(data)
                await up_writer.drain()

        async def replies() -> None:
            while data := await up_reader.read(65536):
                replied[0] = True
                writer.write(data)
                await writer.drain()

        pipes = [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())]
        self.pipes.update(pipes)
        # Either side hanging up (or the proxy closing: `close` cancels the pipes) ends both.
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for end in (writer, up_writer):
            end.close()
        self.pipes.difference_update(pipes)
        self.serving.discard(task)

    def close(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            for pipe in list(self.pipes):
                pipe.cancel()
            await asyncio.gather(*self.serving, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def counting_proxy(url: str) -> Iterator[tuple[CountingProxy, str]]:
    """The proxy in front of the server of `url`, and the URL that goes through it."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or parts.hostname is None:
        sys.exit("counting round trips needs a redis:// or rediss:// URL (TCP)")
    proxy = CountingProxy(parts.hostname, parts.port or 6379).start()
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{proxy.port}" if auth else f"127.0.0.1:{proxy.port}"
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        proxy.close()


@frozen
class Snapshot:
    """What the server and the proxy had seen so far."""

    ran: Counter[str]  # commands the server ran, by name (those in scripts too)
    usec: Counter[str]  # the server's time in them, by name (a script's includes its commands')
    sent: Counter[str]  # commands sent through the proxy, by name
    round_trips: int
    connections: int


def snapshotter(url: str, proxy: CountingProxy) -> tuple[Callable[[], Snapshot], Callable[[], None]]:
    """What the server and the proxy have seen so far; and how to close the
    connection that asks (straight to the server, so the proxy never sees it; its
    INFO commands are left out)."""
    import redis

    client = redis.Redis.from_url(url)
    client.info("server")  # connected now: the connection's own handshake is before any snapshot

    def snapshot() -> Snapshot:
        stats = client.info("commandstats")
        stats.pop("cmdstat_info", None)
        ran = Counter({key.removeprefix("cmdstat_"): int(v["calls"]) for key, v in stats.items()})
        usec = Counter({key.removeprefix("cmdstat_"): int(v["usec"]) for key, v in stats.items()})
        return Snapshot(ran, usec, *proxy.counts())

    return snapshot, client.close


def counted_sync(store: Any, warmup: int, calls: int, snapshot: Callable[[], Snapshot]) -> list[Snapshot]:
    router = turnout.Router(**router_kwargs(store))
    for _ in range(warmup):
        router.chat(MESSAGES)
    marks = [snapshot()]
    for _ in range(calls):
        router.chat(MESSAGES)
    marks.append(snapshot())
    router.close()
    return marks


def counted_async(store: Any, warmup: int, calls: int, snapshot: Callable[[], Snapshot]) -> list[Snapshot]:
    async def main() -> list[Snapshot]:
        router = turnout.AsyncRouter(**router_kwargs(store))
        for _ in range(warmup):
            await router.chat(MESSAGES)
        # A blocking INFO in the loop: the loop has nothing else to do meanwhile.
        marks = [snapshot()]
        for _ in range(calls):
            await router.chat(MESSAGES)
        marks.append(snapshot())
        await router.aclose()
        await store.aclose()
        return marks

    return asyncio.run(main())


@frozen
class Count:
    """What Redis did per call."""

    name: str
    round_trips: float
    sent: dict[str, float]  # commands sent, by name
    ran: dict[str, float]  # commands the server ran, by name (those in scripts too)
    server_usec: float  # the server's time in the commands sent
    connections: int  # opened while counting


def per_call(before: Counter[str], after: Counter[str], calls: int) -> dict[str, float]:
    return {name: n / calls for name, n in sorted((after - before).items())}


def count(
    name: str,
    run: Callable[[Any, int, int, Callable[[], Snapshot]], list[Snapshot]],
    url: str,
    calls: int,
    warmup: int,
) -> Count:
    with counting_proxy(url) as (proxy, through):
        snapshot, done = snapshotter(url, proxy)
        store = RedisStore(through, prefix=f"bench:{uuid.uuid4().hex[:8]}:")
        before, after = run(store, warmup, calls, snapshot)
        assert store.shared, "Redis was lost during the count"
        store.close()
        done()
    sent = per_call(before.sent, after.sent, calls)
    usec = per_call(before.usec, after.usec, calls)
    return Count(
        name,
        (after.round_trips - before.round_trips) / calls,
        sent,
        per_call(before.ran, after.ran, calls),
        sum(usec.get(command, 0.0) for command in sent),
        after.connections - before.connections,
    )


# -- one round, in this process ----------------------------------------------------------


def one_round(args: argparse.Namespace) -> dict[str, Any]:
    """Timings and counts of the turnout this process imports, as JSON-ready data."""

    def run(url: str) -> dict[str, Any]:
        import redis

        client = redis.Redis.from_url(url)
        server = str(client.info("server")["redis_version"])
        client.close()
        rows = [
            measure("Router (sync)", timed_sync, url, args.calls, args.warmup),
            measure("AsyncRouter", timed_async, url, args.calls, args.warmup),
        ]
        counts = [
            count("Router (sync)", counted_sync, url, args.count, args.warmup),
            count("AsyncRouter", counted_async, url, args.count, args.warmup),
        ]
        return {"redis": server, "rows": rows, "counts": [asdict(c) for c in counts]}

    if args.redis_url:
        return run(args.redis_url)
    with redis_server() as url:
        return run(url)


def print_round(data: dict[str, Any], args: argparse.Namespace) -> None:
    ms = 1000.0
    print(f"{args.calls} sequential calls each, mock transport, Redis on loopback; milliseconds per call")
    header = f"{'router':<15} {'memory p50':>10} {'p90':>7} {'redis p50':>10} {'p90':>7}"
    header += f" {'added p50':>10} {'p90':>7}"
    print(header)
    print("-" * len(header))
    for name, m50, m90, r50, r90 in data["rows"]:
        print(
            f"{name:<15} {m50 * ms:>10.3f} {m90 * ms:>7.3f} {r50 * ms:>10.3f} {r90 * ms:>7.3f}"
            f" {(r50 - m50) * ms:>10.3f} {(r90 - m90) * ms:>7.3f}"
        )
    print()
    print(f"Redis's work per plain successful call, counted over {args.count} calls after {args.warmup}")
    header = f"{'router':<15} {'round trips':>11} {'sent':>5} {'ran':>5} {'server µs':>9} {'new conns':>9}"
    print(header)
    print("-" * len(header))
    counts = [Count(**c) for c in data["counts"]]
    for c in counts:
        sent, ran = sum(c.sent.values()), sum(c.ran.values())
        line = f"{c.name:<15} {c.round_trips:>11.2f} {sent:>5.2f} {ran:>5.2f}"
        print(f"{line} {c.server_usec:>9.1f} {c.connections:>9}")
    print()
    print("sent: commands sent to Redis; ran: commands Redis ran (those in scripts too); server µs:")
    print("Redis's own time in the commands sent; new conns: connections opened while counting")
    for c in counts:
        print(f"{c.name:<15} sent {listed(c.sent)}; ran {listed(c.ran)}")


def listed(commands: dict[str, float]) -> str:
    return ", ".join(f"{name} {n:g}" for name, n in commands.items()) or "none"


# -- rounds, against another revision, the report ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def revision(rev: str) -> Iterator[tuple[str, str]]:
    """`rev`'s core/src exported to a temporary directory (for PYTHONPATH), and its short name."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "core/src"], cwd=ROOT, capture_output=True
    )
    if archive.returncode != 0:
        sys.exit(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory() as workdir:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(workdir, filter="data")
        yield str(Path(workdir) / "core" / "src"), short


def in_subprocess(args: argparse.Namespace, pythonpath: str | None) -> dict[str, Any]:
    """One round in a fresh interpreter, importing turnout from `pythonpath` when given."""
    command = [sys.executable, __file__, "--json", "--calls", str(args.calls), "--warmup", str(args.warmup)]
    command += ["--count", str(args.count)] + (["--redis-url", args.redis_url] if args.redis_url else [])
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        sys.exit(f"a round failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per router: the added latency of each round, and the counts (medians of the rounds)."""
    rows = []
    for i, (name, *_) in enumerate(rounds[0]["rows"]):
        counts = [Count(**r["counts"][i]) for r in rounds]
        rows.append(
            {
                "name": name,
                "added50": [r["rows"][i][3] - r["rows"][i][1] for r in rounds],
                "added90": [r["rows"][i][4] - r["rows"][i][2] for r in rounds],
                "round_trips": statistics.median(c.round_trips for c in counts),
                "sent": counts[0].sent,
                "ran": sum(counts[0].ran.values()),
                "server_usec": [c.server_usec for c in counts],
                "connections": max(c.connections for c in counts),
                # The counts are exact: every round must find the same.
                "same": len({(c.round_trips, tuple(c.sent.items()), tuple(c.ran.items())) for c in counts})
                == 1,
            }
        )
    return rows


def render(
    versions: list[tuple[str, list[dict[str, Any]]]],
    args: argparse.Namespace,
    host: dict[str, str],
    took: float,
) -> str:
    from merge import REDIS_END, REDIS_START
    from report import DASH, load_average, spread

    def ms(x: float) -> str:
        return f"{x * 1000:.2f}"

    lines = [
        REDIS_START,
        "## Shared state on Redis: what a call adds",
        "",
        "<!-- Generated by bench/redis_latency.py: do not edit by hand, run it again. -->",
        "",
        f"`{args.command}`. Sequential plain calls through `Router` and `AsyncRouter` over an in-process "
        "mock transport, with a `MemoryStore` and with a `RedisStore` on a `redis-server` of the round's own "
        "on loopback, taking turns call by call; *added* is the Redis store's latency per call minus the "
        f"memory store's, at the median (p50) and the 90th percentile, each round {args.calls} calls "
        f"after {args.warmup}; medians of {args.rounds} rounds (min{DASH}max), each round a fresh process. "
        "Then, after a warm-up, what one call asks of Redis is counted exactly over "
        f"{args.count} calls: round trips by a loopback proxy between store and server (a request "
        "sent after the last reply came back; a pipelined batch is one), commands sent by the same proxy, "
        "commands Redis ran (with those inside scripts) and Redis's time in the commands sent from "
        "`INFO commandstats`. No connection was opened while counting unless a row says so.",
        "",
        f"Machine: {host['CPU']}, {host['cores']}, {host['Python']}, "
        f"redis-server {versions[0][1][0]['redis']}; "
        f"load average at the start {host['load average when the run started (1 / 5 / 15 min)']}, at the end "
        f"{load_average()}. Started {args.started}, took {took:.0f} s.",
        "",
        "| store | router | round trips | commands sent | commands Redis ran | Redis's time (µs) "
        "| added p50 (ms) | added p90 (ms) |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, rounds in versions:
        for row in summary(rounds):
            sent = sum(row["sent"].values())
            note = "" if row["same"] else " (differed between rounds)"
            if row["connections"]:
                note += f" ({row['connections']} connections opened)"
            lines.append(
                f"| {label} | {row['name']} | {row['round_trips']:g}{note} "
                f"| {sent:g} ({listed(row['sent'])}) "
                f"| {row['ran']:g} | {spread(row['server_usec'], lambda x: f'{x:.0f}')} "
                f"| {spread(row['added50'], ms)} | {spread(row['added90'], ms)} |"
            )
    lines += ["", REDIS_END]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per router and round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--count", type=int, default=200, help="calls over which Redis's work is counted")
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds, each in a fresh process; medians shown"
    )
    parser.add_argument(
        "--against", metavar="REV", help="measure the store of this git revision too, in turns"
    )
    parser.add_argument("--output", type=Path, help="write the section of this report (docs/benchmarks.md)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one round, for the rounds
    args = parser.parse_args()

    if args.json:
        print(json.dumps(one_round(args)))
        return
    if args.rounds == 1 and args.against is None and args.output is None:
        print_round(one_round(args), args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import machine

    args.command = "python bench/redis_latency.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    args.started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine("none")
    began = time.perf_counter()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    ours: tuple[str, list[dict[str, Any]]] = (f"this tree ({head.stdout.strip() or '?'})", [])
    versions = [ours]
    with ExitStack() as stack:
        paths: list[str | None] = [None]
        if args.against is not None:
            path, short = stack.enter_context(revision(args.against))
            versions.append((short, []))
            paths.append(path)
        for i in range(args.rounds):
            for (label, rounds), path in zip(versions, paths, strict=True):
                print(f"round {i + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
                rounds.append(in_subprocess(args, path))
    section = render(versions, args, host, time.perf_counter() - began)
    print(section)
    if args.output is not None:
        from merge import splice

        text = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
        args.output.write_text(splice(text, section), encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
