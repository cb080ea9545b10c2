"""Emulators: gateways' wire formats, reproduced without the gateways.

Each provider plugin ships an `Emulator` (registered through the
`turnout_register_emulators` hook) that answers an `EmulatedRequest` exactly
as its gateway would, and renders every documented error on demand. Faults
(`Fault`) make it fail the way gateways fail: error statuses, in-band error
frames, dropped connections, HTML pages from a proxy, malformed bodies.

Unit tests mount emulators on an httpx `MockTransport` (`mock_transport`);
the fake-gateway server serves the same emulators over real HTTP. An emulator
also describes itself, so the core names no gateway: where its API lives
under the host (`base_path`), and how `turnout demo` deploys it and which
stories it plays there (`demo_deployment`, `demo_scenarios`).
This module is not imported by `import turnout`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, ClassVar

import httpx
from attrs import field, frozen

from ._checks import Check
from ._emulated_answers import Answer, Invalid, answer, last_text, words

__all__ = [
    "NO_FAULT",
    "DemoDeployment",
    "DemoScenario",
    "EmulatedRequest",
    "EmulatedResponse",
    "Emulator",
    "Fault",
    "FaultScript",
    "WireLog",
    "answer_text",
    "echo_of",
    "html_page",
    "mock_transport",
    "sse",
]


@frozen
class EmulatedRequest:
    method: str
    # The path as sent (the emulator matches on its suffix: base URLs carry prefixes).
    path: str
    headers: Mapping[str, str] = field(factory=dict)
    body: bytes = b""
    query: Mapping[str, str] = field(factory=dict)
    # The host the request was sent to (one emulator may serve several deployments).
    host: str = ""

    def json(self) -> Any:
        """The body as JSON, or None when it is not."""
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return None

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None


@frozen
class EmulatedResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # For streams: pieces written one by one (each usually one SSE event).
    chunks: tuple[bytes, ...] | None = None
    # Cut the connection (an incomplete transfer) after this many chunks.
    drop_after: int | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> EmulatedResponse:
        body = json.dumps(payload).encode()
        return cls(status, (("content-type", "application/json"), *headers), body)

    @classmethod
    def stream(
        cls,
        chunks: Sequence[bytes],
        *,
        headers: Sequence[tuple[str, str]] = (),
        drop_after: int | None = None,
        status: int = 200,
    ) -> EmulatedResponse:
        all_headers = (("content-type", "text/event-stream"), ("cache-control", "no-cache"), *headers)
        return cls(status, all_headers, b"", tuple(chunks), drop_after)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def text(self) -> str:
        body = self.body if self.chunks is None else b"".join(self.chunks)
        return body.decode("utf-8", errors="replace")


def _status(value: Any) -> int:
    """A status as a number, or as a TOML/JSON key writes it (`"502"`)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("must be an HTTP error status (400-599)")
    return value


# The conditions on a fault's values, checked where faults come from data (fault
# files, the fake server's admin requests: `turnout.fake`); see `turnout._checks`.
Seconds = Annotated[float, Check(lambda v: v >= 0.0, "must be a number of seconds (>= 0)")]
Count = Annotated[int, Check(lambda v: v >= 0, "must be a whole number (>= 0)")]
Status = Annotated[int, Check(lambda v: 400 <= v <= 599, "must be an HTTP error status (400-599)", _status)]


@frozen
class Fault:
    """How to fail one request. Fields combine; the first that applies wins:
    `html`, then `error`, then `malformed`; the stream faults apply to a success."""

    # A provider code, or an ErrorKind value the emulator renders with its own code.
    error: str | None = None
    retry_after: Seconds | None = None
    # An HTML page with this status, as a proxy in front of the gateway sends it.
    html: Status | None = None
    # A 200 whose body is not what the gateway documents.
    malformed: bool = False
    # In-band error frame (provider code or kind) after this many content chunks.
    stream_error: str | None = None
    stream_error_after: Count = 0
    # Cut the connection after this many content chunks (an interrupted stream).
    drop_after: Count | None = None
    # Seconds to wait before answering, and before the first byte of a body (servers only).
    latency: Seconds = 0.0
    first_byte_delay: Seconds = 0.0


NO_FAULT = Fault()

# (method, path, status) of each request a gateway answered, in order.
WireLog = Sequence[tuple[str, str, int]]


@frozen
class DemoDeployment:
    """How `turnout demo` deploys an emulator's provider: a model it serves, a
    fake key of the gateway's own shape (a provider may check the shape before
    sending anything) and the deployment options the provider needs."""

    model: str
    api_key: str
    # The deployment's name in the demo (default: the provider's name).
    name: str = ""
    options: Mapping[str, Any] = field(factory=dict)


@frozen
class DemoScenario:
    """A story `turnout demo` tells with an emulator's gateway in the lead.

    `story` names one of the demo's plays, which scripts the fault, makes the
    calls and checks what the router did (`turnout.cli.stories.STORIES`:
    `rate_limit`, `auth_fallback`, `call`, `stream_fallback`, `stream_cut`,
    `breaker`). `text` says what the gateway does, in its own words; the play
    adds what the router does. `fallback` is the provider the route falls
    back to (another installed one when that one is not). `check` also judges
    what the gateway received during the play, returning whether it went as
    designed and the steps it saw (`["submit 202", "3 polls", ...]`).
    """

    story: str
    text: str
    fallback: str | None = None
    # The title and the short name in the summary (default: the story's).
    title: str = ""
    name: str = ""
    check: Callable[[WireLog], tuple[bool, Sequence[str]]] | None = None


def sse(data: Any, *, event: str | None = None) -> bytes:
    """One server-sent event; dicts and lists are sent as JSON."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode()


def html_page(status: int) -> EmulatedResponse:
    """The kind of page nginx or a load balancer sends when the gateway is down."""
    body = (
        f"<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    return EmulatedResponse(status, (("content-type", "text/html"), ("server", "nginx")), body)


class Emulator(abc.ABC):
    """One gateway's wire format. Subclasses implement `respond`, `render_error`
    and `error_names`; `handle` applies faults first."""

    provider: ClassVar[str]
    # Where the gateway's API lives under its host, when the provider's default base
    # URL does not say (a self-hosted gateway has none). None: that URL's path.
    base_path: ClassVar[str | None] = None

    def demo_deployment(self) -> DemoDeployment | None:
        """How `turnout demo` deploys this gateway; None keeps it out of the demo."""
        return None

    def demo_scenarios(self) -> Sequence[DemoScenario]:
        """The stories `turnout demo` tells with this gateway in the lead."""
        return ()

    def handle(self, request: EmulatedRequest, fault: Fault | None = None) -> EmulatedResponse:
        fault = fault or NO_FAULT
        if fault.html is not None:
            return html_page(fault.html)
        if fault.error is not None:
            return self.render_error(fault.error, retry_after=fault.retry_after)
        if fault.malformed:
            return self.render_malformed(request)
        return self.respond(request, fault)

    @abc.abstractmethod
    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        """Answer as the gateway does when it works, applying the stream faults."""

    @abc.abstractmethod
    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        """The gateway's response for one of its documented errors (a code or a kind)."""

    @abc.abstractmethod
    def error_names(self) -> Sequence[str]:
        """Every error this emulator can render: its codes, or statuses as strings."""

    def render_malformed(self, request: EmulatedRequest) -> EmulatedResponse:
        return EmulatedResponse.json(200, {"unexpected": ["not", "a", "completion"]})

    @staticmethod
    def words(text: str) -> list[str]:
        """Split an answer into stream deltas (words with their following space)."""
        parts = text.split(" ")
        return [p + " " for p in parts[:-1]] + [parts[-1]]

    @staticmethod
    def echo(request: EmulatedRequest) -> str:
        """The deterministic answer: the last message's text, echoed (content parts
        joined by spaces, a part other than text written `[TYPE]`)."""
        payload = request.json()
        messages = payload.get("messages") if isinstance(payload, Mapping) else None
        if isinstance(payload, Mapping) and not messages and isinstance(payload.get("input"), Mapping):
            messages = payload["input"].get("messages")
        return echo_of(messages)


def echo_of(messages: Any) -> str:
    """The echo of a message list: `echo: TEXT`, TEXT being the last message's text
    (content parts joined by spaces, a part other than text written `[TYPE]`)."""
    return f"echo: {last_text(messages)}"


def answer_text(body: Mapping[str, Any]) -> str:
    """What the emulated model answers to a chat request body (`messages` a list), as
    text, by `OpenAIEmulator`'s rules: structured output as its JSON, else the echo.
    For gateways whose answers are text only. Raises `ValueError` (its `param`
    naming the field) for a request OpenAI would refuse."""
    return answer(body, "text").content or ""


FaultSource = Fault | Callable[[EmulatedRequest], Fault | None] | None


def mock_transport(emulators: Mapping[str, Emulator], faults: FaultSource = None) -> httpx.MockTransport:
    """An httpx transport that answers every request with the emulator for its host.

    `emulators` maps a host (`"acme.test"`) to an emulator; `faults` is one
    fault for every request or a function choosing one per request. A
    `drop_after` response raises `httpx.RemoteProtocolError` mid-body, as a
    real dropped connection does.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        emulator = emulators.get(request.url.host)
        if emulator is None:
            raise httpx.ConnectError(f"no emulator for host {request.url.host!r}", request=request)
        emulated = EmulatedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.read(),
            query=dict(request.url.params),
            host=request.url.host,
        )
        fault = faults(emulated) if callable(faults) else faults
        reply = emulator.handle(emulated, fault)
        if reply.chunks is None:
            return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)
        return httpx.Response(
            reply.status, headers=list(reply.headers), stream=_ChunkStream(reply.chunks, reply.drop_after)
        )

    return httpx.MockTransport(handler)


class _ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that can break mid-transfer, for sync and async clients."""

    def __init__(self, chunks: Sequence[bytes], drop_after: int | None) -> None:
        self._chunks = chunks
        self._drop_after = drop_after

    def _pieces(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if self._drop_after is not None and index >= self._drop_after:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            yield chunk
        if self._drop_after is not None and self._drop_after >= len(self._chunks):
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces():
            yield piece

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class OpenAIEmulator(Emulator):
    """An OpenAI-compatible gateway: `POST ...{chat_path}`, JSON completions and
    `chat.completion.chunk` SSE streams ending in `data: [DONE]`.

    What it answers (tool calls, tool results, refusals, structured output,
    content parts, usage with its details) is decided by
    `turnout._emulated_answers`, whose docstring gives the rules; a request
    OpenAI would refuse gets the gateway's 400 (`invalid_request`). Streams
    carry usage in a last chunk (no choices) when the request sets
    `stream_options.include_usage`, as OpenAI's do.

    Gateway emulators subclass it and implement `render_error`, `error_names`
    and, when their in-band error frames differ, `error_frame`.
    """

    chat_path: ClassVar[str] = "/chat/completions"
    model_prefix: ClassVar[str] = ""

    def __init__(self) -> None:
        self._counter = 0
        self._cache_keys: set[str] = set()

    def next_id(self) -> str:
        self._counter += 1
        return f"req_{self.provider}_{self._counter:06d}"

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        if request.method != "POST" or not request.path.endswith(self.chat_path):
            return self.render_error("not_found")
        payload = request.json()
        if not isinstance(payload, Mapping) or not isinstance(payload.get("messages"), list):
            return self.render_error("bad_request")
        request_id = self.next_id()
        key = payload.get("prompt_cache_key")
        cached = isinstance(key, str) and key in self._cache_keys
        if isinstance(key, str):
            self._cache_keys.add(key)
        try:
            reply = answer(payload, request_id, cached=cached)
        except Invalid as problem:
            return self.invalid_request(problem.message, problem.param, request_id)
        model = str(payload.get("model", "model"))
        if payload.get("stream"):
            options = payload.get("stream_options")
            usage = isinstance(options, Mapping) and options.get("include_usage") is True
            return self.stream_reply(reply, model, request_id, fault, usage=usage)
        completion = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": reply.message(),
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": dict(reply.usage),
        }
        return EmulatedResponse.json(200, completion, (("x-request-id", request_id),))

    def invalid_request(self, message: str, param: str | None, request_id: str) -> EmulatedResponse:
        """A request the gateway refuses: its `bad_request` response, saying why."""
        rendered = self.render_error("bad_request", request_id=request_id)
        body = json.loads(rendered.body) if rendered.body.startswith(b"{") else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body["error"]["message"] = message
            if "param" in body["error"]:
                body["error"]["param"] = param
        elif isinstance(body, dict) and isinstance(body.get("detail"), str):
            body["detail"] = message
        else:
            return rendered
        others = tuple((k, v) for k, v in rendered.headers if k.lower() != "content-type")
        return EmulatedResponse.json(rendered.status, body, others)

    def chunk(
        self,
        model: str,
        request_id: str,
        delta: str | Mapping[str, Any] | None,
        finish: str | None = None,
    ) -> bytes:
        """One `chat.completion.chunk` event; `delta` is text, a whole delta object or None."""
        if delta is None:
            delta = {}
        elif isinstance(delta, str):
            delta = {"content": delta}
        body: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return sse(body)

    def deltas(self, reply: Answer) -> list[dict[str, Any] | str]:
        """The answer's pieces as a stream sends them: its words, its refusal's words, or
        each tool call's id and name then its arguments a few characters at a time."""
        if reply.refusal is not None:
            return [{"refusal": word} for word in words(reply.refusal)]
        pieces: list[dict[str, Any] | str] = list(reply.pieces)
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call.id, "type": "function"}
            first: dict[str, Any] = {
                "tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]
            }
            if index == 0:
                first = {"role": "assistant", "content": None, **first}
            pieces.append(first)
            pieces += [
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in call.pieces()
            ]
        return pieces

    def stream_reply(
        self, reply: Answer, model: str, request_id: str, fault: Fault, *, usage: bool = False
    ) -> EmulatedResponse:
        chunks = [self.chunk(model, request_id, piece) for piece in self.deltas(reply)]
        if fault.stream_error is not None:
            at = min(fault.stream_error_after, len(chunks))
            chunks = [*chunks[:at], self.error_frame(fault.stream_error, request_id)]
        else:
            chunks.append(self.chunk(model, request_id, None, reply.finish_reason))
            if usage:
                chunks.append(self.usage_chunk(model, request_id, reply.usage))
            chunks.append(b"data: [DONE]\n\n")
        return EmulatedResponse.stream(
            chunks, headers=(("x-request-id", request_id),), drop_after=fault.drop_after
        )

    @staticmethod
    def usage_chunk(model: str, request_id: str, usage: Mapping[str, Any]) -> bytes:
        """The last chunk of a stream asked for usage: no choices, the whole usage."""
        body = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": dict(usage),
        }
        return sse(body)

    def error_frame(self, error: str, request_id: str) -> bytes:
        """The in-band frame reporting `error` mid-stream: by default, the
        gateway's error body as one `data:` event."""
        rendered = self.render_error(error, request_id=request_id)
        return b"data: " + rendered.body + b"\n\n"


class FaultScript:
    """Scripted faults: a fault source (for `mock_transport`) that answers requests
    with the faults it was given, in order, and then with None (the gateway works).

    - `FaultScript(f1, None, f2)`: the first request gets `f1`, the second none,
      the third `f2`, every later one none.
    - `FaultScript(f1, match=lambda r: r.method == "GET")`: only matching requests
      use up the script; the others get no fault.
    - `FaultScript.by(lambda r: r.host, {"a.test": [f1], "b.test": [f2]})`: one
      script per key (a host, an endpoint...); keys without one get no fault.

    Every request it is asked about is kept in `requests`, in order, so a test can
    assert what reached the gateway; `pending` counts the faults not yet used.
    """

    def __init__(self, *faults: Fault | None, match: Callable[[EmulatedRequest], bool] | None = None) -> None:
        self._key: Callable[[EmulatedRequest], Any] = lambda request: match is None or match(request)
        self._queues: dict[Any, list[Fault | None]] = {True: list(faults)}
        self.requests: list[EmulatedRequest] = []

    @classmethod
    def by(
        cls, key: Callable[[EmulatedRequest], Any], faults: Mapping[Any, Sequence[Fault | None]]
    ) -> FaultScript:
        script = cls()
        script._key = key
        script._queues = {name: list(queue) for name, queue in faults.items()}
        return script

    @property
    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __call__(self, request: EmulatedRequest) -> Fault | None:
        self.requests.append(request)
        queue = self._queues.get(self._key(request))
        return queue.pop(0) if queue else None
