"""What gateways (and the proxies in front of them) really send, as data: the kit's
hostile statuses, bodies and headers, the forms of Retry-After, and the ways a
stream goes wrong. Tables, not code paths: a case is one row."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Any

from attrs import evolve, frozen

from turnout._hints import MAX_HINT
from turnout._normalize import PARSE_LIMIT
from turnout.emulation import EmulatedResponse, html_page

__all__ = [
    "BODIES",
    "HEADER_SETS",
    "OVER_HTTP_STATUSES",
    "RETRY_AFTER_FORMS",
    "STATUSES",
    "STREAM_REWRITES",
    "RetryAfterForm",
    "StreamRewrite",
    "contentless",
    "unreadable_answers",
]

# Every status class, the documented ones and a few nobody documents.
STATUSES = (
    *(200, 201, 302),
    *(400, 401, 402, 403, 404, 408, 409, 413, 418, 422, 429),
    *(500, 502, 503, 504, 520, 529),
)
# Those the kit also sends over HTTP, with every body (the rest get one body each).
OVER_HTTP_STATUSES = (200, 429, 500, 503)

_HTML = html_page(502).body

# name -> (body, content type). A body is never trusted to be JSON, UTF-8, small,
# well-formed, or shaped as the gateway documents.
BODIES: Mapping[str, tuple[bytes, str]] = {
    "html": (_HTML, "text/html"),
    "html_as_json": (_HTML, "application/json"),
    "empty": (b"", "application/json"),
    "non_utf8": (b'\xff\xfe{"error": "\x80\x81 caf\xe9"}\xc3', "application/json"),
    "truncated": (b'{"error": {"message": "the gateway was cut off her', "application/json"),
    "json_list": (b"[1, 2, 3]", "application/json"),
    "json_string": (b'"upstream exploded"', "application/json"),
    "json_number": (b"42", "application/json"),
    "json_null": (b"null", "application/json"),
    "error_not_an_object": (b'{"error": 42, "detail": ["a", 1], "message": {"x": 1}}', "application/json"),
    "fields_of_every_type": (
        b'{"error": {"code": {"a": 1}, "message": ["x"], "type": 7, "param": [], "retry_after": "soon"}}',
        "application/json",
    ),
    "nested_too_deep": (b"[" * 100_000, "application/json"),
    "objects_nested_too_deep": (b'{"error": ' * 100_000, "application/json"),
    "huge_text": (b"x" * (PARSE_LIMIT + 1024), "text/plain"),
    "huge_json": (b'{"error": {"message": "' + b"a" * (PARSE_LIMIT * 2) + b'"}}', "application/json"),
}

# Bodies that carry nothing a normalizer could read: the status alone decides.
contentless = frozenset(
    {
        *("html", "html_as_json", "empty", "non_utf8", "truncated"),
        *("json_list", "json_number", "json_null"),
        *("nested_too_deep", "objects_nested_too_deep", "huge_text", "huge_json"),
    }
)

# Under a 2xx, those that are no readable answer either (parse_error): a huge JSON
# envelope is still read whole as an answer would be, and is an error envelope.
unreadable_answers = contentless - {"huge_json"}

# Header sets sent with every status and body: none, and hints nobody should trust.
HEADER_SETS: Mapping[str, Mapping[str, str]] = {
    "no_headers": {},
    "garbage_hints": {
        "retry-after": "soon",
        "retry-after-ms": "NaN",
        "x-ratelimit-reset": "-7",
        "x-ratelimit-remaining": "many",
    },
    "absurd_hints": {"retry-after": "1e400", "x-ratelimit-reset": "99999999999999999999"},
}


@frozen
class RetryAfterForm:
    """A way a server says how long to wait, and the wait it means (seconds; None:
    nothing usable). `tolerance` covers the clock moving during the check."""

    name: str
    headers: Callable[[float], dict[str, str]]
    expected: float | None
    tolerance: float = 0.0


def _date(offset: float) -> Callable[[float], dict[str, str]]:
    return lambda now: {"retry-after": email.utils.formatdate(now + offset, usegmt=True)}


RETRY_AFTER_FORMS: tuple[RetryAfterForm, ...] = (
    RetryAfterForm("seconds", lambda now: {"retry-after": "7"}, 7.0),
    RetryAfterForm("fractional seconds", lambda now: {"retry-after": "1.5"}, 1.5),
    RetryAfterForm("zero", lambda now: {"retry-after": "0"}, 0.0),
    RetryAfterForm("HTTP-date ahead", _date(30), 30.0, tolerance=2.0),
    RetryAfterForm("HTTP-date past", _date(-300), 0.0),
    RetryAfterForm("milliseconds", lambda now: {"retry-after-ms": "1500"}, 1.5),
    RetryAfterForm("rate-limit reset in seconds", lambda now: {"x-ratelimit-reset": "20"}, 20.0),
    RetryAfterForm(
        "rate-limit reset as a unix time", lambda now: {"x-ratelimit-reset": str(int(now) + 40)}, 40.0, 2.0
    ),
    RetryAfterForm("the longest of several", lambda now: {"retry-after": "2", "retry-after-ms": "5000"}, 5.0),
    RetryAfterForm("absurdly long", lambda now: {"retry-after": "1e308"}, MAX_HINT),
    RetryAfterForm("negative", lambda now: {"retry-after": "-3"}, None),
    RetryAfterForm("words", lambda now: {"retry-after": "in a while"}, None),
    RetryAfterForm("bad date", lambda now: {"retry-after": "Mon, 99 Foo 2024 25:61:00 GMT"}, None),
)


def now() -> float:
    return time.time()


@frozen
class StreamRewrite:
    """A way a working stream goes wrong, as a change to the emulator's reply (its
    chunks, usually one SSE event each). `expect`: the kind the caller must get;
    `closes_cleanly`: the transfer ends normally, so a gateway that documents a
    clean close as the end of a stream ends it normally instead."""

    name: str
    change: Callable[[EmulatedResponse], EmulatedResponse]
    expect: str
    closes_cleanly: bool = False


def _cut(after: int) -> Callable[[EmulatedResponse], EmulatedResponse]:
    return lambda reply: evolve(reply, drop_after=after)


def _malformed(reply: EmulatedResponse) -> EmulatedResponse:
    chunks = reply.chunks or ()
    return evolve(reply, chunks=(*chunks[:1], b'data: {"choices": [{"delta": \n\n', *chunks[1:]))


def _no_end(reply: EmulatedResponse) -> EmulatedResponse:
    return evolve(reply, chunks=(reply.chunks or ())[:1])


STREAM_REWRITES: tuple[StreamRewrite, ...] = (
    StreamRewrite("cut before any chunk", _cut(0), "stream_interrupted"),
    StreamRewrite("cut after one chunk", _cut(1), "stream_interrupted"),
    StreamRewrite("an event that is not JSON", _malformed, "parse_error"),
    StreamRewrite("closed without its end marker", _no_end, "stream_interrupted", closes_cleanly=True),
)


def reply(status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> EmulatedResponse:
    """One hostile response, as the loopback server sends it."""
    return EmulatedResponse(status, (("content-type", content_type), *headers.items()), body)


def with_status(response: EmulatedResponse, status: int, **extra: Any) -> EmulatedResponse:
    """`response` with another status (a gateway's error envelope under a 200)."""
    return evolve(response, status=status, **extra)
