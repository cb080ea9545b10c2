"""The real SaaS-LiteLLM server's bytes (v1.0.2, from the live run of issue 20 and the
server's source), and the few helpers the issue-20 tests share: a transport that
plays recorded answers, one loopback server of emulators, the four ways to call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways
from turnout_litellm import AsyncJobSession, JobSession
from turnout_litellm.emulator import LiteLLMEmulator

from .conftest import FAST, HI, KEY, TEAM

JOB_ID = "0f8b7c9e-5d2a-4b3c-8e1f-6a7d9c0b1e2f"
CALL_ID = "c41e0f7a-93b2-4d58-a6e1-2f7b8c9d0e1a"
JSON = {"content-type": "application/json"}
SSE = {
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
    "content-type": "text/event-stream; charset=utf-8",
}

# POST /api/jobs/create
CREATED = f'{{"job_id":"{JOB_ID}","status":"PENDING","created_at":"2025-10-24T21:17:01.204512"}}'.encode()

# POST /api/jobs/create-and-call, an Anthropic-backed alias: the upstream's stop_reason
# as it came, and a total of tokens only.
ANTHROPIC_ANSWER = (
    f'{{"job_id":"{JOB_ID}","status":"COMPLETED","response":{{"content":"Hello there!",'
    '"finish_reason":"end_turn"},"metadata":{"tokens_used":16,"latency_ms":812,"model":"claude-fast"},'
    '"costs":{"total_calls":1,"successful_calls":1,"failed_calls":0,"total_tokens":16,'
    '"total_cost_usd":0.000052,"avg_latency_ms":812,"credit_applied":true,"credits_remaining":998},'
    '"completed_at":"2025-10-24T21:17:03.482913"}'
).encode()

# POST /api/jobs/{id}/llm-call: tokens_used only.
CALL_ANSWER = (
    f'{{"call_id":"{CALL_ID}","response":{{"content":"Parsed.","finish_reason":"stop"}},'
    '"metadata":{"tokens_used":27,"latency_ms":640,"model":"ChatAgent"}}'
).encode()

# POST /api/jobs/{id}/complete, as the server answers it: statuses in upper case.
COMPLETE_ANSWERS = {
    "completed": (
        f'{{"job_id":"{JOB_ID}","status":"COMPLETED","completed_at":"2025-10-24T21:17:05.913377",'
        '"costs":{"total_calls":1,"successful_calls":1,"failed_calls":0,"total_tokens":27,'
        '"total_cost_usd":0.000081,"avg_latency_ms":640,"credit_applied":true,"credits_remaining":997},'
        f'"calls":[{{"call_id":"{CALL_ID}","purpose":null,"model_group":"ChatAgent","tokens":27,'
        '"latency_ms":640,"error":null}]}'
    ).encode(),
    "failed": (
        f'{{"job_id":"{JOB_ID}","status":"FAILED","completed_at":"2025-10-24T21:17:05.913377",'
        '"costs":{"total_calls":0,"successful_calls":0,"failed_calls":0,"total_tokens":0,'
        '"total_cost_usd":0.0,"avg_latency_ms":0,"credit_applied":false,"credits_remaining":997},'
        '"calls":[]}'
    ).encode(),
}

# An upstream 429, after the server's nine tries (500, wrapped twice).
WRAPPED_429 = (
    b'{"detail":"LLM call failed: 500: Failed to call provider API: OpenAI rate limit: Error code: 429 - '
    b"{'error': {'message': 'Rate limit reached for gpt-4o-mini in organization org-abc on requests per "
    b"min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.', 'type': 'requests', "
    b"'param': None, 'code': 'rate_limit_exceeded'}}\"}"
)

# POST /api/jobs/create-and-call-stream, an Anthropic-backed alias: the upstream's
# frames forwarded line by line (its `event:` lines dropped), ending with a clean close.
ANTHROPIC_STREAM = (
    b": keepalive\n\n"
    b'data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message",'
    b'"role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":11,"cache_creation_input_tokens":0,'
    b'"cache_read_input_tokens":0,"output_tokens":1}}}\n\n'
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'data: {"type": "ping"}\n\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there!"}}\n\n'
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":5}}\n\n'
    b'data: {"type":"message_stop"}\n\n'
)

# Anthropic overloaded right after message_start: the server passes the upstream's
# error event on as a frame.
ANTHROPIC_OVERLOADED = (
    b": keepalive\n\n"
    b'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",'
    b'"model":"claude-3-5-haiku-20241022","content":[],"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)

# POST /api/jobs/{id}/llm-call-stream on v1.0.2, every time, after the upstream call ran.
BROKEN_JOB_STREAM = (
    b'data: {"error": "\'Response\' object does not support the asynchronous context manager protocol"}\n\n'
)

# An uncaught exception (uuid.UUID(job_id) on a malformed id), and a path that is not there
# (a base_url missing its /api).
PLAIN_500 = b"Internal Server Error"
NOT_FOUND = b'{"detail":"Not Found"}'


# -- a transport playing recorded answers ---------------------------------------------


Answer = tuple[int, Mapping[str, str], bytes]


class Recorded(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers each request with the recorded answer for its endpoint (the last path
    segment: `create`, `llm-call`, `complete`, ...), in order, and keeps the requests."""

    def __init__(self, answers: Mapping[str, Sequence[Answer]]) -> None:
        self.queues = {name: list(items) for name, items in answers.items()}
        self.requests: list[httpx.Request] = []

    def endpoint(self, request: httpx.Request) -> str:
        return request.url.path.rstrip("/").rsplit("/", 1)[-1]

    def paths(self) -> list[str]:
        return [self.endpoint(r) for r in self.requests]

    def _answer(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.queues.get(self.endpoint(request), [])
        status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(status, headers=dict(headers), content=body)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)


def job_answers(**calls: Sequence[Answer]) -> dict[str, list[Answer]]:
    """A job's recorded answers: created, completed (or failed), plus the calls given."""
    answers: dict[str, list[Answer]] = {
        "create": [(200, JSON, CREATED)],
        "complete": [(200, JSON, COMPLETE_ANSWERS["completed"])],
    }
    answers.update({name.replace("_", "-"): list(items) for name, items in calls.items()})
    return answers


# -- deployments ----------------------------------------------------------------------


def lite(name: str, base_url: str, model: str = "ChatAgent", **kw: Any) -> turnout.Deployment:
    kw.setdefault("retry_policy", FAST)
    return turnout.Deployment(
        name, "litellm", model, api_key=KEY, base_url=base_url, options={"team_id": TEAM}, **kw
    )


@contextmanager
def loopback(**emulators: LiteLLMEmulator) -> Iterator[FakeGateways]:
    """The emulators on one loopback HTTP server, each under its own name
    (`fake.base_url(name)`), faults scripted with `fake.script(name, ...)`."""
    with FakeGateways(emulators=emulators) as fake:
        yield fake


# -- the four ways to call --------------------------------------------------------------


def router_chat(deps: Sequence[turnout.Deployment], transport: Any = None, **params: Any) -> Any:
    """Router.chat's answer, or the error it raised."""
    with turnout.Router(list(deps), transport=transport) as router:
        try:
            return router.chat(HI, **params)
        except turnout.ProviderError as error:
            return error


def async_router_chat(deps: Sequence[turnout.Deployment], transport: Any = None, **params: Any) -> Any:
    async def main() -> Any:
        async with turnout.AsyncRouter(list(deps), transport=transport) as router:
            try:
                return await router.chat(HI, **params)
            except turnout.ProviderError as error:
                return error

    return asyncio.run(main())


def router_stream(
    deps: Sequence[turnout.Deployment], transport: Any = None
) -> tuple[list[turnout.ChatChunk], Any]:
    """Router.stream's chunks and whole answer, or the chunks and the error raised."""
    chunks: list[turnout.ChatChunk] = []
    with turnout.Router(list(deps), transport=transport) as router, router.stream(HI) as stream:
        try:
            chunks.extend(stream)
        except turnout.ProviderError as error:
            return chunks, error
        return chunks, stream.response


def async_router_stream(
    deps: Sequence[turnout.Deployment], transport: Any = None
) -> tuple[list[turnout.ChatChunk], Any]:
    async def main() -> tuple[list[turnout.ChatChunk], Any]:
        chunks: list[turnout.ChatChunk] = []
        async with (
            turnout.AsyncRouter(list(deps), transport=transport) as router,
            router.stream(HI) as stream,
        ):
            try:
                async for chunk in stream:
                    chunks.append(chunk)
            except turnout.ProviderError as error:
                return chunks, error
            return chunks, stream.response

    return asyncio.run(main())


CHATS: dict[str, Callable[..., Any]] = {"Router": router_chat, "AsyncRouter": async_router_chat}
STREAMS: dict[str, Callable[..., Any]] = {"Router": router_stream, "AsyncRouter": async_router_stream}


def session_chat(dep: turnout.Deployment, transport: Any = None, **kw: Any) -> tuple[JobSession, Any]:
    """A JobSession making one call: the session, and the call's answer or error."""
    session = JobSession(dep, transport=transport)
    outcome: Any = None
    try:
        with session as job:
            try:
                outcome = job.chat(HI, **kw)
            except turnout.ProviderError as error:
                outcome = error
    except turnout.ProviderError as error:  # the completion's own failure
        outcome = outcome if outcome is not None else error
    return session, outcome


def async_session_chat(
    dep: turnout.Deployment, transport: Any = None, **kw: Any
) -> tuple[AsyncJobSession, Any]:
    async def main() -> tuple[AsyncJobSession, Any]:
        session = AsyncJobSession(dep, transport=transport)
        outcome: Any = None
        try:
            async with session as job:
                try:
                    outcome = await job.chat(HI, **kw)
                except turnout.ProviderError as error:
                    outcome = error
        except turnout.ProviderError as error:
            outcome = outcome if outcome is not None else error
        return session, outcome

    return asyncio.run(main())


SESSIONS: dict[str, Callable[..., Any]] = {"JobSession": session_chat, "AsyncJobSession": async_session_chat}


def decisions(attempts: Sequence[turnout.Attempt]) -> list[tuple[str | None, str]]:
    return [(a.error.kind.value if a.error else None, a.decision) for a in attempts]


def no_fault() -> Fault:
    return Fault()


def payload(request: httpx.Request) -> Any:
    return json.loads(request.content)
