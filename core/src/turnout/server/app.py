"""The Starlette application: one `AsyncRouter` per process, built at startup from the
configuration file and closed at shutdown, and the endpoints around it.

    POST /v1/chat/completions   the router (see chat.py)
    GET  /v1/models             the routes and deployments (GET /v1/models/{id}: one)
    GET  /healthz               the process is up
    GET  /readyz                every route has a deployment a call may be sent to now
    GET  /metrics               Prometheus text

The `/v1` prefix is optional (`base_url` with or without it works). The chat and
model endpoints need a key; health, readiness and metrics do not (load
balancers and Prometheus call them), and say nothing secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from turnout._errors import ErrorKind

from .chat import ChatEndpoint
from .errors import Reply, error_reply
from .gate import Gate
from .metrics import CONTENT_TYPE
from .settings import Settings
from .shapes import dumps
from .state import ServerState, default_transport
from .wire import request_id

if TYPE_CHECKING:
    from turnout._health import Health
    from turnout._router import AsyncRouter

__all__ = ["ServerApp", "create_app", "readiness"]

log = logging.getLogger("turnout.server")


class ServerApp:
    """The ASGI application (`asgi`) of one worker, around its `ServerState`."""

    def __init__(self, settings: Settings, *, transport: str = "aiohttp") -> None:
        state = self.state = ServerState(settings, transport=transport)
        self.metrics = state.metrics
        chat = ChatEndpoint(state)
        routes = []
        for prefix in ("/v1", ""):
            routes += [
                Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
                Route(f"{prefix}/models", self.models, methods=["GET"]),
                Route(f"{prefix}/models/{{model:path}}", self.model, methods=["GET"]),
            ]
        routes += [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ]
        self.asgi = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={HTTPException: self._http_error},
        )

    @property
    def gate(self) -> Gate:
        return self.state.gate

    @asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        await self.state.start()
        try:
            yield
        finally:
            await self.state.close()

    # -- replies -----------------------------------------------------------------------

    def _json(self, status: int, body: Any, rid: str, endpoint: str) -> Response:
        self.metrics.answered(endpoint, status)
        return Response(dumps(body), status, {"x-request-id": rid}, media_type="application/json")

    def _reply(self, reply: Reply, endpoint: str) -> Response:
        self.metrics.refused(reply.code)
        self.metrics.answered(endpoint, reply.status)
        return Response(reply.body, reply.status, dict(reply.headers), media_type="application/json")

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404 and 405, in the envelope."""
        assert isinstance(exc, HTTPException)
        rid = request_id()
        kind = ErrorKind.NOT_FOUND if exc.status_code == 404 else ErrorKind.BAD_REQUEST
        message = f"{request.method} {request.url.path}: {exc.detail}"
        reply = error_reply(message, kind, request_id=rid)
        response = Response(reply.body, exc.status_code, dict(reply.headers), media_type="application/json")
        self.metrics.answered("other", exc.status_code)
        return response

    def _authorized(self, request: Request, rid: str) -> Reply | None:
        raw = request.headers.get("authorization")
        denied = self.state.keys.check(raw.encode("latin-1") if raw is not None else None)
        if denied is not None:
            return error_reply(denied, ErrorKind.AUTHENTICATION, request_id=rid)
        if self.state.gate.draining:
            return self.state.shutting_down(rid)
        return None

    # -- models ------------------------------------------------------------------------

    def _model_object(self, name: str) -> dict[str, Any]:
        router = self.state.router
        routes = router.routes
        if name in routes:
            members = list(routes[name].deployments)
            return {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "turnout",
                "deployments": members,
            }
        provider = router.deployments[name].provider
        return {"id": name, "object": "model", "created": 0, "owned_by": provider}

    async def models(self, request: Request) -> Response:
        rid = request_id()
        refused = self._authorized(request, rid)
        if refused is not None:
            return self._reply(refused, "models")
        data = [self._model_object(name) for name in self.state.model_names()]
        return self._json(200, {"object": "list", "data": data}, rid, "models")

    async def model(self, request: Request) -> Response:
        rid = request_id()
        refused = self._authorized(request, rid)
        if refused is not None:
            return self._reply(refused, "models")
        name = request.path_params["model"]
        if name not in self.state.model_names():
            message = f"no route or deployment named {name!r}"
            return self._reply(error_reply(message, ErrorKind.MODEL_NOT_FOUND, request_id=rid), "models")
        return self._json(200, self._model_object(name), rid, "models")

    # -- health ------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return self._json(200, {"status": "ok"}, request_id(), "healthz")

    async def readyz(self, request: Request) -> Response:
        rid = request_id()
        if self.state.gate.draining:
            return self._json(503, {"status": "shutting_down"}, rid, "readyz")
        health = await self.state.router.health()
        routes = readiness(self.state.router, health, time.time())
        ready = all(route["ready"] for route in routes.values())
        body = {"status": "ready" if ready else "not_ready", "routes": routes}
        return self._json(200 if ready else 503, body, rid, "readyz")

    async def metrics_text(self, request: Request) -> Response:
        health = await self.state.router.health()
        self.metrics.answered("metrics", 200)
        return Response(self.metrics.render(health), 200, media_type=CONTENT_TYPE)


def _members(router: AsyncRouter, name: str) -> list[str]:
    """The deployments a call on route `name` may reach: its own, then its fallbacks'."""
    routes = router.routes
    found: dict[str, None] = {}
    pending, seen = [name], set()
    while pending:
        route = routes[pending.pop(0)]
        if route.name in seen:
            continue
        seen.add(route.name)
        found.update(dict.fromkeys(route.deployments))
        pending.extend(route.fallbacks)
    return list(found)


def _why(health: Health, now: float) -> str:
    """Why a deployment may not be called now, in a few words."""
    parts = []
    if health.status != "closed":
        parts.append(f"breaker {health.status.replace('_', '-')}")
    if health.cooldown_until is not None and health.cooldown_until > now:
        parts.append(f"cooling down after {health.cooldown_reason or 'an error'}")
    if health.exhausted_until is not None and health.exhausted_until > now:
        parts.append("rate limit used up")
    text = ", ".join(parts) or "not available"
    if health.available_at is not None and health.available_at > now:
        text += f" for {health.available_at - now:.1f} s more"
    return text


def readiness(router: AsyncRouter, health: Mapping[str, Health], now: float) -> dict[str, dict[str, Any]]:
    """Each route: ready when at least one deployment it may reach is available now;
    else each one's reason."""
    out: dict[str, dict[str, Any]] = {}
    for name in router.routes:
        members = _members(router, name)
        available = [m for m in members if health[m].available]
        entry: dict[str, Any] = {"ready": bool(available), "available": available}
        if not available:
            entry["reasons"] = {m: _why(health[m], now) for m in members}
        out[name] = entry
    return out


def create_app(
    config: str, *, no_auth: bool = False, grace_period: float | None = None, transport: str | None = None
) -> Starlette:
    """The ASGI application for a configuration file, to run under any ASGI server
    (`turnout serve` runs it under uvicorn, with graceful shutdown)."""
    settings = Settings.load(config, no_auth=no_auth, grace_period=grace_period)
    return ServerApp(settings, transport=transport or default_transport()).asgi
