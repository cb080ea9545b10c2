"""The router's own transports over real sockets, where httpx's objects are skipped.

The sync router drives its transport through httpcore directly (no
`httpx.Request` / `httpx.Response` per call): the gateway must get the very
bytes httpx would have sent, and the caller the very headers httpx would have
read. The async router bounds its commands by one deadline timer per call: a
deadline error must leave the caller's task as it found it, and the caller's
own awaits (between chunks) and cancellations stay the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import turnout

from .conftest import deployment

HI = [{"role": "user", "content": "hi"}]
COMPLETION = json.dumps(
    {"id": "c1", "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
).encode()
# Repeated names (in two spellings), a value that is not ASCII: what httpx joins and decodes.
ODD_HEADERS = (
    b"X-Dup: one\r\nx-dup: two\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    b"X-Latin: caf\xe9\r\nX-Request-Id: req-9\r\n"
)


def _answer(head: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + head
        + b"content-length: %d\r\n\r\n" % len(COMPLETION)
        + COMPLETION
    )


def _stream_then_stall() -> bytes:
    event = {"choices": [{"delta": {"content": "first"}, "finish_reason": None}]}
    chunk = b"data: " + json.dumps(event).encode() + b"\n\n"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(chunk)
        + chunk
        + b"\r\n"
    )


class Upstream:
    """A loopback server that records each request's head and body as received, and
    answers each with `reply` (None: never answers). Ends by itself after 30 s."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        ends = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < ends:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._open.append(conn)
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(v.split(b":")[1]) for v in lines if v.lower().startswith(b"content-length")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        if self.reply is not None:
            conn.sendall(self.reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._open:
            conn.close()
        self._sock.close()


@contextlib.contextmanager
def upstream(reply: bytes | None) -> Iterator[Upstream]:
    server = Upstream(reply)
    try:
        yield server
    finally:
        server.close()


def _router(plugins: turnout.Plugins, server: Upstream, **kw: object) -> turnout.Router:
    return turnout.Router([deployment("a", base_url=server.url())], plugins=plugins, **kw)  # type: ignore[arg-type]


def test_the_gateway_gets_the_bytes_httpx_would_send(plugins: turnout.Plugins) -> None:
    extra = {"x-trace": "t-1", "idempotency-key": "k-1"}
    with upstream(_answer()) as server:
        with _router(plugins, server) as own:  # httpcore directly
            own.chat(HI, extra_headers=extra, temperature=0.5)
        with _router(plugins, server, transport=httpx.HTTPTransport()) as through_httpx:
            through_httpx.chat(HI, extra_headers=extra, temperature=0.5)

        async def main() -> None:
            async with turnout.AsyncRouter(
                [deployment("a", base_url=server.url())], plugins=plugins
            ) as arouter:
                await arouter.chat(HI, extra_headers=extra, temperature=0.5)

        asyncio.run(main())
    direct, via_httpx, via_async = server.requests
    assert direct == via_httpx == via_async
    head = direct.split(b"\r\n")
    assert head[1] == f"Host: 127.0.0.1:{server.port}".encode()
    assert head[-3] == b"Content-Length: %d" % len(direct.partition(b"\r\n\r\n")[2])
    assert b"x-trace: t-1" in head


def test_the_caller_gets_the_headers_httpx_would_read(plugins: turnout.Plugins) -> None:
    with upstream(_answer(ODD_HEADERS)) as server:
        with _router(plugins, server) as own:
            direct = own.chat(HI)
        with _router(plugins, server, transport=httpx.HTTPTransport()) as through_httpx:
            via_httpx = through_httpx.chat(HI)
    assert direct.headers == via_httpx.headers
    assert direct.headers["x-dup"] == "one, two"
    assert direct.headers["set-cookie"] == "a=1, b=2"
    assert direct.headers["x-latin"] == "café"
    assert direct.request_id == via_httpx.request_id == "req-9"


async def test_a_deadline_error_leaves_the_task_as_it_found_it(plugins: turnout.Plugins) -> None:
    with upstream(None) as server:
        async with turnout.AsyncRouter([deployment("a", base_url=server.url())], plugins=plugins) as router:
            began = time.monotonic()
            with pytest.raises(turnout.APITimeoutError):
                await router.chat(HI, deadline=0.3)
            assert time.monotonic() - began < 1.3
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation left over for the caller's next wait


async def test_a_cancelled_caller_is_cancelled_not_timed_out(plugins: turnout.Plugins) -> None:
    with upstream(None) as server:
        async with turnout.AsyncRouter([deployment("a", base_url=server.url())], plugins=plugins) as router:
            call = asyncio.ensure_future(router.chat(HI, deadline=5.0))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call


async def test_the_deadline_never_cuts_the_callers_own_waits_between_chunks(plugins: turnout.Plugins) -> None:
    with upstream(_stream_then_stall()) as server:
        async with turnout.AsyncRouter([deployment("a", base_url=server.url())], plugins=plugins) as router:
            began = time.monotonic()
            async with router.stream(HI, deadline=0.4) as stream:
                chunks = stream.__aiter__()
                first = await anext(chunks)
                assert first.delta == "first"
                await asyncio.sleep(0.6)  # past the deadline, in the caller's own code: not cut
                with pytest.raises(turnout.APITimeoutError):
                    await anext(chunks)
            assert time.monotonic() - began < 1.6
