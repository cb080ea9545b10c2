"""Running the app: uvicorn with graceful shutdown, in one process or several.

`DrainingServer` is uvicorn's server, except that the first SIGTERM or Ctrl-C
drains instead of stopping: new calls get 503 while the calls in flight
finish (within the grace period), and the server stops as soon as none is
left. A second Ctrl-C stops at once.

With `workers > 1` the parent binds the socket, starts each worker in a fresh
interpreter (spawn) sharing it, passes a stop signal on to every worker, and
replaces a worker that dies while serving. Workers share breakers, cooldowns
and budgets only through `[state] backend = "redis"`, and their metrics
through prometheus-client's multiprocess directory, which the parent makes.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import suppress
from types import FrameType
from typing import Any

import uvicorn
from attrs import fields, frozen

from turnout._errors import ConfigError

from .gate import Gate
from .metrics import MULTIPROCESS_ENV

__all__ = ["DrainingServer", "ServeOptions", "bind", "serve"]

log = logging.getLogger("turnout.server")
# A worker's exit code when it could not start (its router could not be built, say):
# every other would fail alike, so the server stops (uvicorn's own code for it).
STARTUP_FAILURE = 3
# A worker that died otherwise is replaced, at most this often.
_RESTART_EVERY = 1.0
# Seconds uvicorn gives connections to close once the drain is over (the answers of
# calls cancelled at the end of the grace period are being written).
_CLOSE_TIMEOUT = 3.0


@frozen
class ServeOptions:
    """What `turnout serve` was asked for (picklable: workers receive it)."""

    config: str
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    no_auth: bool = False
    grace_period: float | None = None
    access_log: bool = False
    log_level: str = "info"
    transport: str = "aiohttp"

    @classmethod
    def asked(cls, args: argparse.Namespace, **settled: Any) -> ServeOptions:
        """From `turnout serve`'s parsed arguments, which bear the fields' names;
        `settled` replaces what was worked out from them (the grace period, say)."""
        given = {a.name: getattr(args, a.name) for a in fields(cls)}
        return cls(**{**given, **settled})


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping by draining its gate first."""

    def __init__(self, config: uvicorn.Config, gate: Gate) -> None:
        super().__init__(config)
        self.gate = gate

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.gate.draining:
            log.info("draining: new calls get 503; %d in flight", self.gate.inflight)
            self.gate.drain()
        elif sig == signal.SIGINT:
            super().handle_exit(sig, frame)  # Ctrl-C again: stop now

    async def on_tick(self, counter: int) -> bool:
        if not self.should_exit and self.gate.may_stop():
            if self.gate.inflight:
                log.warning("grace period over: %d calls cancelled", self.gate.inflight)
            self.should_exit = True
        return await super().on_tick(counter)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (IPPROTO_TCP: asyncio then sets TCP_NODELAY on each connection)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", path="--port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(options: ServeOptions, sock: socket.socket) -> None:
    """One worker: its own app, router and event loop, on the shared socket."""
    from .app import ServerApp
    from .settings import Settings

    _logging(options.log_level)
    settings = Settings.load(options.config, no_auth=options.no_auth, grace_period=options.grace_period)
    app = ServerApp(settings, transport=options.transport)
    config = uvicorn.Config(
        app.asgi,
        log_config=None,
        log_level=options.log_level,
        access_log=options.access_log,
        lifespan="on",
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(_CLOSE_TIMEOUT),
    )
    server = DrainingServer(config, app.gate)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )


def serve(options: ServeOptions, sock: socket.socket) -> int:
    """Serve on `sock` until stopped; the exit code."""
    if options.workers == 1:
        _worker(options, sock)
        return 0
    made = None
    if not os.environ.get(MULTIPROCESS_ENV):
        made = os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="turnout-metrics-")
    try:
        return _Supervisor(options, sock).run()
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_ENV, None)


class _Supervisor:
    """Starts the workers, keeps them running, and stops them on a signal."""

    def __init__(self, options: ServeOptions, sock: socket.socket) -> None:
        self.options = options
        self.sock = sock
        self.context = multiprocessing.get_context("spawn")
        self.stop = threading.Event()
        self.workers: list[tuple[Any, float]] = []

    def _start(self) -> tuple[Any, float]:
        process = self.context.Process(target=_worker, args=(self.options, self.sock), daemon=False)
        process.start()
        return process, time.monotonic()

    def _signalled(self, sig: int, frame: FrameType | None) -> None:
        self.stop.set()

    def run(self) -> int:
        _logging(self.options.log_level)
        previous = {sig: signal.signal(sig, self._signalled) for sig in (signal.SIGTERM, signal.SIGINT)}
        code = 0
        try:
            self.workers = [self._start() for _ in range(self.options.workers)]
            while not self.stop.wait(0.2):
                code = self._replace_dead()
                if code:
                    break
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _replace_dead(self) -> int:
        for i, (process, started) in enumerate(self.workers):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start: stopping", process.pid)
                return 1
            if time.monotonic() - started < _RESTART_EVERY:
                continue  # not again at once: a worker that crashes at every start
            _forget(process.pid)
            log.warning("worker %s died (code %s): starting another", process.pid, process.exitcode)
            self.workers[i] = self._start()
        return 0

    def _stop_all(self) -> None:
        for process, _ in self.workers:
            if process.is_alive() and process.pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        grace = self.options.grace_period if self.options.grace_period is not None else 30.0
        deadline = time.monotonic() + grace + _CLOSE_TIMEOUT + 5.0
        for process, _ in self.workers:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.error("worker %s did not stop in time: killed", process.pid)
                process.kill()
                process.join()
            _forget(process.pid)


def _forget(pid: int | None) -> None:
    """A dead worker's live gauges leave the multiprocess directory."""
    if pid is None or not os.environ.get(MULTIPROCESS_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
