"""Fake gateways over real HTTP: every installed provider's emulator on one loopback server.

    from turnout.fake import FakeGateways

    with FakeGateways(faults={"meshapi": {"errors": {"rate_limited": 0.2}}}, seed=7) as fake:
        fake.script("mume", Fault(error="authentication"))     # the next mume response, exactly
        router = turnout.Router([turnout.Deployment("m", "meshapi", "x", api_key="rsk_test",
                                                    base_url=fake.base_url("meshapi"))])
        ...
        fake.requests("meshapi")                               # how many requests it answered

Each provider is served under its own path prefix (`/meshapi/...`,
`/mume/...`): the prefix is stripped and the rest of the path handed to the
provider's emulator, which answers exactly as its gateway does. Streams are
real chunked HTTP responses written chunk by chunk, and a `drop_after` fault
really cuts the connection mid-body (the terminating chunk never comes).

What goes wrong, and when, is set per provider:

- a fault profile (`FaultProfile`): error rates by name (a kind or the
  provider's own code), HTML error pages, malformed bodies, error frames and
  dropped connections in streams, latency, a slow first byte, `Retry-After`
  values. Rates are drawn from a random source seeded per provider, so a run
  is reproducible;
- a script: the next N responses' faults exactly (`script(...)`), consumed
  one per request before the profile is consulted;
- at runtime through the admin endpoints under `/_faults` (see docs/cli.md).

Needs the `turnout[fake]` extra (uvicorn). Not imported by `import turnout`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from attrs import asdict, field, fields, frozen

from ._errors import ConfigError
from .emulation import EmulatedRequest, EmulatedResponse, Emulator, Fault

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import Message, Receive, Scope, Send

    from ._plugins import Plugins

__all__ = [
    "ADMIN_PREFIX",
    "FakeGateways",
    "FaultProfile",
    "FaultsConfig",
    "Served",
    "fault_from_mapping",
    "load_faults",
]

ADMIN_PREFIX = "/_faults"
# Where each provider's API lives under its gateway's host, when its default
# base URL does not say (SaaS-LiteLLM is self-hosted: `http://host:8003/api`).
_BASE_PATHS: Mapping[str, str] = {"litellm": "/api"}
_LOG_SIZE = 10_000
_JSON = (("content-type", "application/json"),)


class _Dropped(Exception):
    """Raised inside the ASGI send loop: uvicorn closes the connection mid-body."""


class _QuietDrops(logging.Filter):
    """uvicorn logs every exception an app raises; a planned drop is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        return not (info and isinstance(info[1], _Dropped))


_quiet = _QuietDrops()


# -- fault profiles ------------------------------------------------------------


def _rate(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError("must be a rate between 0 and 1", path=path, value=value)
    return float(value)


def _seconds(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError("must be a number of seconds (>= 0)", path=path, value=value)
    return float(value)


def _count(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("must be a whole number (>= 0)", path=path, value=value)
    return value


def _rates(value: Any, path: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError("must be a table of name = rate", path=path, value=value)
    return {str(name): _rate(rate, f"{path}.{name}") for name, rate in value.items()}


def _status_rates(value: Any, path: str) -> dict[int, float]:
    result: dict[int, float] = {}
    for name, rate in _rates(value, path).items():
        if not name.isdigit() or not 400 <= int(name) <= 599:
            raise ConfigError("must be an HTTP error status (400-599)", path=f"{path}.{name}", value=name)
        result[int(name)] = rate
    return result


def _retry_afters(value: Any, path: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError("must not be empty", path=path)
        return tuple(_seconds(v, f"{path}[{i}]") for i, v in enumerate(value))
    return (_seconds(value, path),)


@frozen
class FaultProfile:
    """How often one provider fails, and how. Rates are per request.

    One draw per request picks at most one of: an HTML page (`html`, by
    status), an error (`errors`, by name: an ErrorKind value or the provider's
    own code), a malformed 200 (`malformed`). A second draw picks, for a
    streamed success, an in-band error frame (`stream_errors`, after
    `stream_error_after` content chunks) or a dropped connection (`drops`,
    after `drop_after` chunks).
    """

    errors: Mapping[str, float] = field(factory=dict)
    html: Mapping[int, float] = field(factory=dict)
    malformed: float = 0.0
    stream_errors: Mapping[str, float] = field(factory=dict)
    stream_error_after: int = 1
    drops: float = 0.0
    drop_after: int = 1
    # Retry-After sent with errors: one value, or several to pick from at random.
    retry_after: tuple[float, ...] = ()
    # Seconds before the response starts, before its first body byte, between stream chunks.
    latency: float = 0.0
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0

    @classmethod
    def from_mapping(cls, data: Any, path: str = "faults") -> FaultProfile:
        """A profile from a TOML/JSON table; mistakes raise ConfigError naming the path."""
        if isinstance(data, FaultProfile):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError("must be a table", path=path, value=data)
        known = {a.name for a in fields(FaultProfile)}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown key; known: {', '.join(sorted(known))}", path=f"{path}.{key}")
        g = data.get
        profile = cls(
            errors=_rates(g("errors", {}), f"{path}.errors"),
            html=_status_rates(g("html", {}), f"{path}.html"),
            malformed=_rate(g("malformed", 0.0), f"{path}.malformed"),
            stream_errors=_rates(g("stream_errors", {}), f"{path}.stream_errors"),
            stream_error_after=_count(g("stream_error_after", 1), f"{path}.stream_error_after"),
            drops=_rate(g("drops", 0.0), f"{path}.drops"),
            drop_after=_count(g("drop_after", 1), f"{path}.drop_after"),
            retry_after=_retry_afters(g("retry_after"), f"{path}.retry_after"),
            latency=_seconds(g("latency", 0.0), f"{path}.latency"),
            first_byte_delay=_seconds(g("first_byte_delay", 0.0), f"{path}.first_byte_delay"),
            chunk_delay=_seconds(g("chunk_delay", 0.0), f"{path}.chunk_delay"),
        )
        if sum(profile.errors.values()) + sum(profile.html.values()) + profile.malformed > 1.0 + 1e-9:
            raise ConfigError("errors, html and malformed rates add up to more than 1", path=path)
        if sum(profile.stream_errors.values()) + profile.drops > 1.0 + 1e-9:
            raise ConfigError("stream_errors and drops rates add up to more than 1", path=path)
        return profile

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-able data (what the admin endpoint shows)."""
        data = asdict(self)
        data["html"] = {str(k): v for k, v in self.html.items()}
        data["retry_after"] = list(self.retry_after)
        return data

    @property
    def quiet(self) -> bool:
        return self == _QUIET

    def draw(self, rng: random.Random) -> Fault:
        """The fault for one request (two draws, always, so runs stay reproducible)."""
        first, second = rng.random(), rng.random()
        delays: dict[str, Any] = {"latency": self.latency, "first_byte_delay": self.first_byte_delay}
        total = 0.0
        for status, rate in self.html.items():
            total += rate
            if first < total:
                return Fault(html=status, **delays)
        for name, rate in self.errors.items():
            total += rate
            if first < total:
                wait = rng.choice(self.retry_after) if self.retry_after else None
                return Fault(error=name, retry_after=wait, **delays)
        total += self.malformed
        if first < total:
            return Fault(malformed=True, **delays)
        total = 0.0
        for name, rate in self.stream_errors.items():
            total += rate
            if second < total:
                return Fault(stream_error=name, stream_error_after=self.stream_error_after, **delays)
        total += self.drops
        if second < total:
            return Fault(drop_after=self.drop_after, **delays)
        return Fault(**delays)


_QUIET = FaultProfile()

_FAULT_FIELDS = {a.name for a in fields(Fault)}


def fault_from_mapping(data: Any, path: str = "fault") -> Fault | None:
    """A `Fault` from JSON (`{"error": "rate_limited", "retry_after": 0.5}`); null or
    `{}` is a normal answer."""
    if data is None or isinstance(data, Fault):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError("must be an object of Fault fields or null", path=path, value=data)
    for key in data:
        if key not in _FAULT_FIELDS:
            raise ConfigError(f"unknown key; known: {', '.join(sorted(_FAULT_FIELDS))}", path=f"{path}.{key}")
    kwargs: dict[str, Any] = {}
    for name in ("error", "stream_error"):
        if data.get(name) is not None:
            if not isinstance(data[name], str):
                raise ConfigError("must be a string", path=f"{path}.{name}", value=data[name])
            kwargs[name] = data[name]
    if data.get("html") is not None:
        status = data["html"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigError("must be an HTTP error status", path=f"{path}.html", value=status)
        kwargs["html"] = status
    if "malformed" in data:
        if not isinstance(data["malformed"], bool):
            raise ConfigError("must be true or false", path=f"{path}.malformed", value=data["malformed"])
        kwargs["malformed"] = data["malformed"]
    if data.get("retry_after") is not None:
        kwargs["retry_after"] = _seconds(data["retry_after"], f"{path}.retry_after")
    for name in ("stream_error_after", "drop_after"):
        if data.get(name) is not None:
            kwargs[name] = _count(data[name], f"{path}.{name}")
    for name in ("latency", "first_byte_delay"):
        if data.get(name) is not None:
            kwargs[name] = _seconds(data[name], f"{path}.{name}")
    return Fault(**kwargs)


@frozen
class FaultsConfig:
    """A faults file: a seed and a profile per provider. `"*"` holds defaults for
    every provider: a provider's own table overrides its keys."""

    profiles: Mapping[str, FaultProfile] = field(factory=dict)
    seed: int | None = None

    @classmethod
    def from_mapping(cls, data: Any, path: str = "") -> FaultsConfig:
        if isinstance(data, FaultsConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError("the faults must be a table of provider = profile", value=data)
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError("must be an integer", path=_join(path, "seed"), value=seed)
        # "*" holds defaults: a provider's own table overrides its keys.
        default = data.get("*", {})
        if not isinstance(default, Mapping):
            raise ConfigError("must be a table", path=_join(path, "*"), value=default)
        profiles: dict[str, FaultProfile] = {}
        for name, value in data.items():
            if name == "seed":
                continue
            where = _join(path, str(name))
            if isinstance(value, FaultProfile) or not isinstance(value, Mapping):
                profiles[str(name)] = FaultProfile.from_mapping(value, where)
            else:
                profiles[str(name)] = FaultProfile.from_mapping({**default, **value}, where)
        return cls(profiles, seed)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_faults(source: str | os.PathLike[str] | Mapping[str, Any] | FaultsConfig | None) -> FaultsConfig:
    """Faults from a TOML or JSON file (by extension; TOML otherwise) or the same mapping."""
    if source is None:
        return FaultsConfig()
    if isinstance(source, FaultsConfig | Mapping):
        return FaultsConfig.from_mapping(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the faults file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the faults file is not UTF-8", path=str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"invalid {kind}: {exc}", path=str(path)) from None
    return FaultsConfig.from_mapping(data)


# -- what was served -----------------------------------------------------------


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


def describe(fault: Fault | None, *, streamed: bool = True) -> str:
    """A fault in a few words, for logs and tables ("" for none). The stream faults
    are left out of a reply that is not a stream (they did not apply)."""
    if fault is None:
        return ""
    if fault.html is not None:
        return f"HTML {fault.html} page"
    if fault.error is not None:
        after = f", Retry-After {fault.retry_after:g}s" if fault.retry_after is not None else ""
        return f"{fault.error}{after}"
    if fault.malformed:
        return "malformed body"
    parts = []
    if fault.stream_error is not None and streamed:
        parts.append(f"{fault.stream_error} frame after {fault.stream_error_after} chunks")
    if fault.drop_after is not None and streamed:
        parts.append(f"dropped after {fault.drop_after} chunks")
    if fault.latency:
        parts.append(f"latency {fault.latency:g}s")
    if fault.first_byte_delay:
        parts.append(f"first byte after {fault.first_byte_delay:g}s")
    return ", ".join(parts)


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

    `faults`: a `FaultsConfig`, the same mapping (`{"meshapi": {"errors":
    {"rate_limited": 0.2}}}`) or a TOML/JSON file. `seed` (else the file's)
    makes fault rates reproducible. `emulators` replaces the installed ones
    (`{"meshapi": MeshAPIEmulator()}`). Start it with `with` (a background
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
        default = config.profiles.get("*", _QUIET)
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
            from ._plugins import Plugins

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
        """Where `provider`'s emulator is served: `http://127.0.0.1:PORT/meshapi`."""
        self._gateway(provider)
        return f"{self.root}/{provider}"

    def base_url(self, provider: str) -> str:
        """The `base_url` a deployment of `provider` needs: `url(provider)` plus the path
        its gateway's base URLs carry (`/api/v1` for mume, `/v1` for mythicdot, ...)."""
        return self.url(provider) + self.base_path(provider)

    def base_path(self, provider: str) -> str:
        if provider in _BASE_PATHS:
            return _BASE_PATHS[provider]
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
        body = await _read_body(receive)
        if body is None:
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/") or path == "/":
            status, payload = self._admin(method, path, body)
            await _send_json(send, status, payload)
            return
        name, _, rest = path.lstrip("/").partition("/")
        gateway = self._gateways.get(name)
        if gateway is None:
            detail = f"no fake gateway at /{name}; serving: {', '.join(self.providers)}"
            await _send_json(send, 404, {"detail": detail})
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
        await _send_reply(send, reply, fault, chunk_delay)

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
        logging.getLogger("uvicorn.error").addFilter(_quiet)
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


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    reply = EmulatedResponse.json(status, payload)
    await _send_reply(send, reply, None, 0.0)


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_reply(send: Send, reply: EmulatedResponse, fault: Fault | None, chunk_delay: float) -> None:
    """Write a reply: the whole body, or chunk by chunk (chunked transfer-encoding),
    raising mid-body to cut the connection when the reply says so."""
    latency = fault.latency if fault is not None else 0.0
    first_byte = fault.first_byte_delay if fault is not None else 0.0
    if latency:
        await asyncio.sleep(latency)
    headers: Sequence[tuple[str, str]] = reply.headers
    if reply.chunks is None:
        headers = [*headers, ("content-length", str(len(reply.body)))]
    await send({"type": "http.response.start", "status": reply.status, "headers": _encode_headers(headers)})
    if first_byte:
        await asyncio.sleep(first_byte)
    if reply.chunks is None:
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        return
    chunks, drop_after = reply.chunks, reply.drop_after
    for index, chunk in enumerate(chunks):
        if drop_after is not None and index >= drop_after:
            raise _Dropped(f"connection dropped after {drop_after} chunks")
        if index and chunk_delay:
            await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if drop_after is not None and drop_after >= len(chunks):
        raise _Dropped(f"connection dropped after {drop_after} chunks")
    await send({"type": "http.response.body", "body": b"", "more_body": False})
