"""`turnout chat`: one call through a router built from a TOML file, then every
attempt it took and who answered."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import CallFailed
from .output import ATTEMPT_COLUMNS, Output, attempt_rows, decision_line

if TYPE_CHECKING:
    from turnout import Attempt, AttemptEvent

__all__ = ["DESCRIPTION", "HELP", "NAME", "arguments", "run"]

NAME = "chat"
HELP = "one call through a router built from a TOML file"
DESCRIPTION = "One chat call."


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help="the user message ('-' reads stdin)")
    parser.add_argument(
        "-c", "--config", default="turnout.toml", help="the router's TOML (default turnout.toml)"
    )
    parser.add_argument(
        "-m", "--model", metavar="ROUTE", help="a route or deployment name (default: the first route)"
    )
    parser.add_argument("--stream", action="store_true", help="stream the answer")
    parser.add_argument("--system", metavar="TEXT", help="a system message")
    parser.add_argument("--deadline", type=float, metavar="SECONDS", help="the whole call's deadline")


def _print_attempts(out: Output, attempts: Sequence[Attempt]) -> None:
    out.line()
    out.table(ATTEMPT_COLUMNS, attempt_rows(attempts, out.dash), title="attempts")


def run(args: argparse.Namespace, out: Output) -> int:
    import turnout

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    router = turnout.Router.from_config(args.config, observers=[_Decisions(out)])
    try:
        if args.stream:
            return _chat_stream(router, messages, args, out)
        try:
            response = router.chat(messages, model=args.model, deadline=args.deadline)
        except turnout.ProviderError as error:
            _print_attempts(out, error.attempts)
            raise CallFailed(f"the call failed: {error}") from None
        except turnout.NoHealthyDeploymentError as error:
            raise CallFailed(f"the call failed: {error}") from None
        out.line(response.content)
        _print_attempts(out, response.attempts)
        out.note(_answered(response))
        return 0
    finally:
        router.close()


class _Decisions:
    """Each decision as the router makes it, on stderr (the answer keeps stdout)."""

    def __init__(self, out: Output) -> None:
        self.arrow = out.arrow

    def on_attempt(self, event: AttemptEvent) -> None:
        sys.stderr.write(f"  {decision_line(event, self.arrow)}\n")
        sys.stderr.flush()


def _answered(response: Any) -> str:
    extra = [f"request id {response.request_id}"] if response.request_id else []
    if response.finish_reason:
        extra.append(f"finish_reason {response.finish_reason}")
    tail = f"; {', '.join(extra)}" if extra else ""
    return f"answered by {response.deployment} ({response.provider}){tail}"


def _chat_stream(router: Any, messages: list[dict[str, str]], args: argparse.Namespace, out: Output) -> int:
    import turnout

    stream = router.stream(messages, model=args.model, deadline=args.deadline)
    wrote = False
    try:
        with stream:
            for chunk in stream:
                sys.stdout.write(chunk.delta)
                sys.stdout.flush()
                wrote = wrote or bool(chunk.delta)
    except turnout.ProviderError as error:
        if wrote:
            out.line()
        _print_attempts(out, error.attempts)
        partial = f" (after {len(error.partial_text)} characters)" if error.partial_text else ""
        raise CallFailed(f"the stream failed{partial}: {error}") from None
    except turnout.NoHealthyDeploymentError as error:
        raise CallFailed(f"the call failed: {error}") from None
    out.line()
    _print_attempts(out, stream.attempts)
    if stream.response is not None:
        out.note(_answered(stream.response))
    return 0
