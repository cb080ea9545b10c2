"""`turnout serve-fake`: every installed provider's emulator over HTTP, in the
foreground, with fault injection (see `turnout.fake`)."""

from __future__ import annotations

import argparse
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .output import Column, Output

if TYPE_CHECKING:
    from turnout.fake import Served

__all__ = ["DESCRIPTION", "HELP", "NAME", "arguments", "run"]

NAME = "serve-fake"
HELP = "every installed provider's emulator over HTTP, with fault injection"
DESCRIPTION = "Serve the fake gateways in the foreground until Ctrl-C."
COLUMNS = (Column("provider"), Column("url", wrap=True), Column("base_url for a deployment", wrap=True))


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free port)")
    parser.add_argument("--faults", metavar="FILE", help="fault profiles, TOML or JSON (see docs/cli.md)")
    parser.add_argument("--seed", type=int, help="seed for fault rates (reproducible runs)")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print each request")


def run(args: argparse.Namespace, out: Output) -> int:
    import signal

    from turnout.fake import FakeGateways

    def show(served: Served) -> None:
        fault = f"  [{'scripted: ' if served.scripted else ''}{served.fault}]" if served.fault else ""
        out.line(f"{served.provider:<11} {served.method:<6} {served.path} {out.arrow} {served.status}{fault}")

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number")
    fake = FakeGateways(
        args.faults, seed=args.seed, host=args.host, port=args.port, observer=None if args.quiet else show
    )
    fake.bind()
    rows = [[name, fake.url(name), fake.base_url(name)] for name in fake.providers]
    out.line(f"turnout fake gateways on {fake.root} (Ctrl-C stops)")
    out.table(COLUMNS, rows)
    out.line(f"admin: GET/POST/DELETE {fake.root}/_faults[/PROVIDER[/script]]")
    if fake.seed is not None:
        out.line(f"seed: {fake.seed}")

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn stops gracefully on SIGTERM, then re-raises it: exit 0, not killed.
    signal.signal(signal.SIGTERM, terminate)
    with suppress(KeyboardInterrupt):
        fake.serve()
    return 0
