"""Every codec's response and chunk parser, and every provider's chat and stream flow
fed whatever a gateway may answer: an answer of the documented types, or a
normalized `ProviderError`, never another exception.

The flows are driven sans-IO, as the drivers do, with hypothesis choosing each
response, each head, each body and each server-sent event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import turnout
from turnout import ChatChunk, ChatRequest, ChatResponse, Deployment, HTTPResponse
from turnout._answers import Malformed
from turnout._errors import KIND_CLASSES
from turnout._flow import Emit, OpenStream, ReadBody, ReadEvent, Send, Sleep
from turnout._pump import DONE, Pump
from turnout._reading import Event

from .strategies import HEADERS, JSON, OBJECTS, PROVIDERS, SETTINGS, WIRE_BODIES, wire_json

NAMES = sorted(PROVIDERS)
PARSERS = sorted(name for name, p in PROVIDERS.items() if hasattr(p, "parse_completion"))
# A flow that keeps asking (a poll loop answered PENDING for ever) is stopped here.
MAX_STEPS = 40


def deployment_for(provider: turnout.Provider) -> Deployment:
    """A deployment each provider's own checks accept."""
    key, options = "sk-property-0123456789", {}
    if provider.name == "modelroute":
        from turnout_modelroute.provider import fake_key

        key, options = fake_key("property"), {"poll_interval": 0.5}
    if provider.name == "litellm":
        options = {"team_id": "team-1"}
    return Deployment("d", provider.name, "m", api_key=key, base_url="https://gw.test/v1", options=options)


REQUEST = ChatRequest([{"role": "user", "content": "hi"}], {})

COMPLETIONS = st.one_of(
    WIRE_BODIES,
    st.fixed_dictionaries(
        {"choices": st.lists(st.fixed_dictionaries({"message": JSON, "finish_reason": JSON}), max_size=2)},
        optional={"usage": JSON, "model": JSON, "id": JSON},
    ).map(wire_json),
    st.fixed_dictionaries(
        {"id": st.text(max_size=5), "status": st.sampled_from(["PENDING", "COMPLETED", "FAILED", "EXPIRED"])},
        optional={"output": JSON, "error": JSON, "usage": JSON},
    ).map(wire_json),
    st.fixed_dictionaries(
        {"job_id": JSON, "status": JSON, "response": JSON}, optional={"metadata": JSON}
    ).map(wire_json),
)
EVENT_DATA = st.one_of(
    st.just("[DONE]"),
    st.text(max_size=40),
    OBJECTS.map(lambda v: wire_json(v).decode()),
    st.fixed_dictionaries(
        {"choices": st.lists(st.fixed_dictionaries({"delta": JSON, "finish_reason": JSON}), max_size=2)},
        optional={"usage": JSON},
    ).map(lambda v: wire_json(v).decode()),
)
STREAM_TYPES = st.sampled_from(["text/event-stream", "application/json", "text/html", ""])


def responder(data: st.DataObject) -> Callable[[Any], Any]:
    """What the network answers to each command, drawn by hypothesis."""

    def answer(command: Any) -> Any:
        kind = type(command)
        if kind is Send or kind is ReadBody:
            status = data.draw(st.sampled_from([200, 200, 202, 400, 404, 429, 500, 503]))
            return HTTPResponse(status, data.draw(HEADERS), data.draw(COMPLETIONS), data.draw(st.booleans()))
        if kind is OpenStream:
            status = data.draw(st.sampled_from([200, 200, 200, 401, 429, 500]))
            return HTTPResponse(status, {**data.draw(HEADERS), "content-type": data.draw(STREAM_TYPES)})
        if kind is ReadEvent:
            if data.draw(st.integers(0, 9)) == 0:
                return None  # the end of the stream
            return Event(data.draw(EVENT_DATA), data.draw(st.sampled_from(["message", "error", "ping"])))
        if kind is Sleep:
            return None
        raise AssertionError(f"a provider flow yielded {command!r}")

    return answer


def drive(flow: Any, answer: Callable[[Any], Any]) -> tuple[list[ChatChunk], Any]:
    """Run `flow` to its end (or MAX_STEPS): the chunks it emitted, and its result or
    the ProviderError it raised."""
    chunks: list[ChatChunk] = []
    pump = Pump(flow)
    try:
        command = pump.start()
        for _ in range(MAX_STEPS):
            if command is DONE:
                return chunks, pump.result
            if type(command) is Emit:
                chunks.append(command.chunk)
                command = pump.send(None)
            else:
                command = pump.send(answer(command))
    except turnout.ProviderError as error:
        return chunks, error
    flow.close()
    return chunks, None


def check_outcome(result: Any, provider: str) -> None:
    if isinstance(result, turnout.ProviderError):
        assert type(result) is KIND_CLASSES[result.kind]
        assert result.retry_after is None or 0 <= result.retry_after <= turnout.MAX_HINT
    elif result is not None:
        check_response(result)


def check_response(response: ChatResponse) -> None:
    assert isinstance(response, ChatResponse)
    assert isinstance(response.content, str)
    assert response.finish_reason is None or isinstance(response.finish_reason, str)
    for call in response.tool_calls:
        assert isinstance(call.name, str)
        assert isinstance(call.arguments, str)
    if response.usage is not None:
        for count in (response.usage.prompt_tokens, response.usage.completion_tokens):
            assert count is None or (isinstance(count, int) and count >= 0)


def check_chunk(chunk: ChatChunk) -> None:
    assert isinstance(chunk, ChatChunk)
    assert isinstance(chunk.delta, str)
    assert chunk.finish_reason is None or isinstance(chunk.finish_reason, str)


@SETTINGS
@given(name=st.sampled_from(NAMES), data=st.data())
def test_every_chat_flow_ends_in_an_answer_or_a_normalized_error(name: str, data: st.DataObject) -> None:
    provider = PROVIDERS[name]
    _, result = drive(provider.chat(deployment_for(provider), REQUEST), responder(data))
    check_outcome(result, name)


@SETTINGS
@given(name=st.sampled_from(NAMES), data=st.data())
def test_every_stream_flow_emits_chunks_then_ends_or_raises_a_normalized_error(
    name: str, data: st.DataObject
) -> None:
    provider = PROVIDERS[name]
    chunks, result = drive(provider.stream(deployment_for(provider), REQUEST), responder(data))
    for chunk in chunks:
        check_chunk(chunk)
    check_outcome(result, name)


@SETTINGS
@given(name=st.sampled_from(PARSERS), status=st.sampled_from([200, 201]), headers=HEADERS, body=COMPLETIONS)
def test_every_response_parser_returns_an_answer_or_a_parse_error(
    name: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    try:
        response = PROVIDERS[name].parse_completion(HTTPResponse(status, headers, body))  # type: ignore[attr-defined]
    except turnout.ProviderError as error:
        check_outcome(error, name)
    else:
        check_response(response)


@SETTINGS
@given(name=st.sampled_from(PARSERS), payload=OBJECTS)
def test_every_chunk_parser_returns_a_chunk_none_or_malformed(name: str, payload: dict[str, Any]) -> None:
    try:
        chunk = PROVIDERS[name].chunk_from(payload)  # type: ignore[attr-defined]
    except Malformed:
        return  # the stream flow turns it into a parse_error
    if chunk is not None:
        check_chunk(chunk)
