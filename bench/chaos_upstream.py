"""The chaos benchmark's upstream: an OpenAI-compatible server that misbehaves on purpose.

Runs in its own process (`python bench/chaos_upstream.py`): binds 127.0.0.1 on
a free port, prints the port on its first line, and serves until its parent
closes its stdin or 15 minutes pass. The first path segment picks the
behaviour (see bench/chaos.py); `GET /stats` counts requests per behaviour,
`GET /times/<behaviour>` lists when each arrived, `POST /reset` clears both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-chaos",
        "object": "chat.completion",
        "model": "chaos",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()
ERROR = json.dumps({"error": {"message": "failed on purpose", "type": "server_error", "code": None}}).encode()
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
STALL = 5.0  # longer than the benchmark's 2 s request timeout
LIFETIME = 900.0

RNG = random.Random(11)
COUNTS: Counter[str] = Counter()
TIMES: dict[str, list[float]] = defaultdict(list)
STARTED = time.monotonic()


def response(status: str, body: bytes, content_type: str = "application/json", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


OK = response("200 OK", COMPLETION)
FAILURES = [
    lambda: response("429 Too Many Requests", ERROR, extra="retry-after: 1\r\n"),
    lambda: response("500 Internal Server Error", ERROR),
    lambda: response("503 Service Unavailable", ERROR),
    lambda: response("502 Bad Gateway", HTML, "text/html"),
    lambda: response("200 OK", b"{not json at all"),
    lambda: None,  # reset: close without an answer
    lambda: "stall",
]


def answer(kind: str) -> bytes | str | None:
    if kind == "healthy":
        return OK
    if kind == "degraded":
        return RNG.choice(FAILURES)() if RNG.random() < 0.3 else OK
    if kind == "ratelimited":
        if RNG.random() < 0.2:
            return response(
                "429 Too Many Requests", ERROR, extra=f"retry-after: {RNG.uniform(0.5, 1.0):.2f}\r\n"
            )
        return OK
    if kind == "flapping":
        down = (time.monotonic() - STARTED) % 30.0 < 10.0
        return response("503 Service Unavailable", ERROR) if down else OK
    return None  # dead, or anything unknown


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            kind = path.strip("/").split("/", 1)[0]
            if method == "GET" and kind == "stats":
                writer.write(response("200 OK", json.dumps(dict(COUNTS)).encode()))
            elif method == "GET" and kind == "times":
                which = path.rstrip("/").rsplit("/", 1)[-1]
                writer.write(response("200 OK", json.dumps(TIMES.get(which, [])).encode()))
            elif method == "POST" and kind == "reset":
                COUNTS.clear()
                TIMES.clear()
                writer.write(response("200 OK", b"{}"))
            else:
                COUNTS[kind] += 1
                TIMES[kind].append(time.monotonic())
                reply = answer(kind)
                if reply is None:
                    break
                if reply == "stall":
                    await asyncio.sleep(STALL)
                    reply = OK
                assert isinstance(reply, bytes)
                writer.write(reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), LIFETIME)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
