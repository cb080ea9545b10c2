"""Reading response bodies and event streams with bounded memory. Pure: fed bytes.

A body is never trusted to be small, and neither is a stream: a gzip bomb, a
1 GiB `data:` line or an endless stream of comments must end as an error,
not as gigabytes in memory. Three small state machines do it, shared by the
sync and async drivers:

- `Inflater` undoes `Content-Encoding` (gzip, deflate) in bounded pieces
  (httpx's own decoders inflate a whole network read at once, however large
  the result);
- `BodyBuffer` keeps a body up to a cap and says when it is over;
- `SSEDecoder` turns bytes into server-sent events (the WHATWG rules: lines
  ended by CRLF, LF or CR; comments; `data`, `event`, `id`, `retry`) and
  refuses an event larger than its cap. httpx-sse's public `EventSource`
  reads whole lines with no bound and its decoder is private, hence this one.
"""

from __future__ import annotations

import codecs
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ._errors import ErrorKind, ProviderError, error_for
from ._limits import CallLimits

__all__ = ["PENDING", "Pending", "BodyReader", "Event", "EventReader", "Inflater", "SSEDecoder", "too_large"]

# Inflated output is produced in pieces of at most this size.
_PIECE = 64 * 1024


def too_large(what: str, limit: int) -> ProviderError:
    return error_for(ErrorKind.PARSE_ERROR, f"{what} is larger than {limit} bytes", code="too_large")


class Inflater:
    """Undo a response's `Content-Encoding`, a bounded piece at a time."""

    def __init__(self, encoding: str | None) -> None:
        self._stages: list[_Stage] = []
        if not encoding:
            return
        names = [e.strip().lower() for e in encoding.split(",") if e.strip()]
        names = [n for n in names if n != "identity"]
        for name in names:
            if name not in ("gzip", "x-gzip", "deflate"):
                raise error_for(
                    ErrorKind.PARSE_ERROR,
                    f"the response uses content-encoding {name!r}, which was not asked for",
                    code="unsupported_encoding",
                )
        # Encodings apply in order, so they are undone in reverse.
        self._stages = [_Stage(name) for name in reversed(names)]

    @property
    def identity(self) -> bool:
        return not self._stages

    def feed(self, data: bytes) -> Iterable[bytes]:
        if not self._stages:  # nothing to undo: the common case, kept cheap
            return (data,) if data else ()
        pieces: Iterable[bytes] = iter((data,) if data else ())
        for stage in self._stages:
            pieces = stage.run(iter(pieces))
        return pieces

    def flush(self) -> Iterable[bytes]:
        if not self._stages:
            return ()
        pieces: Iterator[bytes] = iter(())
        for stage in self._stages:
            pieces = stage.run(pieces, final=True)
        return pieces


class _Stage:
    def __init__(self, name: str) -> None:
        # gzip: a gzip header. deflate: a zlib header, or (some servers) none at all,
        # which the first two bytes tell (RFC 1950's header check), once they have come.
        self._deflate = name == "deflate"
        self._decompressor = None if self._deflate else zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._head = b""

    def run(self, pieces: Iterator[bytes], *, final: bool = False) -> Iterator[bytes]:
        for data in pieces:
            yield from self._inflate(data)
        if final:
            if self._decompressor is None:
                yield from self._inflate(b"", final=True)
            assert self._decompressor is not None
            try:
                tail = self._decompressor.flush()
            except zlib.error as exc:
                raise _corrupt(exc) from None
            if tail:
                yield tail

    def _inflate(self, data: bytes, *, final: bool = False) -> Iterator[bytes]:
        if self._decompressor is None:
            self._head += data
            if len(self._head) < 2 and not final:
                return
            wbits = zlib.MAX_WBITS if _zlib_header(self._head) else -zlib.MAX_WBITS
            self._decompressor = zlib.decompressobj(wbits)
            data, self._head = self._head, b""
        while data:
            try:
                out = self._decompressor.decompress(data, _PIECE)
            except zlib.error as exc:
                raise _corrupt(exc) from None
            data = self._decompressor.unconsumed_tail
            if out:
                yield out


def _zlib_header(head: bytes) -> bool:
    """The two bytes of a zlib header: method 8 (deflate), a window of at most 32 KiB,
    and a check making them a multiple of 31."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


def _corrupt(exc: zlib.error) -> ProviderError:
    return error_for(ErrorKind.PARSE_ERROR, f"the response body is not validly encoded: {exc}")


class BodyBuffer:
    """A body kept up to `limit` bytes; `feed` says when the limit is passed. Nothing
    past the limit is kept, and the body is joined once: at most about twice the
    limit is ever held, whatever arrives."""

    __slots__ = ("_pieces", "_size", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        self.truncated = False

    def feed(self, piece: bytes) -> bool:
        """Keep `piece` (what fits of it); True once the body is over the limit (stop reading)."""
        room = self.limit - self._size
        if len(piece) > room:
            self.truncated = True
            piece = piece[:room]
        if piece:
            self._pieces.append(piece)
            self._size += len(piece)
        return self.truncated

    def body(self) -> bytes:
        return self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)


class Event(NamedTuple):
    """One server-sent event. A named tuple (immutable, compared by value): one is made
    for every event of every stream, at half the cost of a frozen attrs class."""

    data: str = ""
    event: str = "message"
    id: str = ""
    retry: int | None = None


_new_event = tuple.__new__


class SSEDecoder:
    """Server-sent events from bytes, no event (lines and data together) over `limit`.

    Fed once per network read of every stream, so the common case is kept short:
    a read that is whole UTF-8 and whole lines, each a `data:` field."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # True while the incremental decoder holds the start of a character.
        self._split = False
        self._line: list[str] = []
        self._line_size = 0
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self._fields = False

    def feed(self, data: bytes) -> list[Event]:
        if self._split:
            text = self._decode(data)
        else:
            try:  # whole UTF-8, the common case: no incremental decoder needed
                text = data.decode()
            except UnicodeDecodeError:
                text = self._decode(data)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        return self._lines(text)

    def _decode(self, data: bytes) -> str:
        """Through the incremental decoder: a character split across reads waits for its
        end; an invalid byte becomes U+FFFD."""
        text = self._text.decode(data)
        self._split = bool(self._text.getstate()[0])
        return text

    def close(self) -> list[Event]:
        """The end of the stream: a last unterminated line still counts; an event
        without its blank line does not (the spec drops it)."""
        events = self._lines(self._text.decode(b"", final=True))
        if self._line:
            line = "".join(self._line)
            self._line.clear()
            if line and line[0] != ":":
                self._field(line)
        return events

    def _lines(self, text: str) -> list[Event]:
        if not text:  # an empty read (or half a character): a pending CR still waits for its LF
            return []
        if self._after_cr and text[0] == "\n":
            text = text[1:]  # the LF of a CRLF split across reads
        self._after_cr = False
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        parts = text.split("\n")
        tail = parts.pop()  # not ended yet: kept for the next read
        events: list[Event] = []
        if parts:
            if self._line:  # the end of a line begun in an earlier read
                self._grow(parts[0])
                parts[0] = "".join(self._line)
                self._line.clear()
                self._line_size = 0
            limit, data = self.limit, self._data
            for part in parts:
                if not part:
                    if self._fields:
                        events.append(self._dispatch())
                    continue
                if len(part) + self._size > limit:
                    raise too_large("a stream event", limit)
                if part.startswith("data:"):  # the common field, at once
                    value = part[6:] if part.startswith("data: ") else part[5:]
                    data.append(value)
                    self._size += len(value) + 1
                    self._fields = True
                elif part[0] != ":":
                    self._field(part)
        self._grow(tail)
        return events

    def _grow(self, part: str) -> None:
        if part:
            self._line.append(part)
            self._line_size += len(part)
            if self._line_size + self._size > self.limit:
                raise too_large("a stream event", self.limit)

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            self._fields = True
        elif name == "event":
            self._event = value
            self._fields = True
        elif name == "id":
            if "\0" not in value:
                self._id = value
            self._fields = True
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
            self._fields = True

    def _dispatch(self) -> Event:
        data = self._data
        # (The tuple made directly: a named tuple's `__new__` is a Python function.)
        event = _new_event(
            Event,
            (data[0] if len(data) == 1 else "\n".join(data), self._event or "message", self._id, self._retry),
        )
        data.clear()
        self._size = 0
        self._event = ""
        self._retry = None
        self._fields = False
        return event


class BodyReader:
    """A response body, read to its end or its cap, within the call's deadline.

    The driver feeds it the raw bytes it reads (`iter_raw`) until `feed` says
    to stop or the body ends (`end`)."""

    __slots__ = ("_buffer", "_inflater", "_limits")

    def __init__(self, encoding: str | None, limit: int, limits: CallLimits) -> None:
        inflater = Inflater(encoding)
        self._inflater = None if inflater.identity else inflater
        self._buffer = BodyBuffer(limit)
        self._limits = limits

    def feed(self, raw: bytes) -> bool:
        """True when reading should stop (the cap is passed)."""
        if self._inflater is None:
            full = self._buffer.feed(raw)
        else:
            full = any(self._buffer.feed(piece) for piece in self._inflater.feed(raw))
        if not full:
            self._limits.check()
        return full

    def end(self) -> None:
        if self._inflater is not None:
            any(self._buffer.feed(piece) for piece in self._inflater.flush())

    @property
    def truncated(self) -> bool:
        return self._buffer.truncated

    def body(self) -> bytes:
        return self._buffer.body()


class Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = Pending()


class EventReader:
    """The events of an open stream: `next()` is an event, None at the end, or
    `PENDING` when the driver must read more (and `feed` it: bytes, or None at
    the end of the body). The deadline is checked on every read, so a stream of
    comments, blank lines or one endless line cannot outlive the call; one
    event is capped by `max_event` and the whole stream by `max_stream`."""

    __slots__ = ("_decoder", "_ended", "_events", "_inflater", "_limits", "_size")

    def __init__(self, encoding: str | None, limits: CallLimits) -> None:
        inflater = Inflater(encoding)
        self._inflater = None if inflater.identity else inflater
        self._decoder = SSEDecoder(limits.max_event)
        self._limits = limits
        self._events: deque[Event] = deque()
        self._ended = False
        self._size = 0

    def next(self) -> Event | Pending | None:
        if self._events:
            return self._events.popleft()
        return None if self._ended else PENDING

    def feed(self, raw: bytes | None) -> None:
        inflater = self._inflater
        if raw is None:
            if inflater is not None:
                for piece in inflater.flush():
                    self._decode(piece)
            self._events.extend(self._decoder.close())
            self._ended = True
            return
        if inflater is None:  # nothing to undo: the common case
            self._decode(raw)
        else:
            for piece in inflater.feed(raw):
                self._decode(piece)
        limits = self._limits
        if limits.clock() >= limits.deadline_at:
            limits.check()

    def _decode(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._limits.max_stream:
            raise too_large("the stream", self._limits.max_stream)
        self._events.extend(self._decoder.feed(piece))
