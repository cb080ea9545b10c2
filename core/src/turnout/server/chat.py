"""`POST /v1/chat/completions`: one router call per request, plain or streamed.

In order: the key (401), shutdown (503), the body (413 past the cap, 400 when
it is not JSON or not a call), the model (404 for a name that is neither a
route nor a deployment), then the router. While the router works, the
endpoint watches for the client going away (the call is abandoned: the
stream is closed and its flow cleans up) and for the end of the grace
period (the call is cancelled and answered 503, or with an error frame).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from turnout._errors import ConfigError, ErrorKind, NoHealthyDeploymentError, ProviderError

from .errors import Reply, bad_request, error_reply, from_router
from .shapes import BadInput, CallArgs, ChunkWriter, completion, dumps
from .streaming import SSE_HEADERS, StreamPump
from .wire import TooLarge, disconnected, encode_headers, header, read_body, request_id, send_whole

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .state import ServerState

__all__ = ["ChatEndpoint"]

log = logging.getLogger("turnout.server")
T = TypeVar("T")
ENDPOINT = "chat"


class ClientGone(Exception):
    """The client disconnected before the answer was sent."""


class GraceOver(Exception):
    """The server stopped before the call finished."""


class ChatEndpoint:
    """The ASGI callable behind `/v1/chat/completions`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id()
        app = self.state
        # Counted from its first byte: a drain that begins while the body is read waits for it.
        app.gate.inflight += 1
        try:
            problem = await self._admit(scope, receive, rid)
            if isinstance(problem, Reply):
                await self._refuse(send, problem)
                return
            if problem is None:
                return  # the client left while sending its body
            args, route = problem
            app.metrics.inflight.inc()
            try:
                if args.stream:
                    await self._stream(args, route, rid, receive, send)
                else:
                    await self._chat(args, route, rid, receive, send)
            finally:
                app.metrics.inflight.dec()
        finally:
            app.gate.inflight -= 1

    async def _admit(self, scope: Scope, receive: Receive, rid: str) -> Reply | tuple[CallArgs, str] | None:
        """The call a request asks for, or the reply refusing it."""
        app = self.state
        denied = app.keys.check(header(scope, b"authorization"))
        if denied is not None:
            return error_reply(denied, ErrorKind.AUTHENTICATION, request_id=rid)
        if app.gate.draining:
            return app.shutting_down(rid)
        try:
            body = await read_body(scope, receive, app.settings.max_body)
        except TooLarge:
            limit = app.settings.max_body
            return error_reply(
                f"the request body is larger than this server takes ({limit} bytes)",
                "request_too_large",
                request_id=rid,
            )
        if body is None:
            return None
        try:
            args = CallArgs.parse(json.loads(body))
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, BadInput):
                return bad_request(str(exc), request_id=rid, param=exc.param)
            return bad_request("the request body is not valid JSON", request_id=rid)
        try:
            route = app.router.route(args.model).name
        except ConfigError:
            known = ", ".join(app.model_names())
            return error_reply(
                f"no route or deployment named {args.model!r}; this server has: {known}",
                ErrorKind.MODEL_NOT_FOUND,
                request_id=rid,
                param="model",
            )
        return args, route

    async def _refuse(self, send: Send, reply: Reply) -> None:
        self.state.metrics.refused(reply.code)
        await self._send_reply(send, reply)

    async def _send_reply(self, send: Send, reply: Reply) -> None:
        self.state.metrics.answered(ENDPOINT, reply.status)
        close = reply.code in ("shutting_down", "request_too_large")
        await send_whole(send, reply.status, reply.body, encode_headers(reply.headers), close=close)

    def _keywords(self, args: CallArgs, rid: str) -> dict[str, Any]:
        return {
            **args.params,
            "model": args.model,
            "extra_body": args.extra_body or None,
            "metadata": {"request_id": rid},
        }

    # -- a whole answer ---------------------------------------------------------------

    async def _chat(self, args: CallArgs, route: str, rid: str, receive: Receive, send: Send) -> None:
        app, began = self.state, time.monotonic()
        try:
            response = await self._guard(app.router.chat(args.messages, **self._keywords(args, rid)), receive)
        except BaseException as exc:
            outcome = await self._failed(exc, route, rid, send, began, stream=False)
            if outcome is not None:
                raise
            return
        app.metrics.call(
            route, stream=False, outcome="ok", elapsed=time.monotonic() - began, usage=response.usage
        )
        body = completion(response, fallback_id=f"chatcmpl-{rid}", model=args.model, created=int(time.time()))
        headers = [(b"x-request-id", rid.encode())]
        if response.deployment:
            headers.append((b"x-turnout-deployment", response.deployment.encode()))
        app.metrics.answered(ENDPOINT, 200)
        await send_whole(send, 200, dumps(body), headers)

    # -- a stream ----------------------------------------------------------------------

    async def _stream(self, args: CallArgs, route: str, rid: str, receive: Receive, send: Send) -> None:
        app, began = self.state, time.monotonic()
        writer = ChunkWriter(
            fallback_id=f"chatcmpl-{rid}",
            model=args.model,
            created=int(time.time()),
            include_usage=args.include_usage,
        )
        headers = [*SSE_HEADERS, (b"x-request-id", rid.encode())]
        pump: StreamPump | None = None
        try:
            stream = app.router.stream(args.messages, **self._keywords(args, rid))
            pump = StreamPump(stream, writer, send, headers, on_error=lambda e: self._error(e, rid))
            await self._guard(pump.run(), receive)
        except BaseException as exc:
            if pump is not None and pump.started:
                await self._broken(exc, pump, route, rid, began)
                if not isinstance(exc, Exception):
                    raise  # a cancellation of the server's own
                return
            if await self._failed(exc, route, rid, send, began, stream=True):
                raise
            return
        assert pump is not None
        elapsed = time.monotonic() - began
        response = pump.stream.response
        if pump.failed is not None:
            app.metrics.call(route, stream=True, outcome=_outcome(pump.failed), elapsed=elapsed)
            app.metrics.answered(ENDPOINT, 200)
            return
        usage = response.usage if response is not None else None
        app.metrics.call(
            route, stream=True, outcome="ok", elapsed=elapsed, usage=usage, first_chunk=pump.first_chunk
        )
        app.metrics.answered(ENDPOINT, 200)

    async def _broken(self, exc: BaseException, pump: StreamPump, route: str, rid: str, began: float) -> None:
        """A stream already begun ended otherwise than by an error the router raised."""
        app = self.state
        elapsed = time.monotonic() - began
        app.metrics.answered(ENDPOINT, 200)
        if isinstance(exc, ClientGone):
            app.metrics.call(route, stream=True, outcome="abandoned", elapsed=elapsed)
            return
        if isinstance(exc, GraceOver):
            reply = app.shutting_down(rid, "the server stopped before the stream finished")
        elif isinstance(exc, Exception):
            log.exception("a stream failed inside the server [request_id=%s]", rid)
            reply = error_reply("the server failed while streaming", "internal_error", request_id=rid)
        else:
            return
        app.metrics.call(route, stream=True, outcome=reply.code, elapsed=elapsed)
        await pump.frame(reply)

    # -- failures ----------------------------------------------------------------------

    def _error(self, error: Exception, rid: str) -> Reply:
        return from_router(error, request_id=rid, scrub=self.state.scrub)

    async def _failed(
        self,
        exc: BaseException,
        route: str,
        rid: str,
        send: Send,
        began: float,
        *,
        stream: bool,
    ) -> BaseException | None:
        """Answer a call that failed before anything was sent. Returns `exc` when it is
        not the call's to answer (a cancellation of the server's own)."""
        app = self.state
        elapsed = time.monotonic() - began
        if isinstance(exc, ProviderError | NoHealthyDeploymentError):
            reply = self._error(exc, rid)
            app.metrics.call(route, stream=stream, outcome=_outcome(exc), elapsed=elapsed)
        elif isinstance(exc, ClientGone):
            app.metrics.call(route, stream=stream, outcome="abandoned", elapsed=elapsed)
            return None
        elif isinstance(exc, GraceOver):
            reply = app.shutting_down(rid, "the server stopped before the call finished")
            app.metrics.call(route, stream=stream, outcome=reply.code, elapsed=elapsed)
        elif isinstance(exc, TypeError | ValueError):
            # The caller's mistake, raised by the router before anything was sent.
            reply = bad_request(app.scrub(str(exc)), request_id=rid)
            app.metrics.refused(reply.code)
        elif isinstance(exc, Exception):
            log.exception("a call failed inside the server [request_id=%s]", rid)
            reply = error_reply("the server failed on this call", "internal_error", request_id=rid)
            app.metrics.refused(reply.code)
        else:
            return exc
        await self._send_reply(send, reply)
        return None

    async def _guard(self, work: Coroutine[Any, Any, T], receive: Receive) -> T:
        """`work`'s result, unless the client leaves first (ClientGone) or the grace
        period ends first (GraceOver): then `work` is cancelled and waited for."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(disconnected(receive))
        expired = self.state.gate.expired
        try:
            await asyncio.wait((task, watch, expired), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            watch.cancel()
            raise
        if task.done():
            watch.cancel()
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if watch.done():
            raise ClientGone
        watch.cancel()
        raise GraceOver


def _outcome(error: Exception) -> str:
    if isinstance(error, ProviderError):
        return error.kind.value
    return "no_healthy_deployment"
