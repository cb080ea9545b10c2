"""A loopback upstream that misbehaves on purpose, below HTTP when it likes.

A raw asyncio server on 127.0.0.1 in a background thread: each scenario
writes whatever bytes it wants, when it wants (a response head dripped a line
at a time, a body a byte every 2.5 s, an SSE stream that never completes an
event, a gzip bomb, a reset), so the client under test meets what a broken or
hostile gateway really sends, through real sockets.

URLs are `http://127.0.0.1:<port>/<token>/<scenario>/v1/...`: the scenario
picks the behaviour, the token groups what one run did (requests seen,
connections still open), which `GET /stats/<token>` reports as JSON, so a
run in another process can ask. Every handler ends by itself (`LIFETIME`),
and `close()` ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

__all__ = ["LIFETIME", "SCENARIOS", "Hostile", "Request"]

# No handler lives longer than this, whatever it is doing.
LIFETIME = 60.0
# The repeated unit of the gzip bombs: 1 MiB, inflating from about 1 kB on the wire.
_MIB = 1 << 20
_GIB_IN_MIB = 1024


class Request:
    """What the client sent: enough to choose and shape an answer."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        parts = target.split("?", 1)[0].strip("/").split("/")
        self.token = parts[0] if parts else ""
        self.scenario = parts[1] if len(parts) > 1 else ""
        self.rest = "/" + "/".join(parts[2:])

    @property
    def streaming(self) -> bool:
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError:
            return False
        return isinstance(payload, dict) and payload.get("stream") is True

    @property
    def key(self) -> str:
        return self.headers.get("authorization", "").removeprefix("Bearer ")


class Conn:
    """One accepted connection, with the moves a scenario makes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int, headers: list[tuple[str, str]], *, length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} Whatever"]
        lines += [f"{name}: {value}" for name, value in headers]
        if length is not None:
            lines.append(f"content-length: {length}")
        lines.append("connection: close")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        base = JSON_HEAD
        await self.head(status, (headers if headers is not None else base), length=len(body))
        await self.send(body)

    async def until_closed(self) -> None:
        """Say nothing more; return when the client closes its end."""
        while await self.reader.read(4096):
            pass

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Scenario = Callable[[Conn, Request], Awaitable[None]]
Headers = Sequence[tuple[str, str]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return register


def completion(text: str = "ok") -> bytes:
    message = {"role": "assistant", "content": text}
    return json.dumps({"id": "c1", "choices": [{"message": message, "finish_reason": "stop"}]}).encode()


def sse_success(text: str = "ok") -> bytes:
    frames = [
        {"id": "c1", "choices": [{"delta": {"content": text}, "finish_reason": None}]},
        {"id": "c1", "choices": [{"delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + b"data: [DONE]\n\n"


SSE_HEAD = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
JSON_HEAD = [("content-type", "application/json")]


async def either(conn: Conn, request: Request, stream: bytes, chat: bytes, headers: Headers = ()) -> None:
    """`stream` as an event stream to a stream request, else `chat` as JSON; status 200."""
    if request.streaming:
        await conn.answer(200, stream, [*SSE_HEAD, *headers])
    else:
        await conn.answer(200, chat, [*JSON_HEAD, *headers])


async def open_head(conn: Conn, request: Request) -> None:
    """A 200 head: an event stream's, or a JSON body's promising 1000 bytes."""
    if request.streaming:
        await conn.head(200, SSE_HEAD)
    else:
        await conn.head(200, JSON_HEAD, length=1000)


async def begin(conn: Conn, request: Request, chat_part: bytes) -> None:
    """The start of an answer: a head and the first event of a chunked stream, or a
    head promising 1000 bytes and `chat_part` of them."""
    if request.streaming:
        await conn.head(200, [*SSE_HEAD, ("transfer-encoding", "chunked")])
        frame = sse_success().split(b"\n\n")[0] + b"\n\n"
        await conn.send(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
    else:
        await conn.head(200, JSON_HEAD, length=1000)
        await conn.send(chat_part)


# -- answers that are fine --------------------------------------------------------


@scenario("ok")
async def ok(conn: Conn, request: Request) -> None:
    await either(conn, request, sse_success(), completion())


# -- rows 1 and 2: streams that never complete an event ----------------------------


async def _forever(conn: Conn, piece: bytes, every: float) -> None:
    while True:
        await conn.send(piece)
        await asyncio.sleep(every)


@scenario("sse-comments")
async def sse_comments(conn: Conn, request: Request) -> None:
    await conn.head(200, SSE_HEAD)
    await _forever(conn, b": keep-alive\n\n", 0.05)


@scenario("sse-blank")
async def sse_blank(conn: Conn, request: Request) -> None:
    await conn.head(200, SSE_HEAD)
    await _forever(conn, b"\n", 0.02)


@scenario("sse-endless-line")
async def sse_endless_line(conn: Conn, request: Request) -> None:
    """One `data:` line that grows slowly and never ends."""
    await conn.head(200, SSE_HEAD)
    await conn.send(b"data: ")
    await _forever(conn, b"x" * 256, 0.02)


@scenario("sse-flood-line")
async def sse_flood_line(conn: Conn, request: Request) -> None:
    """One `data:` line sent as fast as the socket takes it: 1 GiB if nothing stops it."""
    await conn.head(200, SSE_HEAD)
    await conn.send(b"data: ")
    block = b"x" * _MIB
    for _ in range(_GIB_IN_MIB):
        await conn.send(block)


@scenario("sse-gzip-bomb")
async def sse_gzip_bomb(conn: Conn, request: Request) -> None:
    """A gzip-encoded SSE stream: one `data:` line of 1 GiB, 1 MiB on the wire."""
    await conn.head(200, [*SSE_HEAD, ("content-encoding", "gzip")])
    for piece in gzip_bomb(b"data: ", b"a"):
        await conn.send(piece)
    await conn.until_closed()


@scenario("gzip-bomb")
async def gzip_bomb_body(conn: Conn, request: Request) -> None:
    """A JSON answer that inflates to 1 GiB."""
    pieces = list(gzip_bomb(b'{"choices": "', b" "))
    headers = [("content-type", "application/json"), ("content-encoding", "gzip")]
    await conn.head(200, headers, length=sum(map(len, pieces)))
    for piece in pieces:
        await conn.send(piece)


# -- rows 3 and 4: a head or a body dripped ------------------------------------------


@scenario("head-drip")
async def head_drip(conn: Conn, request: Request) -> None:
    """One header line every 0.3 s: never a whole head."""
    await conn.send(b"HTTP/1.1 200 OK\r\n")
    for n in range(10_000):
        await asyncio.sleep(0.3)
        await conn.send(f"x-drip-{n}: {'y' * 8}\r\n".encode())


@scenario("body-drip")
async def body_drip(conn: Conn, request: Request) -> None:
    """A head at once, then the body a byte every 2.5 s."""
    await open_head(conn, request)
    for _ in range(1000):
        await conn.send(b"d" if request.streaming else b" ")
        await asyncio.sleep(2.5)


@scenario("stall")
async def stall(conn: Conn, request: Request) -> None:
    """Never answer (until the client goes away)."""
    await conn.until_closed()


@scenario("stall-after-head")
async def stall_after_head(conn: Conn, request: Request) -> None:
    await open_head(conn, request)
    await conn.until_closed()


# -- bodies that are not what was asked for ---------------------------------------------


@scenario("html")
async def html(conn: Conn, request: Request) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"<p>nginx</p>" * 500 + b"</body></html>"
    await conn.answer(200, page, [("content-type", "text/html")])


@scenario("html-error")
async def html_error(conn: Conn, request: Request) -> None:
    page = b"<html><body>" + b"<p>the upstream is gone</p>" * 400_000 + b"</body></html>"
    await conn.answer(502, page, [("content-type", "text/html")])


@scenario("empty")
async def empty(conn: Conn, request: Request) -> None:
    await conn.answer(200, b"")


@scenario("non-utf8")
async def non_utf8(conn: Conn, request: Request) -> None:
    chat = b'{"choices": [{"message": {"content": "\xff\xfe\xc3"}}]}'
    await either(conn, request, b"data: \xff\xfe\xfd{\x80}\n\n", chat)


@scenario("wrong-shape")
async def wrong_shape(conn: Conn, request: Request) -> None:
    stream = b'data: {"choices": "none"}\n\ndata: [1, 2]\n\n'
    await either(conn, request, stream, b'{"choices": [{"message": 7}], "usage": "lots"}')


@scenario("truncated")
async def truncated(conn: Conn, request: Request) -> None:
    """The start of an answer, and a clean close."""
    await begin(conn, request, b'{"choices"')


@scenario("reset")
async def reset(conn: Conn, request: Request) -> None:
    conn.reset()


@scenario("reset-mid-body")
async def reset_mid_body(conn: Conn, request: Request) -> None:
    """A stream dropped mid-body: one chunk of text (or part of a body), then a TCP reset."""
    await begin(conn, request, b'{"choices": [')
    await asyncio.sleep(0.05)
    conn.reset()


@scenario("bad-chunking")
async def bad_chunking(conn: Conn, request: Request) -> None:
    headers = [("content-type", "text/event-stream" if request.streaming else "application/json")]
    await conn.head(200, [*headers, ("transfer-encoding", "chunked")])
    await conn.send(b"zz\r\nnot a chunk size\r\n0\r\n\r\n")


@scenario("huge-headers")
async def huge_headers(conn: Conn, request: Request) -> None:
    """Header lines as fast as the socket takes them: 64 MiB of head if nothing stops it."""
    await conn.send(b"HTTP/1.1 200 OK\r\n")
    line = b"x-filler: " + b"f" * 8000 + b"\r\n"
    for _ in range(8_000):
        await conn.send(line)


@scenario("garbage")
async def garbage(conn: Conn, request: Request) -> None:
    await conn.send(b"\x00\x01SSH-2.0-OpenSSH\r\n\r\n" * 10)
    await conn.until_closed()


async def _endless(conn: Conn, delta: dict[str, Any]) -> None:
    """The same valid chunk, as fast as the socket takes it, never ending."""
    await conn.head(200, SSE_HEAD)
    frame = {"id": "c1", "choices": [{"delta": delta, "finish_reason": None}]}
    data = b"data: " + json.dumps(frame).encode() + b"\n\n"
    for _ in range(100_000):
        await conn.send(data)


@scenario("sse-endless-chunks")
async def sse_endless_chunks(conn: Conn, request: Request) -> None:
    """Chunks of 64 KiB of text each."""
    await _endless(conn, {"content": "t" * 65536})


@scenario("sse-endless-tool-args")
async def sse_endless_tool_args(conn: Conn, request: Request) -> None:
    """One tool call whose arguments come 64 KiB at a time, for ever."""
    function = {"name": "f", "arguments": "a" * 65536}
    call = {"index": 0, "id": "call_1", "type": "function", "function": function}
    await _endless(conn, {"tool_calls": [call]})


@scenario("informational-forever")
async def informational_forever(conn: Conn, request: Request) -> None:
    """`102 Processing` heads, one every 0.1 s: never a final answer."""
    for _ in range(10_000):
        await conn.send(b"HTTP/1.1 102 Processing\r\n\r\n")
        await asyncio.sleep(0.1)


@scenario("redirect")
async def redirect(conn: Conn, request: Request) -> None:
    """A redirect to somewhere else: never followed with the key."""
    await conn.answer(302, b"", [("location", "http://198.51.100.7/steal"), ("content-type", "text/plain")])


@scenario("deep-json")
async def deep_json(conn: Conn, request: Request) -> None:
    body = b"[" * 500_000 + b"]" * 500_000
    await either(conn, request, b"data: " + body + b"\n\n", body)


@scenario("huge-number")
async def huge_number(conn: Conn, request: Request) -> None:
    number = b"9" * 100_000
    usage = b'"usage": {"prompt_tokens": ' + number + b"}"
    stream = b'data: {"choices": [], ' + usage + b"}\n\n"
    await either(conn, request, stream, b'{"choices": [{"message": {"content": "x"}}], ' + usage + b"}")


@scenario("status-999")
async def status_999(conn: Conn, request: Request) -> None:
    await conn.answer(999, b'{"error": {"message": "what"}}')


@scenario("brotli")
async def brotli(conn: Conn, request: Request) -> None:
    """An encoding that was not asked for."""
    headers = [("content-type", "application/json"), ("content-encoding", "br")]
    await conn.answer(200, b"\x1b\x00\x00", headers)


# -- row 10: a gateway echoing the key ----------------------------------------------------


async def _echo_key(conn: Conn, request: Request, status: int) -> None:
    """The key it was sent, in every field of an OpenAI error envelope and a header."""
    key = request.key
    error = {"message": f"bad key {key}", "type": key, "code": key, "param": key}
    headers = [("content-type", "application/json"), ("x-request-id", key), ("retry-after", "0")]
    if request.streaming and status == 429:
        frame = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        await conn.answer(200, frame, [*SSE_HEAD, ("x-request-id", key)])
        return
    await conn.answer(status, json.dumps({"error": error}).encode(), headers)


@scenario("echo-key")
async def echo_key(conn: Conn, request: Request) -> None:
    await _echo_key(conn, request, 401)


@scenario("echo-key-retried")
async def echo_key_retried(conn: Conn, request: Request) -> None:
    """A 429 (or an error frame in a stream): retried, so the key is in every attempt."""
    await _echo_key(conn, request, 429)


# -- row 12: time hints out of range ---------------------------------------------------------

HINTS = {
    "retry-after": [("retry-after", "1e308")],
    "retry-after-ms": [("retry-after-ms", "1e308")],
    "ratelimit-reset": [("x-ratelimit-reset", "1e308")],
    "year-9999": [("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
    "nan": [("retry-after", "nan"), ("x-ratelimit-reset", "nan")],
}


def _hint(headers: list[tuple[str, str]]) -> Scenario:
    async def answer(conn: Conn, request: Request) -> None:
        body = json.dumps({"error": {"message": "slow down", "type": "rate_limit", "code": "slow_down"}})
        await conn.answer(429, body.encode(), [("content-type", "application/json"), *headers])

    return answer


for _name, _headers in HINTS.items():
    SCENARIOS[f"hint-{_name}"] = _hint(_headers)


@scenario("reset-inf")
async def reset_inf(conn: Conn, request: Request) -> None:
    """A success saying the quota is used up and resets at infinity."""
    headers = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "inf")]
    await either(conn, request, sse_success(), completion(), headers)


@scenario("remaining-nan")
async def remaining_nan(conn: Conn, request: Request) -> None:
    headers = [("x-ratelimit-remaining", "nan"), ("x-ratelimit-reset", "60")]
    await either(conn, request, sse_success(), completion(), headers)


# -- row 14: ModelRoute, polling, with a cancel endpoint that never answers ----------------


@scenario("modelroute-stalled-cancel")
async def modelroute(conn: Conn, request: Request) -> None:
    if request.rest.endswith("/cancel"):
        await conn.until_closed()
        return
    execution = {"id": "ex-1", "status": "PENDING", "model": "m"}
    await conn.answer(202 if request.method == "POST" else 200, json.dumps(execution).encode())


# -- the bombs ---------------------------------------------------------------------------


_BOMBS: dict[tuple[bytes, bytes], list[bytes]] = {}


def gzip_bomb(prefix: bytes, fill: bytes) -> Iterator[bytes]:
    """gzip of `prefix` + 1 GiB of `fill`, in pieces, about 1 MiB in all.

    Each MiB is compressed once and flushed to a byte boundary (Z_FULL_FLUSH):
    from the second on, every MiB's compressed bytes are the same, so the
    whole member is built without compressing a gigabyte."""
    pieces = _BOMBS.get((prefix, fill))
    if pieces is None:
        block = fill * _MIB
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        first = deflate.compress(prefix + block) + deflate.flush(zlib.Z_FULL_FLUSH)
        steady = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
        tail = deflate.flush()
        crc = zlib.crc32(prefix)
        for _ in range(_GIB_IN_MIB):
            crc = zlib.crc32(block, crc)
        size = (len(prefix) + _GIB_IN_MIB * _MIB) & 0xFFFFFFFF
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        pieces = [header + first, *([steady] * (_GIB_IN_MIB - 1)), tail + struct.pack("<II", crc, size)]
        _BOMBS[(prefix, fill)] = pieces
    yield from pieces


# -- the server ----------------------------------------------------------------------------


class Hostile:
    """The server, in a thread of its own: `start()`, `url(token, scenario)`, `close()`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-upstream", daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.requests: dict[str, Counter[str]] = defaultdict(Counter)
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()

    def start(self) -> Hostile:
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0, limit=1 << 20))
        self.port = self.server.sockets[0].getsockname()[1]
        # Built once, here, not inside the first request that needs them.
        for prefix, fill in ((b"data: ", b"a"), (b'{"choices": "', b" ")):
            list(gzip_bomb(prefix, fill))
        return self

    def url(self, token: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}/{name}/v1"

    def stats(self, token: str) -> dict[str, Any]:
        with self.lock:
            return {"requests": dict(self.requests[token]), "open": self.open[token]}

    def close(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        conn = Conn(reader, writer)
        token = ""
        try:
            async with asyncio.timeout(LIFETIME):
                request = await _read_request(reader)
                if request is None:
                    return
                token = request.token
                if token == "stats":
                    body = json.dumps(self.stats(request.scenario)).encode()
                    await conn.answer(200, body)
                    return
                with self.lock:
                    self.requests[token][f"{request.method} {request.scenario}{request.rest}"] += 1
                    self.open[token] += 1
                handler = SCENARIOS.get(request.scenario)
                if handler is None:
                    await conn.answer(404, b'{"error": {"message": "no such scenario"}}')
                else:
                    await handler(conn, request)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # close(): this server's own shutdown, nobody else's
            pass
        finally:
            if token and token != "stats":
                with self.lock:
                    self.open[token] -= 1
            with contextlib.suppress(Exception):
                writer.close()
            self.tasks.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)
