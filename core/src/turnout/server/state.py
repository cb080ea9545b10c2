"""What the endpoints of one worker share: its router (built at startup, closed at
shutdown), the keys, the drain gate, the metrics and the mask of upstream keys; and
how the router reaches the gateways."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING

import httpx

from turnout._errors import ConfigError

from .errors import Reply, Scrubber, error_reply
from .gate import Gate
from .metrics import Metrics
from .settings import Settings

if TYPE_CHECKING:
    from turnout._router import AsyncRouter

__all__ = ["TRANSPORTS", "ServerState", "aiohttp_transport", "default_transport"]

# The router's connections to the gateways: httpx-aiohttp's transport (a fraction of the
# CPU of httpcore's pool at high concurrency: see docs/benchmarks.md), or the router's own.
TRANSPORTS = ("aiohttp", "httpx")
# Connections to the gateways, all hosts together (as the OpenAI SDK allows).
_MAX_CONNECTIONS = 1000


def default_transport() -> str:
    """aiohttp, unless the environment names a proxy: the aiohttp transport does not read
    `HTTPS_PROXY` and the like, the router's own transport does (as httpx does)."""
    proxies = urllib.request.getproxies()
    return "httpx" if any(proxies.get(scheme) for scheme in ("http", "https", "all")) else "aiohttp"


def aiohttp_transport() -> httpx.AsyncBaseTransport:
    try:
        import httpx_aiohttp
    except ImportError:
        raise ConfigError(
            "the aiohttp transport needs httpx-aiohttp: pip install 'turnout[server]' "
            "(or start with --transport httpx)",
            path="--transport",
        ) from None
    transport: httpx.AsyncBaseTransport = httpx_aiohttp.AiohttpTransport(
        limits=httpx.Limits(max_connections=_MAX_CONNECTIONS)
    )
    return transport


class ServerState:
    """One worker's router, keys, gate and metrics. `transport`: see `TRANSPORTS`."""

    def __init__(self, settings: Settings, *, transport: str = "aiohttp") -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        self.settings = settings
        self.keys = settings.keys
        self.gate = Gate(settings.grace_period)
        self.metrics = Metrics()
        self.transport = transport
        self.scrub = Scrubber(())
        self._router: AsyncRouter | None = None

    @property
    def router(self) -> AsyncRouter:
        if self._router is None:
            raise RuntimeError("the server has not started: its router is built at startup")
        return self._router

    async def start(self) -> None:
        """Build the router (in the server's loop: its transports belong there)."""
        from turnout._router import AsyncRouter

        options = {} if self.transport == "httpx" else {"transport": aiohttp_transport()}
        # The metrics observe every attempt as the router decides after it.
        router = AsyncRouter.from_config(self.settings.config, observers=[self.metrics], **options)
        self._router = router
        self.scrub = Scrubber(d.key() for d in router.deployments.values())
        self.gate.expired  # noqa: B018 - made now, in the server's loop

    async def close(self) -> None:
        if self._router is not None:
            await self._router.aclose()

    def shutting_down(self, rid: str, message: str = "the server is shutting down") -> Reply:
        """503 while draining: another worker or instance can take the call."""
        return error_reply(f"{message}; try again", "shutting_down", request_id=rid, should_retry=True)

    def model_names(self) -> list[str]:
        """Every name a call's `model` may be: the routes, then the deployments."""
        router = self.router
        return list(dict.fromkeys([*router.routes, *router.deployments]))
