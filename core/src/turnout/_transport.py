"""The router's own HTTP transports, and what a transport failure means.

httpx's transports bound each socket read by a timeout fixed when the request
started, so an upstream that drips its head or body a byte at a time keeps a
call alive long past its deadline. The sync transport here is httpcore's
connection pool (its public `ConnectionPool`, `NetworkBackend` and
`NetworkStream`) with one change: every socket operation is bounded by the
time left in the call (`Scope`, set by the driver around each command), and a
scope can be cancelled from another thread (a hedged leg that lost), which
shuts its socket down. The asyncio driver needs none of this: it wraps each
command in `asyncio.timeout` (its transport, cheap under concurrency, is in
`turnout._async_transport`).

Everything goes through public APIs: `handle_request` / `handle_async_request`
of httpx transports, and httpcore's documented pool and backend interfaces.
The router's own sync transport is also driven one level down (`exchange`):
httpcore's request and response as they are, without building an
`httpx.Request` and an `httpx.Response` around them on every call.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import httpcore
import httpx

from ._errors import ErrorKind, ProviderError, error_for
from ._normalize import truncate

__all__ = [
    "CORE_ERRORS",
    "SCOPE",
    "Mounts",
    "Scope",
    "SyncTransport",
    "as_httpx",
    "core_request",
    "core_target",
    "header_dict",
    "httpx_errors",
    "transport_error",
]

T = TypeVar("T")

# -- what a failure means --------------------------------------------------------

# httpx's exceptions, most specific first: (class, kind before a body, kind while
# reading one, whether the request may have been processed by then).
_TRANSPORT_KINDS: tuple[tuple[type[Exception], ErrorKind, ErrorKind, bool], ...] = (
    (httpx.ConnectTimeout, ErrorKind.TIMEOUT, ErrorKind.TIMEOUT, False),
    (httpx.PoolTimeout, ErrorKind.TIMEOUT, ErrorKind.TIMEOUT, False),
    (httpx.WriteTimeout, ErrorKind.TIMEOUT, ErrorKind.TIMEOUT, False),
    (httpx.TimeoutException, ErrorKind.TIMEOUT, ErrorKind.TIMEOUT, True),
    (httpx.ConnectError, ErrorKind.CONNECTION, ErrorKind.CONNECTION, False),
    (httpx.WriteError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED, False),
    (httpx.DecodingError, ErrorKind.PARSE_ERROR, ErrorKind.PARSE_ERROR, True),
    (httpx.RemoteProtocolError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED, True),
    (httpx.ReadError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED, True),
    (httpx.HTTPError, ErrorKind.CONNECTION, ErrorKind.STREAM_INTERRUPTED, False),
)
# Their messages may quote what was sent (a header value is the key): say only the type.
_OPAQUE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL)


def transport_error(exc: Exception, *, streaming: bool) -> ProviderError:
    """The normalized error for an exception raised while sending or reading.

    `streaming`: the response had begun (its body or events were being read).
    Built outside any `except` block by the drivers, so no exception chain
    holds the request (and its key).
    """
    exc = _what_happened(exc)
    kind, processed = ErrorKind.CONNECTION, False
    for cls, before, during, maybe in _TRANSPORT_KINDS:
        if isinstance(exc, cls):
            kind, processed = (during if streaming else before), (maybe or streaming)
            break
    name = type(exc).__name__
    detail = "" if isinstance(exc, _OPAQUE) else str(exc)
    message = f"{name}: {truncate(detail, 300)}" if detail else name
    return error_for(kind, message, code=name, maybe_processed=processed)


def _what_happened(exc: Exception) -> Exception:
    """httpx-aiohttp's transport raises `httpx.ConnectTimeout` for every aiohttp connection
    error that is no timeout (refused, DNS, a reset, a server that hung up): its cause says
    which. A connector error (aiohttp's `ClientConnectorError` and its subclasses, named, so
    aiohttp is never imported here) means nothing was sent; any other, that the connection
    broke once the request may have gone out."""
    cause = exc.__cause__
    if type(exc) is not httpx.ConnectTimeout or cause is None or isinstance(cause, TimeoutError):
        return exc
    if any(c.__name__ == "ClientConnectorError" for c in type(cause).__mro__):
        return httpx.ConnectError(str(exc))
    return httpx.RemoteProtocolError(str(exc))


# -- the bound of one call ---------------------------------------------------------


class Scope:
    """The bound every socket operation of one call (or one hedged leg) respects:
    its deadline, and a switch that stops it from another thread."""

    __slots__ = ("_active", "_lock", "_stopped", "cancelled", "clock", "deadline_at")

    def __init__(self, deadline_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_at = deadline_at
        self.clock = clock
        self.cancelled = False
        # Made only when a leg sleeps (most calls never do); set when cancelled.
        self._stopped: threading.Event | None = None
        self._active: _Stream | None = None
        self._lock = threading.Lock()

    def bound(self, timeout: float | None, expired: type[Exception]) -> float:
        """`timeout` cut to the time left; `expired` raised when none is left."""
        left = self.deadline_at - self.clock()
        if left <= 0 or self.cancelled:
            raise expired("the call's deadline passed" if not self.cancelled else "the call was cancelled")
        return left if timeout is None else min(timeout, left)

    def sleep(self, seconds: float) -> bool:
        """Sleep, or wake up at once when cancelled; True if cancelled."""
        with self._lock:
            if self.cancelled:
                return True
            if self._stopped is None:
                self._stopped = threading.Event()
            stopped = self._stopped
        return stopped.wait(seconds)

    def enter(self, stream: _Stream) -> None:
        """`stream` is about to block: a cancel from now on shuts it down."""
        with self._lock:
            if self.cancelled:
                raise httpcore.ReadError("the call was cancelled")
            self._active = stream

    def leave(self) -> None:
        self._active = None

    def cancel(self) -> None:
        """Stop the call: a socket it is blocked on is shut down at once."""
        with self._lock:
            self.cancelled = True
            active = self._active
            stopped = self._stopped
        if stopped is not None:
            stopped.set()
        if active is not None:
            active.shutdown()


SCOPE: ContextVar[Scope | None] = ContextVar("turnout_scope", default=None)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._bounded(self._inner.read, max_bytes, timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._bounded(self._inner.write, buffer, timeout, httpcore.WriteTimeout)

    def _bounded(
        self, io: Callable[[Any, float | None], T], arg: Any, timeout: float | None, expired: type
    ) -> T:
        """One socket operation, given only the time left in the call, and stoppable."""
        scope = SCOPE.get()
        if scope is None:
            return io(arg, timeout)
        timeout = scope.bound(timeout, expired)
        scope.enter(self)
        try:
            return io(arg, timeout)
        finally:
            scope.leave()

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _connect_timeout(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shutdown(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _connect_timeout(timeout: float | None) -> float | None:
    scope = SCOPE.get()
    return timeout if scope is None else scope.bound(timeout, httpcore.ConnectTimeout)


class _Backend(httpcore.NetworkBackend):
    """httpcore's sync backend, each stream bounded by the current call's scope."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _connect_timeout(timeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _connect_timeout(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's exceptions as httpx's (same names), most specific first, as httpx's own
# transport maps them.
_MAPPED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = tuple(
    (getattr(httpcore, name), getattr(httpx, name))
    for name in (
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ConnectError",
        "ReadError",
        "WriteError",
        "ProxyError",
        "UnsupportedProtocol",
        "RemoteProtocolError",
        "LocalProtocolError",
        "TimeoutException",
        "NetworkError",
    )
)


@contextlib.contextmanager
def httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except tuple(c for c, _ in _MAPPED) as exc:
        mapped = next(target for source, target in _MAPPED if isinstance(exc, source))
        raise mapped(str(exc), request=request) from None


# What httpcore raises, caught by the drivers beside httpx's own exceptions (its
# exceptions share no base class but Exception).
CORE_ERRORS: tuple[type[Exception], ...] = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


def as_httpx(exc: Exception) -> Exception:
    """An httpcore exception as the httpx one of the same name (as httpx's transports
    raise it, with no request attached); any other exception as it is."""
    for source, target in _MAPPED:
        if isinstance(exc, source):
            return target(str(exc))
    return exc


class _Body(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes], request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with httpx_errors(self._request):
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class SyncTransport(httpx.BaseTransport):
    """An httpx transport over httpcore's pool, bounded by the current call's scope."""

    def __init__(
        self,
        *,
        proxy: str | None = None,
        max_connections: int = 200,
        max_keepalive: int = 50,
        keepalive_expiry: float = 5.0,
    ) -> None:
        ssl_context = httpx.create_ssl_context()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            proxy=httpcore.Proxy(proxy, ssl_context=ssl_context) if proxy else None,
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=keepalive_expiry,
            network_backend=_Backend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        with httpx_errors(request):
            response = self._pool.handle_request(core_request(request))
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, request),
            extensions=response.extensions,
        )

    def exchange(
        self, method: bytes, url: str, headers: list[tuple[bytes, bytes]], content: bytes, timeout: float
    ) -> httpcore.Response:
        """Send one request through the pool, as `handle_request` would once httpx had
        built it: the same wire request (`Host` first, `Content-Length` last, as
        `httpx.Request` adds them), without the httpx objects. The response's
        `stream` is read and its `close()` called by the caller; httpcore's
        exceptions are left to the caller (see `as_httpx`)."""
        target, host = core_target(url)
        given = {key.lower() for key, _ in headers}
        wire = list(headers) if b"host" in given else [(b"Host", host), *headers]
        if (content or method in _BODY_METHODS) and b"content-length" not in given:
            wire.append((b"Content-Length", str(len(content)).encode()))
        request = httpcore.Request(
            method,
            target,
            headers=wire,
            content=content,
            extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}},
        )
        return self._pool.handle_request(request)

    def close(self) -> None:
        self._pool.close()


# Methods httpx gives a `Content-Length: 0` when they carry no body.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


def core_request(request: httpx.Request) -> httpcore.Request:
    """httpcore's request for an httpx one, as httpx's own transport builds it."""
    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


@functools.lru_cache(maxsize=512)
def core_target(url: str) -> tuple[httpcore.URL, bytes]:
    """httpcore's URL of `url` and its `Host` header, parsed once by httpx's rules (a
    router sends to the same few URLs again and again)."""
    parsed = httpx.URL(url)
    scheme, host, port, target = parsed.raw_scheme, parsed.raw_host, parsed.port, parsed.raw_path
    return httpcore.URL(scheme=scheme, host=host, port=port, target=target), parsed.netloc


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers as `httpx.Headers.items()` gives them: names lower-cased, the
    values of a repeated name joined by ", ", decoded as ASCII, else UTF-8, else Latin-1
    (one encoding for them all)."""
    pairs = list(raw)
    try:
        decoded = [(k.lower().decode("ascii"), v.decode("ascii")) for k, v in pairs]
    except UnicodeDecodeError:
        encoding = "utf-8" if _decodes(pairs, "utf-8") else "iso-8859-1"
        decoded = [(k.lower().decode(encoding), v.decode(encoding)) for k, v in pairs]
    headers: dict[str, str] = {}
    for key, value in decoded:
        if key in headers:
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    return headers


def _decodes(pairs: list[tuple[bytes, bytes]], encoding: str) -> bool:
    try:
        for key, value in pairs:
            key.decode(encoding)
            value.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# -- which transport a URL goes through -----------------------------------------


class Mounts(Generic[T]):
    """The transport for each URL: the user's `mounts` (httpx's pattern keys:
    `"all://"`, `"https://"`, `"https://api.example.com"`, `"all://*.example.com"`),
    else a proxy from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...), else the default."""

    def __init__(
        self,
        default: T,
        mounts: Mapping[str, T] | None = None,
        *,
        proxy: Callable[[str], T] | None = None,
    ) -> None:
        self.default = default
        self._patterns = sorted(
            ((_Pattern(key), transport) for key, transport in (mounts or {}).items()),
            key=lambda item: item[0].priority,
        )
        self._env = urllib.request.getproxies_environment() if proxy is not None else {}
        self._proxies: dict[str, T] = {}
        self._make_proxy = proxy
        self._cache: dict[tuple[str, str, int | None], T] = {}

    def all(self) -> list[T]:
        return [self.default, *(t for _, t in self._patterns), *self._proxies.values()]

    def for_url(self, url: httpx.URL) -> T:
        key = (url.scheme, url.host, url.port)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._choose(url)
        return found

    def _choose(self, url: httpx.URL) -> T:
        for pattern, transport in self._patterns:
            if pattern.matches(url):
                return transport
        proxy_url = self._env.get(url.scheme) or self._env.get("all")
        if proxy_url and self._make_proxy is not None:
            if urllib.request.proxy_bypass(url.host):
                return self.default
            if proxy_url not in self._proxies:
                self._proxies[proxy_url] = self._make_proxy(proxy_url)
            return self._proxies[proxy_url]
        return self.default


class _Pattern:
    """One mount key: scheme (or `all`), and optionally a host (`*.x` for its subdomains) and port."""

    def __init__(self, key: str) -> None:
        scheme, _, rest = key.partition("://")
        host, _, port = rest.rstrip("/").partition(":")
        self.scheme = scheme
        self.host = host
        self.port = int(port) if port.isdigit() else None
        # More specific patterns first, as httpx orders its mounts.
        self.priority = (-len(host), port == "", scheme == "all")

    def matches(self, url: httpx.URL) -> bool:
        if self.scheme not in ("all", url.scheme):
            return False
        if self.port is not None and url.port != self.port:
            return False
        if not self.host or self.host == "*":
            return True
        if self.host.startswith("*."):
            return url.host.endswith(self.host[1:])
        return url.host == self.host
