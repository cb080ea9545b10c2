"""`FakeGateways`: every installed provider's emulator served on one loopback HTTP
server, each under its own path prefix, with its faults and a log of what it served.

A request to `/acme/v1/...` loses its prefix and goes to the acme
emulator with the fault its script or profile picks; `/_faults` is the admin
API. The server runs in a background thread (`start`, or `with`) or in the
foreground (`serve`, what `turnout serve-fake` runs).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from attrs import frozen

from turnout._errors import ConfigError
from turnout.emulation import EmulatedRequest, EmulatedResponse, Emulator, Fault

from .faults import QUIET, FaultProfile, FaultsConfig, describe, fault_from_mapping, load_faults
from .wire import quiet_drops, read_body, send_json, send_reply

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import Receive, Scope, Send

    from turnout._plugins import Plugins

__all__ = ["ADMIN_PREFIX", "FakeGateways", "Served"]

ADMIN_PREFIX = "/_faults"
_LOG_SIZE = 10_000


@frozen
class Served:
    """One request the fake answered."""

    provider: str
    method: str
    path: str
    status: int
    # What went wrong on purpose ("" for nothing), e.g. "rate_limited", "dropped after 2 chunks".
    fault: str = ""
    scripted: bool = False
    streamed: bool = False


class _Gateway:
    """One provider's emulator and its faults."""

    def __init__(self, name: str, emulator: Emulator, profile: FaultProfile, seed: int | None) -> None:
        self.name = name
        self.emulator = emulator
        self.configured = profile
        self.profile = profile
        self.seed = seed
        self.rng = random.Random(f"{seed}:{name}") if seed is not None else random.Random()
        self.script: deque[Fault | None] = deque()
        self.count = 0
        self.log: deque[Served] = deque(maxlen=_LOG_SIZE)

    def next_fault(self) -> tuple[Fault | None, bool]:
        if self.script:
            return self.script.popleft(), True
        if self.profile.quiet:
            return None, False
        return self.profile.draw(self.rng), False

    def reset(self) -> None:
        self.profile = self.configured
        self.rng = random.Random(f"{self.seed}:{self.name}") if self.seed is not None else random.Random()
        self.script.clear()
        self.count = 0
        self.log.clear()


# -- the server ----------------------------------------------------------------


class FakeGateways:
    """Every installed provider's emulator, served over HTTP on loopback.

    `faults`: a `FaultsConfig`, the same mapping (`{"acme": {"errors":
    {"rate_limited": 0.2}}}`) or a TOML/JSON file. `seed` (else the file's)
    makes fault rates reproducible. `emulators` replaces the installed ones
    (`{"acme": AcmeEmulator()}`). Start it with `with` (a background
    thread, on a free port) or `serve()` (in the foreground).
    """

    def __init__(
        self,
        faults: str | os.PathLike[str] | Mapping[str, Any] | FaultsConfig | None = None,
        *,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        emulators: Mapping[str, Emulator] | None = None,
        plugins: Plugins | None = None,
        observer: Callable[[Served], None] | None = None,
    ) -> None:
        config = load_faults(faults)
        self.seed = seed if seed is not None else config.seed
        self.host = host
        self._port = port
        self._plugins = plugins
        if emulators is None:
            emulators = self._load_plugins().emulators()
        self._lock = threading.Lock()
        self._observer = observer
        default = config.profiles.get("*", QUIET)
        for name in config.profiles:
            if name != "*" and name not in emulators:
                raise ConfigError("no emulator for this provider", path=name, choices=sorted(emulators))
        self._gateways: dict[str, _Gateway] = {}
        for name, emulator in emulators.items():
            profile = config.profiles.get(name, default)
            self._check_profile(name, emulator, profile, name if name in config.profiles else "*")
            self._gateways[name] = _Gateway(name, emulator, profile, self.seed)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def _load_plugins(self) -> Plugins:
        if self._plugins is None:
            from turnout._plugins import Plugins

            # Fresh emulators: each server keeps its own state (jobs, executions, counters).
            self._plugins = Plugins()
        return self._plugins

    @staticmethod
    def _check_profile(name: str, emulator: Emulator, profile: FaultProfile, path: str) -> None:
        for error in profile.errors:
            try:
                emulator.render_error(error)
            except (ValueError, KeyError):
                raise ConfigError(
                    f"provider {name!r} cannot render this error; known: {', '.join(emulator.error_names())}",
                    path=f"{path}.errors.{error}",
                ) from None

    # -- addresses -----------------------------------------------------------

    @property
    def providers(self) -> list[str]:
        return sorted(self._gateways)

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the fake gateway server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def root(self) -> str:
        """`http://127.0.0.1:PORT`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _gateway(self, provider: str) -> _Gateway:
        gateway = self._gateways.get(provider)
        if gateway is None:
            raise ConfigError("no fake gateway for this provider", value=provider, choices=self.providers)
        return gateway

    def url(self, provider: str) -> str:
        """Where `provider`'s emulator is served: `http://127.0.0.1:PORT/acme`."""
        self._gateway(provider)
        return f"{self.root}/{provider}"

    def base_url(self, provider: str) -> str:
        """The `base_url` a deployment of `provider` needs: `url(provider)` plus the path
        its gateway's base URLs carry (`/api/v1` for `https://gateway.example/api/v1`)."""
        return self.url(provider) + self.base_path(provider)

    def base_path(self, provider: str) -> str:
        """The path a deployment's base URL carries under the gateway's host: what the
        emulator says (`Emulator.base_path`), else the path of the provider's default
        base URL."""
        declared = self._gateway(provider).emulator.base_path
        if declared is not None:
            return declared
        try:
            default = self._load_plugins().provider(provider).default_base_url
        except ConfigError:
            return ""
        return urlsplit(default).path.rstrip("/")

    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.providers}

    def emulator(self, provider: str) -> Emulator:
        return self._gateway(provider).emulator

    # -- faults --------------------------------------------------------------

    def set_faults(self, provider: str, profile: FaultProfile | Mapping[str, Any] | None) -> FaultProfile:
        """Replace a provider's fault profile (None: no faults)."""
        gateway = self._gateway(provider)
        checked = FaultProfile.from_mapping(profile if profile is not None else {}, provider)
        self._check_profile(provider, gateway.emulator, checked, provider)
        with self._lock:
            gateway.profile = checked
        return checked

    def faults(self, provider: str) -> FaultProfile:
        with self._lock:
            return self._gateway(provider).profile

    def script(self, provider: str, *faults: Fault | Mapping[str, Any] | None) -> None:
        """Queue the faults of `provider`'s next responses, one per request, in order
        (None: a normal answer). The profile applies again once the queue is empty."""
        gateway = self._gateway(provider)
        checked = [fault_from_mapping(f, f"script[{i}]") for i, f in enumerate(faults)]
        with self._lock:
            gateway.script.extend(checked)

    def pending(self, provider: str) -> int:
        """Scripted faults not yet consumed."""
        with self._lock:
            return len(self._gateway(provider).script)

    def reset(self, provider: str | None = None) -> None:
        """Back to the configured profile, an empty script, no requests counted."""
        names = [provider] if provider is not None else self.providers
        with self._lock:
            for name in names:
                self._gateway(name).reset()

    # -- what was served -----------------------------------------------------

    def requests(self, provider: str) -> int:
        """How many requests `provider`'s emulator has answered (since the last reset)."""
        with self._lock:
            return self._gateway(provider).count

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: g.count for name, g in sorted(self._gateways.items())}

    def log(self, provider: str | None = None) -> list[Served]:
        """The requests served (the last 10 000 per provider), oldest first."""
        with self._lock:
            if provider is not None:
                return list(self._gateway(provider).log)
            return [s for g in self._gateways.values() for s in g.log]

    def state(self) -> dict[str, Any]:
        """What `GET /_faults` answers."""
        with self._lock:
            providers = {
                name: {
                    "url": self.url(name) if self._socket is not None else None,
                    "base_url": self.base_url(name) if self._socket is not None else None,
                    "faults": g.profile.to_dict(),
                    "scripted": len(g.script),
                    "requests": g.count,
                }
                for name, g in sorted(self._gateways.items())
            }
        return {"seed": self.seed, "providers": providers}

    # -- the ASGI application ------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application (mount it in any ASGI server)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/") or path == "/":
            status, payload = self._admin(method, path, body)
            await send_json(send, status, payload)
            return
        name, _, rest = path.lstrip("/").partition("/")
        gateway = self._gateways.get(name)
        if gateway is None:
            detail = f"no fake gateway at /{name}; serving: {', '.join(self.providers)}"
            await send_json(send, 404, {"detail": detail})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").rsplit(":", 1)[0] if "]" not in headers.get("host", "") else ""
        request = EmulatedRequest(
            method=method,
            path="/" + rest,
            headers=headers,
            body=body,
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            host=host or self.host,
        )
        with self._lock:
            gateway.count += 1
            fault, scripted = gateway.next_fault()
            chunk_delay = gateway.profile.chunk_delay
        try:
            reply = gateway.emulator.handle(request, fault)
        except Exception as exc:  # a fault the emulator cannot render: say so, as a 500
            reply = EmulatedResponse.json(500, {"detail": f"turnout fake: {type(exc).__name__}: {exc}"})
        streamed = reply.chunks is not None
        served = Served(
            name, method, request.path, reply.status, describe(fault, streamed=streamed), scripted, streamed
        )
        with self._lock:
            gateway.log.append(served)
        if self._observer is not None:
            self._observer(served)
        await send_reply(send, reply, fault, chunk_delay)

    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [p for p in path[len(ADMIN_PREFIX) :].split("/") if p] if path != "/" else []
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            return 400, {"detail": "the body is not JSON"}
        try:
            if path == "/" or (not parts and method == "GET"):
                return 200, self.state()
            if not parts and method == "DELETE":
                self.reset()
                return 200, self.state()
            provider = parts[0]
            if provider not in self._gateways:
                return 404, {"detail": f"no fake gateway {provider!r}; serving: {', '.join(self.providers)}"}
            if len(parts) == 1 and method == "GET":
                return 200, self.state()["providers"][provider]
            if len(parts) == 1 and method in ("POST", "PUT"):
                self.set_faults(provider, payload or {})
                return 200, self.state()["providers"][provider]
            if len(parts) == 1 and method == "DELETE":
                self.reset(provider)
                return 200, self.state()["providers"][provider]
            if len(parts) == 2 and parts[1] == "script" and method == "POST":
                items = payload.get("faults") if isinstance(payload, Mapping) else payload
                if not isinstance(items, list):
                    return 400, {"detail": 'send a JSON list of faults (or {"faults": [...]})'}
                self.script(provider, *items)
                return 200, self.state()["providers"][provider]
        except ConfigError as exc:
            return 400, {"detail": str(exc)}
        return 405, {"detail": f"{method} {path} is not an admin action"}

    # -- running -------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they
        # are TCP, and without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen there: {exc.strerror}", path="port", value=self._port) from None
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def _make_server(self) -> uvicorn.Server:
        try:
            import uvicorn
        except ImportError:  # pragma: no cover - depends on the extras installed
            raise ConfigError("the fake gateway server needs uvicorn: pip install 'turnout[fake]'") from None
        logging.getLogger("uvicorn.error").addFilter(quiet_drops)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
            ws="none",
            interface="asgi3",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def start(self) -> Self:
        """Serve from a background thread; returns once the server accepts connections."""
        if self._server is not None:
            return self
        self._socket = self._bind()
        server = self._server = self._make_server()
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name="turnout-fake", daemon=True
        )
        thread.start()
        limit = time.monotonic() + 15.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > limit:
                self.stop()
                raise RuntimeError("the fake gateway server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the background server and close its socket."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10.0)
        if sock is not None:
            sock.close()
            self._socket = None

    def bind(self) -> Self:
        """Take the port now (for `serve()`): clients may connect from here on."""
        if self._socket is None:
            self._socket = self._bind()
        return self

    def serve(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        sock = self.bind()._socket
        assert sock is not None
        server = self._make_server()
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.root if self._socket is not None else "not started"
        return f"<FakeGateways {where} {', '.join(self.providers)}>"
