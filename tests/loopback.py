"""A stdlib HTTP server around an emulator: real loopback sockets, for clients
(the OpenAI SDK, turnout's own drivers) that must not know they talk to a fake.

Streamed replies use chunked transfer-encoding, so a `drop_after` fault is a
real broken transfer (the terminating chunk never comes), not a clean close.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from turnout.emulation import EmulatedRequest, EmulatedResponse, Emulator, Fault

FaultFor = Callable[[EmulatedRequest], Fault | None]


class EmulatorServer:
    """Serves one emulator on 127.0.0.1 (an ephemeral port) from a background thread."""

    def __init__(self, emulator: Emulator, *, api_prefix: str = "/api/v1") -> None:
        self.emulator = emulator
        self.api_prefix = api_prefix
        # One fault for every request, or a function choosing one per request.
        self.fault: Fault | FaultFor | None = None
        self.requests: list[EmulatedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="loopback-emulator", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.api_prefix}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _answer(self, request: EmulatedRequest) -> EmulatedResponse:
        with self._lock:
            self.requests.append(request)
            fault = self.fault(request) if callable(self.fault) else self.fault
            return self.emulator.handle(request, fault)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        return Handler
