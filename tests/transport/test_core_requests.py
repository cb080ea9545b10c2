"""What the router's own transports keep between requests: parsed URLs (a router sends
to the same few again and again), never the requests themselves (their bodies can be
megabytes of images, and hold the conversation)."""

from __future__ import annotations

import gc
import weakref

import httpx

from turnout._transport import core_request, core_target


def test_a_request_is_not_kept_once_sent() -> None:
    request = httpx.Request("POST", "http://gateway.test/v1/chat", content=b"x" * 100_000)
    kept = weakref.ref(request)
    translated = core_request(request)
    assert translated.url.target == b"/v1/chat"
    del request, translated
    gc.collect()
    assert kept() is None


def test_a_url_is_parsed_once() -> None:
    first = core_target("http://gateway.test:8080/v1/chat/completions")
    assert core_target("http://gateway.test:8080/v1/chat/completions") is first
    url, host = first
    assert (url.host, url.port, url.target, host) == (
        b"gateway.test",
        8080,
        b"/v1/chat/completions",
        b"gateway.test:8080",
    )
