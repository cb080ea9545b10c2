"""A real `redis-server` on a free loopback port, started and stopped by the tests;
three of them as a Redis Cluster (`redis_cluster`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process: no persistence, loopback only, its files in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.options = options  # more redis-server arguments, `("--timeout", "1")` say
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.options
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode}; see {self.workdir}"
                    )
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """Stop it abruptly, as a crash or a lost network does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def client(self):  # -> redis.Redis (redis is imported lazily)
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2.0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the whole session: tests keep apart by their own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test may kill and restart (on the same port)."""
    server = RedisServer(tmp_path, password="s3cret-Pa55word")
    server.start()
    yield server
    server.stop()


SLOTS = 16384


class RedisCluster:
    """Three redis-server processes in cluster mode on loopback, no replicas: each
    node serves a third of the slots, assigned by the test (`CLUSTER ADDSLOTSRANGE`)
    and joined by `CLUSTER MEET`; ready when every node says `cluster_state:ok`."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes: list[RedisServer] = []
        self.buses: list[int] = []
        for i in range(size):
            home = workdir / f"node{i}"
            home.mkdir()
            # The bus gets a port of its own: port + 10000 (the default) may be taken, or past 65535.
            bus = free_port()
            options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            options += ("--cluster-port", str(bus), "--cluster-node-timeout", "5000")
            self.nodes.append(RedisServer(home, options=options))
            self.buses.append(bus)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 10.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        clients = [node.client() for node in self.nodes]
        try:
            step = SLOTS // len(clients)
            for i, client in enumerate(clients):
                last = SLOTS - 1 if i == len(clients) - 1 else (i + 1) * step - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
            for node, bus in zip(self.nodes[1:], self.buses[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
            self._wait_ok(clients, timeout)
        finally:
            for client in clients:
                client.close()
        return self

    def _wait_ok(self, clients: Sequence[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Every node in state ok and knowing every other: a client may start on any.
            infos = [client.cluster("INFO") for client in clients]
            if all(self._ok(info) for info in infos):
                return
            if time.monotonic() > deadline:
                where = self.nodes[0].workdir.parent
                raise RuntimeError(f"the cluster did not come up in {timeout}s: {infos}; see {where}")
            time.sleep(0.05)

    def _ok(self, info: dict[str, str]) -> bool:
        return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A three-node cluster for a module's tests: they keep apart by their own key prefix."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
