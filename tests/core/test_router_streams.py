"""Streams through either router: retried or moved elsewhere until the first chunk reaches
the caller, raised with the text already streamed (`partial_text`) after it.

Over acme's emulator (an OpenAI-compatible gateway) and hand-written SSE bodies;
how a plugin's own frames read is tested in its folder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import turnout
from turnout.emulation import Fault, FaultScript

from .calls import ANSWER, FAST, NO_RETRY, Calls, emulated, fixed, history, hosts
from .conftest import deployment

WORDS = ["echo: ", "hello ", "there ", "world"]
TWO = [deployment("a"), deployment("b")]
NO_STREAM_RETRY = turnout.RetryPolicy(
    max_retries=2, base=0.001, cap=0.001, jitter="none", retry_streams=False
)


def sse(*frames: bytes) -> Any:
    return fixed(200, b"".join(frames), "text/event-stream")


def data(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {text}\n\n".encode()


def chunk(text: str, finish: str | None = None) -> bytes:
    return data(
        {"choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}
    )


# -- after the first chunk: raised, with what was streamed ----------------------------


@pytest.mark.parametrize("after", [1, 2])
@pytest.mark.parametrize(
    ("frame", "cls", "code", "status"),
    [
        ("slow_down", turnout.RateLimitError, "slow_down", 429),
        ("rate_limited", turnout.RateLimitError, "slow_down", 429),  # a kind, in acme's code
        ("oops", turnout.InternalServerError, "oops", 500),
        ("upstream", turnout.UpstreamError, "upstream", 502),
        ("overloaded", turnout.ServiceUnavailableError, "overloaded", 503),
        ("timed_out", turnout.APITimeoutError, "timed_out", 504),
        ("no_credit", turnout.InsufficientCreditsError, "no_credit", 402),
        ("too_long", turnout.ContextLengthError, "too_long", 400),
    ],
)
async def test_an_error_frame_after_the_first_chunk_is_raised_as_its_kind_with_partial_text(
    calls: Calls, frame: str, cls: type[turnout.ProviderError], code: str, status: int, after: int
) -> None:
    script = FaultScript(Fault(stream_error=frame, stream_error_after=after))
    streamed = await calls.stream(TWO, emulated(script), retry_policy=FAST)
    error = streamed.error
    assert streamed.deltas == WORDS[:after]
    assert type(error) is cls
    assert error.code == code
    assert error.status == status  # an in-band error carries its code's documented status
    assert error.partial_text == "".join(WORDS[:after])
    assert error.deployment == "a"
    assert error.request_id == "req_acme_000001"  # the stream's own
    assert len(error.attempts) == 1  # text reached the caller: never repeated, never elsewhere
    assert history(streamed.attempts) == [("a", error.kind.value)]
    assert hosts(script) == ["a.test"]


@pytest.mark.parametrize("after", [1, 2, 3])
async def test_a_stream_dropped_after_the_first_chunk_is_interrupted_with_partial_text(
    calls: Calls, after: int
) -> None:
    script = FaultScript(Fault(drop_after=after))
    streamed = await calls.stream(TWO, emulated(script), retry_policy=FAST)
    assert isinstance(streamed.error, turnout.StreamInterruptedError)
    assert streamed.deltas == WORDS[:after]
    assert streamed.error.partial_text == "".join(WORDS[:after])
    assert history(streamed.attempts) == [("a", "stream_interrupted")]
    assert hosts(script) == ["a.test"]


async def test_a_stream_that_ends_without_done_or_finish_reason_is_interrupted(calls: Calls) -> None:
    streamed = await calls.stream([deployment("a")], sse(chunk("half")), retry_policy=FAST)
    assert streamed.deltas == ["half"]
    assert isinstance(streamed.error, turnout.StreamInterruptedError)
    assert streamed.error.partial_text == "half"


async def test_a_frame_that_is_not_json_is_a_parse_error(calls: Calls) -> None:
    streamed = await calls.stream([deployment("a")], sse(chunk("a"), b"data: {broken\n\n"), retry_policy=FAST)
    assert isinstance(streamed.error, turnout.ResponseParseError)
    assert streamed.error.partial_text == "a"


# -- before the first chunk: retried, or moved to another deployment -------------------


async def test_an_error_frame_before_any_text_is_retried_when_the_policy_repeats_streams(
    calls: Calls,
) -> None:
    script = FaultScript(Fault(stream_error="overloaded", stream_error_after=0))
    streamed = await calls.stream([deployment("a")], emulated(script), retry_policy=FAST)
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert history(streamed.attempts) == [("a", "unavailable"), ("a", None)]
    first = streamed.attempts[0].error
    assert first is not None
    assert first.request_id == "req_acme_000001"


@pytest.mark.parametrize(
    ("frame", "kind", "policy"),
    [
        ("slow_down", "rate_limited", NO_STREAM_RETRY),
        ("invalid_key", "authentication", FAST),
    ],
    ids=["not-repeated", "not-retryable"],
)
async def test_an_error_frame_before_any_text_falls_back(
    calls: Calls, frame: str, kind: str, policy: turnout.RetryPolicy
) -> None:
    script = FaultScript(Fault(stream_error=frame, stream_error_after=0))
    streamed = await calls.stream(TWO, emulated(script), retry_policy=policy)
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert streamed.deployment == "b"
    assert history(streamed.attempts) == [("a", kind), ("b", None)]
    assert hosts(script) == ["a.test", "b.test"]


async def test_a_stream_dropped_before_any_text_falls_back(calls: Calls) -> None:
    script = FaultScript(Fault(drop_after=0))
    streamed = await calls.stream(TWO, emulated(script), retry_policy=FAST)
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert streamed.deployment == "b"
    assert history(streamed.attempts) == [("a", "stream_interrupted"), ("b", None)]


async def test_a_refused_stream_is_retried_after_its_retry_after(calls: Calls) -> None:
    script = FaultScript(Fault(error="slow_down", retry_after=0.01))
    streamed = await calls.stream([deployment("a")], emulated(script), retry_policy=FAST)
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert history(streamed.attempts) == [("a", "rate_limited"), ("a", None)]
    assert streamed.attempts[1].waited == 0.01


async def test_a_refused_stream_is_not_retried_when_the_policy_says_so(calls: Calls) -> None:
    script = FaultScript(Fault(error="slow_down", retry_after=0.001), None)
    streamed = await calls.stream([deployment("a")], emulated(script), retry_policy=NO_STREAM_RETRY)
    assert streamed.chunks == []
    assert isinstance(streamed.error, turnout.RateLimitError)
    assert streamed.error.status == 429
    assert len(streamed.error.attempts) == 1
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "cls", "fields"),
    [
        (
            403,
            b'{"error": {"message": "not in your plan", "code": "forbidden", "param": "model"}}',
            turnout.PermissionDeniedError,
            ["model"],
        ),
        (
            402,
            b'{"error": {"message": "no credit left", "code": "no_credit"}}',
            turnout.InsufficientCreditsError,
            [],
        ),
    ],
    ids=["403", "402"],
)
async def test_a_refused_stream_is_normalized_from_its_body(
    calls: Calls, status: int, body: bytes, cls: type[turnout.ProviderError], fields: list[str]
) -> None:
    streamed = await calls.stream([deployment("a")], fixed(status, body), retry_policy=FAST)
    assert streamed.chunks == []
    assert type(streamed.error) is cls
    assert streamed.error.status == status
    assert [d.field for d in streamed.error.details] == fields


# -- bodies that are not a clean event stream ---------------------------------------------


async def test_keepalive_comments_are_ignored(calls: Calls) -> None:
    body = sse(
        b": keepalive\n\n",
        chunk("a"),
        b": keepalive\n\n",
        b": another comment\n\n",
        chunk("b"),
        data("[DONE]"),
    )
    streamed = await calls.stream([deployment("a")], body)
    assert streamed.deltas == ["a", "b"]
    assert streamed.response is not None
    assert streamed.response.content == "ab"


async def test_done_ends_the_stream_even_if_more_follows(calls: Calls) -> None:
    streamed = await calls.stream([deployment("a")], sse(chunk("a"), data("[DONE]"), chunk("never")))
    assert streamed.error is None
    assert streamed.response is not None
    assert streamed.response.content == "a"


async def test_a_whole_json_completion_to_a_stream_request_is_one_chunk(calls: Calls) -> None:
    completion = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "all at once"}, "finish_reason": "stop"}
        ]
    }
    streamed = await calls.stream([deployment("a")], fixed(200, json.dumps(completion).encode()))
    assert [(c.delta, c.finish_reason) for c in streamed.chunks] == [("all at once", "stop")]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>maintenance</html>", "text/html"),
        (b"OK", "text/plain"),
    ],
    ids=["html", "text"],
)
async def test_a_non_event_body_to_a_stream_request_is_a_parse_error(
    calls: Calls, body: bytes, content_type: str
) -> None:
    streamed = await calls.stream([deployment("a")], fixed(200, body, content_type), retry_policy=NO_RETRY)
    assert streamed.chunks == []
    assert isinstance(streamed.error, turnout.ResponseParseError)
