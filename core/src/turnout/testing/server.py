"""A stdlib HTTP server around an emulator: real loopback sockets, for clients
(the OpenAI SDK, turnout's own drivers, the conformance kit) that must not know
they talk to a fake.

Streamed replies use chunked transfer-encoding, so a `drop_after` fault is a
real broken transfer (the terminating chunk never comes), not a clean close.
What the emulator answers may be replaced (`reply`) or rewritten (`rewrite`):
the kit serves hostile responses and cut streams that way.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from turnout.emulation import EmulatedRequest, EmulatedResponse, Emulator, Fault

__all__ = ["EmulatorServer", "FaultFor"]

FaultFor = Callable[[EmulatedRequest], Fault | None]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a deadline, a cut stream read no further) is no error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class EmulatorServer:
    """Serves one emulator on 127.0.0.1 (an ephemeral port) from a background thread.

    `fault`: one fault for every request, or a function choosing one per request
    (a `FaultScript`). `reply`: answers instead of the emulator (a function of the
    request). `rewrite`: changes what the emulator answered. Every request is kept
    in `requests`.
    """

    def __init__(self, emulator: Emulator | None = None, *, api_prefix: str = "/api/v1") -> None:
        self.emulator = emulator
        self.api_prefix = api_prefix
        self.fault: Fault | FaultFor | None = None
        self.reply: Callable[[EmulatedRequest], EmulatedResponse] | None = None
        self.rewrite: Callable[[EmulatedResponse], EmulatedResponse] | None = None
        self.requests: list[EmulatedRequest] = []
        # What it answered, in order, and what the emulator raised instead of answering
        # (it answered 500 instead).
        self.replies: list[EmulatedResponse] = []
        self.failures: list[Exception] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="loopback-emulator", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.api_prefix}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _answer(self, request: EmulatedRequest) -> EmulatedResponse:
        with self._lock:
            self.requests.append(request)
            reply = self._reply(request)
            self.replies.append(reply)
            return reply

    def _reply(self, request: EmulatedRequest) -> EmulatedResponse:
        if self.reply is not None:
            return self.reply(request)
        if self.emulator is None:
            raise RuntimeError("an EmulatorServer without an emulator needs `reply`")
        fault = self.fault(request) if callable(self.fault) else self.fault
        try:
            answer = self.emulator.handle(request, fault)
        except Exception as exc:  # e.g. a fault this emulator cannot render
            self.failures.append(exc)
            return EmulatedResponse(500, (("content-type", "text/plain"),), f"emulator: {exc}".encode())
        return self.rewrite(answer) if self.rewrite is not None else answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as written: with Nagle's algorithm a body written
            # after its headers waits for the client's delayed ACK (40 ms a response).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                request = EmulatedRequest(
                    method=self.command,
                    path=url.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    query=dict(parse_qsl(url.query)),
                    host=self.headers.get("host", "").split(":")[0],
                )
                reply = server._answer(request)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                if reply.chunks is None:
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("transfer-encoding", "chunked")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                for index, piece in enumerate(reply.chunks):
                    if reply.drop_after is not None and index >= reply.drop_after:
                        return  # the connection closes without the final chunk: a broken transfer
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
                if reply.drop_after is None:
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_DELETE = do_PUT = do_PATCH = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        return Handler
