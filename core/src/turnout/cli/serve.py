"""`turnout serve`: an OpenAI-compatible HTTP server in front of the router (see
`turnout.server` and docs/serving.md). Needs the `turnout[server]` extra."""

from __future__ import annotations

import argparse

from .errors import UsageError
from .output import Output

__all__ = ["DESCRIPTION", "HELP", "NAME", "arguments", "run"]

NAME = "serve"
HELP = "an OpenAI-compatible server in front of the router, for any language"
DESCRIPTION = (
    "Serve POST /v1/chat/completions (and /v1/models, /healthz, /readyz, /metrics) "
    "through a router built from a TOML file, until stopped. SIGTERM or Ctrl-C drains: new calls "
    "get 503 while the calls in flight finish within the grace period."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default="turnout.toml",
        help="the router's TOML, with [server] (default turnout.toml)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="the port (default 4000; 0: any free port)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (default 1); share state with [state] backend = redis",
    )
    parser.add_argument(
        "--grace-period", type=float, metavar="SECONDS", help="overrides [server] grace_period"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="serve without API keys: anyone who can connect may call"
    )
    parser.add_argument(
        "--transport",
        choices=("aiohttp", "httpx"),
        help="the router's connections to the gateways: aiohttp (httpx-aiohttp, the default) or httpx "
        "(the router's own; the default when the environment sets a proxy, which it follows)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="default info"
    )


def run(args: argparse.Namespace, out: Output) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: at least one")
    try:
        from turnout.server.running import ServeOptions, bind, serve
        from turnout.server.settings import Settings
        from turnout.server.state import aiohttp_transport, default_transport
    except ImportError as exc:
        raise UsageError(
            f"turnout serve needs the server extra: pip install 'turnout[server]' ({exc})"
        ) from None
    # Every mistake in the configuration is found here, before any worker starts.
    settings = Settings.load(args.config, no_auth=args.no_auth, grace_period=args.grace_period)
    transport = args.transport or default_transport()
    if transport == "aiohttp":
        aiohttp_transport()  # installed?
    _check_router(args.config)
    options = ServeOptions.asked(args, grace_period=settings.grace_period, transport=transport)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    auth = "no API key needed (--no-auth)" if args.no_auth else "API keys required"
    out.line(
        f"turnout serve: http://{shown}:{port}/v1 ({args.workers} worker(s), {auth}, {transport} transport)"
    )
    try:
        return serve(options, sock)
    finally:
        sock.close()


def _check_router(config: str) -> None:
    """Build the router once (and close it): a wrong deployment fails here, not in a worker."""
    import asyncio

    from turnout import AsyncRouter

    router = AsyncRouter.from_config(config)
    asyncio.run(router.aclose())
