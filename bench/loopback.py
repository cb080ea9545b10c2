"""The loopback upstream: a minimal OpenAI-compatible server, run in its own process.

Its CPU is not the client's, so it lives in a separate process (`python
bench/loopback.py`): it binds 127.0.0.1 on a free port, prints the port on
its first stdout line and serves until its parent closes its stdin, a
lifetime limit passes or a request limit is reached, whichever comes first.

It speaks just enough HTTP/1.1 over a raw `asyncio.Protocol` (keep-alive,
Content-Length and chunked request bodies), which serves several times more
requests per second than an ASGI stack on one core, so the clients measured
are the bottleneck, not the server. Responses are precomputed bytes.

    POST /v1/chat/completions        a chat completion (JSON), or with "stream": true
                                     an SSE stream of STREAM_CHUNKS chunks then `data: [DONE]`;
                                     a stream asked with "tools": two tool calls in
                                     TOOL_STREAM_CHUNKS chunks, as OpenAI sends them
    POST /fail/v1/chat/completions   503 at once, with an OpenAI error envelope
    GET  /stats                      connections accepted and requests served per path, as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import threading
from collections import Counter
from typing import Any

STREAM_CHUNKS = 10
CONTENT = "Hello from the loopback upstream."
STREAM_TEXT = "".join(f"tok{i} " for i in range(STREAM_CHUNKS))
# Two parallel tool calls, streamed as OpenAI streams them: each call's id and name in its
# first piece, then its arguments a few characters at a time, then a finish chunk.
TOOL_CALLS = (
    ("call_bench_0", "get_weather", '{"city":"Paris","unit":"celsius","days":3}'),
    ("call_bench_1", "get_time", '{"timezone":"Europe/Paris","format":"24h"}'),
)
ARGUMENT_PIECE = 4
# What a contender hands back for a tool-call stream: every call assembled.
TOOLS_TEXT = ";".join(f"{call_id}:{name}({arguments})" for call_id, name, arguments in TOOL_CALLS)
CHAT_PATH = "/v1/chat/completions"
FAIL_PATH = "/fail/v1/chat/completions"
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(status: str, content_type: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        f"x-request-id: req_bench\r\n{extra}\r\n"
    )
    return head.encode() + body


def _completion() -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "bench-model",
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
        }
    )


def _event(delta: dict[str, Any], finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "bench-model",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + _dumps(chunk) + b"\n\n"


def _stream_events() -> list[bytes]:
    events = []
    for i in range(STREAM_CHUNKS):
        delta = {"role": "assistant", "content": f"tok{i} "} if i == 0 else {"content": f"tok{i} "}
        events.append(_event(delta, "stop" if i == STREAM_CHUNKS - 1 else None))
    events.append(b"data: [DONE]\n\n")
    return events


def _tool_events() -> list[bytes]:
    deltas: list[dict[str, Any]] = []
    for index, (call_id, name, arguments) in enumerate(TOOL_CALLS):
        function = {"name": name, "arguments": ""}
        first: dict[str, Any] = {
            "tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]
        }
        if index == 0:
            first = {"role": "assistant", "content": None, **first, "refusal": None}
        deltas.append(first)
        for at in range(0, len(arguments), ARGUMENT_PIECE):
            piece = arguments[at : at + ARGUMENT_PIECE]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    events = [_event(delta, None) for delta in deltas]
    events += [_event({}, "tool_calls"), b"data: [DONE]\n\n"]
    return events


def _chunked(pieces: list[bytes]) -> bytes:
    """One HTTP/1.1 chunk per SSE event, then the terminating chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


COMPLETION = _response("200 OK", "application/json", _completion())
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"x-request-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
)
STREAM = _STREAM_HEAD + _chunked(_stream_events())
TOOL_STREAM_CHUNKS = len(_tool_events()) - 1  # [DONE] is not a chunk
TOOL_STREAM = _STREAM_HEAD + _chunked(_tool_events())
UNAVAILABLE = _response(
    "503 Service Unavailable",
    "application/json",
    _dumps({"error": {"message": "overloaded", "type": "server_error", "param": None, "code": "overloaded"}}),
)
NOT_FOUND = _response("404 Not Found", "application/json", _dumps({"error": {"message": "no such path"}}))
BAD_REQUEST = _response(
    "400 Bad Request", "application/json", _dumps({"error": {"message": "malformed request"}})
)


class Server:
    """Counts and limits shared by every connection."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.connections = 0
        self.done = asyncio.Event()

    def answer(self, method: bytes, path: str, body: bytes) -> bytes:
        self.total += 1
        self.counts[path] += 1
        if self.total >= self.max_requests:
            self.done.set()
        if method == b"GET" and path == "/stats":
            stats = {"connections": self.connections, "requests": dict(self.counts)}
            return _response("200 OK", "application/json", _dumps(stats))
        if method != b"POST":
            return NOT_FOUND
        if path == FAIL_PATH:
            return UNAVAILABLE
        if path != CHAT_PATH:
            return NOT_FOUND
        try:
            payload = json.loads(body)
        except ValueError:
            return BAD_REQUEST
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return BAD_REQUEST
        if not payload.get("stream"):
            return COMPLETION
        return TOOL_STREAM if payload.get("tools") else STREAM


class Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if not self._serve_one():
                return

    def _serve_one(self) -> bool:
        """Answer the first complete request in the buffer; False if none is complete."""
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self.transport.close()
            return False
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        try:
            method, target, _version = lines[0].split(b" ", 2)
        except ValueError:
            self.transport.close()
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parsed = self._chunked_body(start)
            if parsed is None:
                return False
            body, consumed = parsed
        else:
            length = int(headers.get(b"content-length", b"0") or 0)
            if length > MAX_BODY:
                self.transport.close()
                return False
            if len(self.buffer) < start + length:
                return False
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        path = target.decode("latin-1").split("?", 1)[0]
        self.transport.write(self.server.answer(method, path, body))
        if headers.get(b"connection", b"").lower() == b"close":
            self.transport.close()
            return False
        return True

    def _chunked_body(self, start: int) -> tuple[bytes, int] | None:
        pieces: list[bytes] = []
        at = start
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[at:line_end]).split(b";")[0], 16)
            at = line_end + 2
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n\r\n", at - 2)
                if trailer_end < 0:
                    return None
                return b"".join(pieces), trailer_end + 4
            if len(self.buffer) < at + size + 2:
                return None
            pieces.append(bytes(self.buffer[at : at + size]))
            at += size + 2

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _watch_stdin(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """Stop when the parent goes away (its end of our stdin closes)."""

    def wait() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(1):
                pass
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=wait, daemon=True).start()


async def serve(port: int, max_seconds: float, max_requests: int, watch_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    state = Server(max_requests)
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(bound, flush=True)
    if watch_stdin:
        _watch_stdin(loop, state.done)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, state.done.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.done.wait(), max_seconds)
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed on stdout)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    parser.add_argument("--max-requests", type=int, default=20_000_000, help="stop after this many")
    parser.add_argument("--no-stdin-watch", action="store_true", help="do not stop when stdin closes")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.max_seconds, args.max_requests, not args.no_stdin_watch))


if __name__ == "__main__":
    main()
