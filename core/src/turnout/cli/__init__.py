"""The `turnout` command line: providers, explain, chat, serve, serve-fake, demo.

One module per command, each with its `NAME`, `HELP` and `DESCRIPTION`, an
`arguments(parser)` that adds its own arguments, and a `run(args, out)`;
`output` writes plain text or rich tables. Imports stay lazy: the router, the
plugins, rich, uvicorn and the server are loaded by the command that needs them, never by
`import turnout`. Expected problems are one line on stderr: exit code 2 for
usage and bad input (configuration, unknown provider, unreadable file), 1 for
a call that failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from . import chat, demo, explain, providers, serve, serve_fake
from .errors import CallFailed, UsageError
from .output import make_output

__all__ = ["build_parser", "main"]

PROG = "turnout"
# The subcommands, in this order (see `_add`).
COMMANDS = (providers, explain, chat, serve, serve_fake, demo)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Route LLM requests across gateways: inspect providers, explain errors, "
        "make a call, serve the router over HTTP, run fake gateways, watch the demo.",
    )
    parser.add_argument("--plain", action="store_true", help="plain text output, even on a terminal")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        _add(commands, command)
    return parser


def _add(commands: Any, command: ModuleType) -> None:
    """The subcommand of one command module, its `run` the default for `args.run`."""
    parser = commands.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
    command.arguments(parser)
    parser.set_defaults(run=command.run)


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(command.NAME for command in COMMANDS)}")
    out = make_output(args.plain)
    from turnout._errors import ConfigError, TurnoutError

    try:
        code: int = args.run(args, out)
        return code
    except (UsageError, ConfigError) as exc:
        _fail(str(exc))
        return 2
    except (CallFailed, TurnoutError) as exc:
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`turnout providers | head`): nothing more to say.
        # (As the Python docs advise: no second error when the interpreter flushes stdout.)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
