"""The `turnout` command line: providers, explain, chat, serve-fake, demo.

Imports stay lazy: the router, the plugins, rich and uvicorn are loaded by
the subcommand that needs them, never by `import turnout`. Output is rich
tables when stdout is a terminal (and rich is installed: `turnout[cli]`),
plain text otherwise. Expected problems are one line on stderr: exit code 2
for usage and bad input (configuration, unknown provider, unreadable file),
1 for a call that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ._errors import Attempt, ProviderError

__all__ = ["main"]

PROG = "turnout"


class UsageError(Exception):
    """Bad input on the command line: exit code 2."""


class CallFailed(Exception):
    """The call itself failed: exit code 1 (already reported)."""


# -- output ----------------------------------------------------------------------


class Column(NamedTuple):
    header: str
    # Plain text: the fixed width of a live table's column; rich: the column's max width.
    width: int = 0
    justify: Literal["left", "right"] = "left"


def _ellipsize(text: str, width: int, ascii_only: bool) -> str:
    if width <= 0 or len(text) <= width:
        return text
    dots = "..." if ascii_only else "…"
    return text[: max(0, width - len(dots))] + dots


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Output:
    """Plain text: what a pipe, a log or a test reads."""

    rich = False
    arrow = "->"
    cross = "x"
    tick = "ok"
    dash = "-"

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def heading(self, text: str) -> None:
        self.line()
        self.line(f"== {text} ==")

    def note(self, text: str) -> None:
        self.line(text)

    def good(self, text: str) -> None:
        self.line(text)

    def bad(self, text: str) -> None:
        self.line(text)

    def kv(self, pairs: Sequence[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in pairs), default=0) + 2
        for key, value in pairs:
            lines = value.split("\n") or [""]
            self.line(f"{key + ':':<{width}}{lines[0]}")
            for more in lines[1:]:
                self.line(" " * width + more)

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str = "") -> None:
        if title:
            self.line(title)
        widths = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        self.line(self.format_row(columns, widths, [c.header for c in columns]))
        for row in rows:
            self.line(self.format_row(columns, widths, row))

    def format_row(
        self, columns: Sequence[Column], widths: Sequence[int], row: Sequence[str], *, clip: bool = False
    ) -> str:
        """One row, columns padded to `widths` (and cut to them when `clip`)."""
        cells = []
        for column, width, cell in zip(columns, widths, row, strict=True):
            text = _ellipsize(cell, width, True) if clip else cell
            cells.append(f"{text:>{width}}" if column.justify == "right" else f"{text:<{width}}")
        return "  " + "  ".join(cells).rstrip()


class RichOutput(Output):
    """A terminal: rich tables, colours, live displays."""

    rich = True
    arrow = "→"
    cross = "✗"
    tick = "✓"
    dash = "—"

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        super().__init__()
        self.console = console or Console(highlight=False)

    def line(self, text: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(text))

    def styled(self, text: str, style: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style))

    def heading(self, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{_escape(text)}", align="left", style="cyan")

    def note(self, text: str) -> None:
        self.styled(text, "dim")

    def good(self, text: str) -> None:
        self.styled(text, "green")

    def bad(self, text: str) -> None:
        self.styled(text, "red")

    def kv(self, pairs: Sequence[tuple[str, str]]) -> None:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column(overflow="fold")
        for key, value in pairs:
            grid.add_row(Text(key), Text(value))
        self.console.print(grid)

    def make_table(self, columns: Sequence[Column], title: str = "") -> Table:
        from rich import box
        from rich.table import Table

        table = Table(
            title=title or None,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            header_style="bold",
            pad_edge=False,
            show_edge=False,
            expand=False,
        )
        for column in columns:
            table.add_column(
                column.header,
                justify=column.justify,
                no_wrap=True,
                overflow="ellipsis",
                max_width=column.width or None,
            )
        return table

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str = "") -> None:
        from rich.text import Text

        table = self.make_table(columns, title)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_output(plain: bool = False) -> Output:
    if not plain and sys.stdout.isatty() and os.environ.get("TERM") != "dumb" and _rich_available():
        return RichOutput()
    return Output()


# -- formatting ------------------------------------------------------------------


def seconds(value: float | None, dash: str = "-") -> str:
    if value is None:
        return dash
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def wire_detail(error: ProviderError) -> str:
    """Status and the gateway's own code, or the message when there are neither."""
    parts = [str(p) for p in (error.status, error.code) if p is not None]
    return " ".join(parts) if parts else error.message


def attempt_rows(attempts: Sequence[Attempt], dash: str = "-") -> list[list[str]]:
    rows = []
    for number, attempt in enumerate(attempts, 1):
        error = attempt.error
        rows.append(
            [
                str(number),
                attempt.deployment,
                attempt.provider,
                "ok" if error is None else error.kind.value,
                "" if error is None else wire_detail(error),
                seconds(attempt.elapsed),
                seconds(attempt.waited) if attempt.waited else dash,
            ]
        )
    return rows


ATTEMPT_COLUMNS = (
    Column("#", 2, "right"),
    Column("deployment", 10),
    Column("provider", 10),
    Column("outcome", 18),
    Column("detail", 26),
    Column("elapsed", 7, "right"),
    Column("waited", 7, "right"),
)


# -- argument parsing ------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Route LLM requests across gateways: inspect providers, explain errors, "
        "make a call, run fake gateways, watch the demo.",
    )
    parser.add_argument("--plain", action="store_true", help="plain text output, even on a terminal")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("providers", help="the installed provider plugins")

    explain = commands.add_parser(
        "explain",
        help="what turnout makes of a gateway's error response",
        description="Normalize an error response (sans-IO, nothing is sent) and say what the router "
        "would do with it.",
    )
    explain.add_argument("provider", metavar="PROVIDER")
    explain.add_argument("--status", type=int, help="the HTTP status (omit for a stream error frame)")
    explain.add_argument(
        "--header", "-H", action="append", default=[], metavar="K:V", help="a response header (repeatable)"
    )
    explain.add_argument(
        "--body",
        metavar="JSON|@FILE",
        help="the response body: JSON, or @file for a file's raw bytes (@- stdin)",
    )

    chat = commands.add_parser(
        "chat", help="one call through a router built from a TOML file", description="One chat call."
    )
    chat.add_argument("prompt", metavar="PROMPT", help="the user message ('-' reads stdin)")
    chat.add_argument(
        "-c", "--config", default="turnout.toml", help="the router's TOML (default turnout.toml)"
    )
    chat.add_argument(
        "-m", "--model", metavar="ROUTE", help="a route or deployment name (default: the first route)"
    )
    chat.add_argument("--stream", action="store_true", help="stream the answer")
    chat.add_argument("--system", metavar="TEXT", help="a system message")
    chat.add_argument("--deadline", type=float, metavar="SECONDS", help="the whole call's deadline")

    serve = commands.add_parser(
        "serve-fake",
        help="every installed provider's emulator over HTTP, with fault injection",
        description="Serve the fake gateways in the foreground until Ctrl-C.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free port)")
    serve.add_argument("--faults", metavar="FILE", help="fault profiles, TOML or JSON (see docs/cli.md)")
    serve.add_argument("--seed", type=int, help="seed for fault rates (reproducible runs)")
    serve.add_argument("--quiet", "-q", action="store_true", help="do not print each request")

    commands.add_parser(
        "demo",
        help="fake gateways on loopback, a router over all five providers, scripted failures",
        description="Scripted scenarios over fake gateways on 127.0.0.1: no keys, no network.",
    )
    return parser


# -- providers -------------------------------------------------------------------


def _normal(name: str | None) -> str:
    return (name or "").lower().replace("_", "-").replace(".", "-")


def cmd_providers(args: argparse.Namespace, out: Output) -> int:
    from importlib.metadata import entry_points

    import turnout

    from ._plugins import default_plugins

    infos = turnout.providers()
    if not infos:
        out.line("No provider plugins are installed (pip install turnout-meshapi, ...).")
        return 0
    points: dict[str, list[str]] = {}
    for point in entry_points(group="turnout"):
        dist = point.dist.name if point.dist is not None else None
        points.setdefault(_normal(dist), []).append(f"{point.name} = {point.value}")
    emulators = default_plugins().emulators()
    rows = [
        [
            info.name,
            info.distribution or "(in code)",
            info.version or out.dash,
            ", ".join(points.get(_normal(info.distribution), [])) or out.dash,
            info.module,
            "yes" if info.name in emulators else "no",
        ]
        for info in infos.values()
    ]
    columns = (
        Column("provider"),
        Column("distribution"),
        Column("version"),
        Column("entry point (turnout)"),
        Column("module"),
        Column("emulator"),
    )
    out.table(columns, rows)
    return 0


# -- explain ---------------------------------------------------------------------


def _read_body(spec: str) -> bytes | str:
    if spec.startswith("@"):
        name = spec[1:]
        if name == "-":
            return sys.stdin.buffer.read()
        try:
            with open(name, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read the body file {name!r}: {exc.strerror}") from None
    try:
        json.loads(spec)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--body is not valid JSON ({exc}); use @FILE for a raw body") from None
    return spec


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {value!r} is not K:V")
        headers[name.strip().lower()] = content.strip()
    return headers


def _class_chain(error: ProviderError) -> str:
    from ._errors import ProviderError

    chain = [cls.__name__ for cls in type(error).__mro__ if issubclass(cls, ProviderError)]
    head, rest = chain[0], chain[1:]
    return f"turnout.{head}" + (f" ({', '.join(rest)})" if rest else "")


def _delay_range(error: ProviderError, policy: Any) -> tuple[float, float]:
    delay = min(policy.cap, policy.base)
    if policy.jitter == "full":
        low, high = 0.0, delay
    elif policy.jitter == "symmetric":
        spread = delay * policy.jitter_ratio
        low, high = max(0.0, delay - spread), min(policy.cap, delay + spread)
    else:
        low = high = delay
    if error.retry_after is not None:
        low, high = max(low, error.retry_after), max(high, error.retry_after)
    return low, high


def _span(low: float, high: float) -> str:
    return f"{low:.3g} s" if abs(high - low) < 1e-9 else f"{low:.3g}-{high:.3g} s"


def router_would(error: ProviderError, policy: Any) -> list[str]:
    """What the router does with `error` on a first failure, in words."""
    from ._errors import KIND_RULES, ErrorKind, Fallback
    from ._retry import Retry

    rule = KIND_RULES[error.kind]
    lines = []
    decision = policy.decide(error, 0, streaming=False)
    if isinstance(decision, Retry):
        low, high = _delay_range(error, policy)
        floor = " (never less than its Retry-After)" if error.retry_after is not None else ""
        lines.append(
            f"retry on the same deployment after {_span(low, high)}{floor}; "
            f"up to {policy.max_retries} retries"
        )
        streamed = policy.decide(error, 0, streaming=True)
        if not isinstance(streamed, Retry):
            lines.append(f"(a stream is not retried: {streamed.reason})")
    else:
        lines.append(f"no retry on the same deployment: {decision.reason}")
    then = "then " if isinstance(decision, Retry) else ""
    fallback = {
        Fallback.ALWAYS: f"{then}fall back to the next deployment of the route",
        Fallback.NEVER: f"{then}raise it: another deployment would fail the same way",
        Fallback.CONTENT_POLICY_ROUTE: f"{then}fall back only to the route's content_policy_fallbacks, "
        "else raise it",
        Fallback.CONTEXT_WINDOW_ROUTE: f"{then}fall back only to the route's context_window_fallbacks, "
        "else raise it",
        Fallback.BEFORE_FIRST_CHUNK: "fall back if no chunk has reached the caller yet; "
        "after that, raise it with partial_text",
    }[error.fallback]
    lines.append(fallback)
    if rule.cooldown:
        lines.append(f"the deployment is set aside for {rule.cooldown / 60:g} min for other calls")
    elif error.kind is ErrorKind.RATE_LIMITED and error.retry_after:
        lines.append(f"the deployment is set aside for {error.retry_after:g} s for other calls")
    lines.append(
        "counts against the deployment's breaker"
        if rule.health_failure
        else "does not count against the deployment's health"
    )
    return lines


def cmd_explain(args: argparse.Namespace, out: Output) -> int:
    import turnout

    from ._plugins import default_plugins

    headers = _headers(args.header)
    body = _read_body(args.body) if args.body is not None else None
    error = turnout.normalize_error(args.provider, status=args.status, headers=headers, body=body)
    provider = default_plugins().provider(args.provider)
    dash = out.dash
    details = "\n".join(f"{d.field}: {d.code or dash}: {d.message}" for d in error.details) or dash
    pairs = [
        ("provider", args.provider),
        ("status", str(error.status) if error.status is not None else dash),
        ("kind", error.kind.value),
        ("class", _class_chain(error)),
        ("retryable", "yes" if error.retryable else "no"),
        ("retry_after", f"{error.retry_after:g} s" if error.retry_after is not None else dash),
        ("request_id", error.request_id or dash),
        ("code", error.code or dash),
        ("message", error.message or dash),
        ("details", details),
        ("router", "\n".join(router_would(error, provider.retry_policy))),
    ]
    out.kv(pairs)
    return 0


# -- chat ------------------------------------------------------------------------


def _print_attempts(out: Output, attempts: Sequence[Attempt]) -> None:
    out.line()
    out.table(ATTEMPT_COLUMNS, attempt_rows(attempts, out.dash), title="attempts")


def cmd_chat(args: argparse.Namespace, out: Output) -> int:
    import turnout

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    router = turnout.Router.from_config(args.config)
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


# -- serve-fake ------------------------------------------------------------------


def cmd_serve_fake(args: argparse.Namespace, out: Output) -> int:
    import signal

    from .fake import FakeGateways, Served

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
    out.table((Column("provider"), Column("url"), Column("base_url for a deployment")), rows)
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


# -- demo ------------------------------------------------------------------------

DEMO_PROVIDERS = ("meshapi", "mume", "litellm", "mythicdot", "modelroute")
DEMO_PROMPT = [{"role": "user", "content": "Tell me how a railway turnout works"}]
WIRE_COLUMNS = (
    Column("gateway", 10),
    Column("request", 38),
    Column("status", 6, "right"),
    Column("injected fault", 34),
)
CALL_COLUMNS = (
    Column("call", 4, "right"),
    Column("tried", 44),
    Column("litellm breaker", 15),
    Column("note", 22),
)
SUMMARY_COLUMNS = (
    Column("#", 2, "right"),
    Column("", 2),
    Column("scenario", 18),
    Column("what happened", 54),
    Column("time", 7, "right"),
)


class ScenarioResult(NamedTuple):
    name: str
    ok: bool
    summary: str
    elapsed: float


class DemoView:
    """How the demo shows a scenario as it runs: plain lines, printed as they come."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.wire_header = False
        self.text: list[str] = []

    def start(self, number: int, title: str, story: str) -> None:
        self.out.heading(f"{number}. {title}")
        self.out.note(story)
        self.wire_header = False
        self.text = []

    def _widths(self, columns: Sequence[Column]) -> list[int]:
        return [max(c.width, len(c.header)) for c in columns]

    def wire(self, served: Any) -> None:
        if not self.wire_header:
            self.out.line("wire (what the fake gateways received):")
            self.out.line(
                self.out.format_row(
                    WIRE_COLUMNS, self._widths(WIRE_COLUMNS), [c.header for c in WIRE_COLUMNS]
                )
            )
            self.wire_header = True
        self.out.line(
            self.out.format_row(WIRE_COLUMNS, self._widths(WIRE_COLUMNS), _wire_row(served), clip=True)
        )

    def chunk(self, delta: str) -> None:
        self.text.append(delta)

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        if self.text:
            self.out.line(f"streamed: {''.join(self.text)!r}")
        self.out.table(
            ATTEMPT_COLUMNS, attempt_rows(attempts, self.out.dash), title="attempts (what the router did):"
        )

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str) -> None:
        self.out.table(columns, rows, title=title)

    def result(self, ok: bool, text: str) -> None:
        (self.out.good if ok else self.out.bad)(f"{'as expected' if ok else 'UNEXPECTED'}: {text}")

    def calls_start(self, total: int) -> None:
        self.total = total
        self.out.line(
            self.out.format_row(CALL_COLUMNS, self._widths(CALL_COLUMNS), [c.header for c in CALL_COLUMNS])
        )

    def call(self, row: Sequence[str]) -> None:
        self.out.line(self.out.format_row(CALL_COLUMNS, self._widths(CALL_COLUMNS), row, clip=True))

    def stop(self) -> None:
        pass


class _Parts:
    """A live display's content: rebuilt by rich on each refresh."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def __rich__(self) -> Any:
        from rich.console import Group

        return Group(*self.parts)


class RichDemoView(DemoView):
    """A terminal: one live display per scenario, refreshed as requests and chunks arrive."""

    out: RichOutput

    def __init__(self, out: RichOutput) -> None:
        super().__init__(out)
        self.live: Any = None
        self.content = _Parts()
        self.progress: Any = None
        self.task: Any = None

    def start(self, number: int, title: str, story: str) -> None:
        from rich.live import Live

        super().start(number, title, story)
        self.content = _Parts()
        self.wire_table: Table | None = None
        self.stream_text: Any = None
        self.live = Live(
            self.content,
            console=self.out.console,
            auto_refresh=False,
            vertical_overflow="visible",
        )
        self.live.start()

    def refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def wire(self, served: Any) -> None:
        from rich.text import Text

        if self.wire_table is None:
            self.wire_table = self.out.make_table(WIRE_COLUMNS, "wire: what the fake gateways received")
            self.content.parts.append(self.wire_table)
        row = _wire_row(served)
        style = "red" if served.status >= 400 or served.fault else ""
        self.wire_table.add_row(
            *(Text(cell) for cell in row[:2]), Text(row[2], style=style), Text(row[3], "yellow")
        )
        self.refresh()

    def chunk(self, delta: str) -> None:
        from rich.text import Text

        if self.stream_text is None:
            self.stream_text = Text("streamed: ", style="bold")
            self.content.parts.append(self.stream_text)
        self.stream_text.append(delta, style="not bold green")
        self.refresh()

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        from rich.text import Text

        table = self.out.make_table(ATTEMPT_COLUMNS, "attempts: what the router did")
        for row in attempt_rows(attempts, self.out.dash):
            outcome = Text(row[3], style="green" if row[3] == "ok" else "red")
            table.add_row(*(Text(c) for c in row[:3]), outcome, *(Text(c) for c in row[4:]))
        self.content.parts.append(table)
        self.refresh()

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str) -> None:
        from rich.text import Text

        table = self.out.make_table(columns, title)
        for row in rows:
            table.add_row(*(Text(c) for c in row))
        self.content.parts.append(table)
        self.refresh()

    def result(self, ok: bool, text: str) -> None:
        from rich.text import Text

        mark = f"{self.out.tick} " if ok else f"{self.out.cross} UNEXPECTED: "
        self.content.parts.append(Text(mark + text, style="bold green" if ok else "bold red"))
        self.refresh()

    def calls_start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.calls_table = self.out.make_table(CALL_COLUMNS, "calls")
        self.progress = Progress(
            TextColumn("[bold]calls"), BarColumn(bar_width=40), MofNCompleteColumn(), auto_refresh=False
        )
        self.task = self.progress.add_task("calls", total=total)
        self.content.parts.extend([self.calls_table, self.progress])
        self.refresh()

    def call(self, row: Sequence[str]) -> None:
        from rich.text import Text

        state = row[2]
        style = {"closed": "green", "open": "red", "half_open": "yellow"}.get(state, "")
        self.calls_table.add_row(Text(row[0]), Text(row[1]), Text(state, style=style), Text(row[3], "yellow"))
        self.progress.advance(self.task)
        self.refresh()

    def stop(self) -> None:
        if self.progress is not None:
            self.content.parts.remove(self.progress)
            self.progress = None
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None


def _wire_row(served: Any) -> list[str]:
    fault = served.fault
    return [served.provider, f"{served.method} {served.path}", str(served.status), fault]


def _modelroute_key() -> str:
    """A key of ModelRoute's shape, sk_<64 hex>_<crc32 as 8 hex> (not a real one)."""
    import hashlib
    import zlib

    body = hashlib.sha256(b"turnout demo").hexdigest()
    return f"sk_{body}_{zlib.crc32(body.encode()):08x}"


class Demo:
    """`turnout demo`: fake gateways on loopback, one router over all five providers,
    scripted failures, and a check that each scenario went as designed."""

    CALLS = 20

    def __init__(self, out: Output) -> None:
        import queue

        self.out = out
        self.view: DemoView = RichDemoView(out) if isinstance(out, RichOutput) else DemoView(out)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results: list[ScenarioResult] = []

    def run(self) -> int:
        import time

        import turnout

        from .fake import FakeGateways

        missing = [name for name in DEMO_PROVIDERS if name not in turnout.providers()]
        if missing:
            raise UsageError(
                f"the demo needs the five provider plugins; missing: {', '.join(missing)} "
                f"(pip install {' '.join('turnout-' + m for m in missing)})"
            )
        started = time.monotonic()
        with FakeGateways(seed=1, observer=lambda served: self.events.put(("wire", served))) as fake:
            self.fake = fake
            router = self.build_router(fake)
            self.router = router
            self.intro(fake, router)
            try:
                scenarios = (
                    ("rate limit", self.rate_limit),
                    ("auth fallback", self.auth_fallback),
                    ("async execution", self.async_execution),
                    ("stream fallback", self.stream_fallback),
                    ("stream cut", self.stream_cut),
                    ("breaker", self.breaker),
                )
                for number, (name, scenario) in enumerate(scenarios, 1):
                    self.results.append(self.play(number, name, scenario))
            finally:
                router.close()
            counts = fake.counts()
        return self.summary(time.monotonic() - started, counts)

    def build_router(self, fake: Any) -> Any:
        import turnout

        from ._health import BreakerConfig

        deployments = [
            turnout.Deployment(
                "mesh", "meshapi", "openai/gpt-4o-mini", api_key="rsk_demo", base_url=fake.base_url("meshapi")
            ),
            turnout.Deployment(
                "mume", "mume", "openai/gpt-4.1-mini", api_key="mume_demo", base_url=fake.base_url("mume")
            ),
            turnout.Deployment(
                "litellm",
                "litellm",
                "ChatAgent",
                api_key="sk-demo",
                base_url=fake.base_url("litellm"),
                options={"team_id": "team_demo"},
            ),
            turnout.Deployment(
                "mythic",
                "mythicdot",
                "mythic-4",
                api_key="sk-mythic-demo",
                base_url=fake.base_url("mythicdot"),
            ),
            turnout.Deployment(
                "modelroute",
                "modelroute",
                "mr-chat-1",
                api_key=_modelroute_key(),
                base_url=fake.base_url("modelroute"),
                options={"poll_interval": 0.05},
            ),
        ]
        routes = {
            "rate-limit": ["mesh"],
            "auth-fallback": ["mume", "mythic"],
            "async": ["modelroute"],
            "stream-fallback": ["mythic", "mesh"],
            "stream-cut": ["mesh", "mythic"],
            "breaker": ["litellm", "mythic"],
        }
        return turnout.Router(
            deployments,
            routes,
            deadline=20.0,
            # A retry that would wait longer than this falls back at once when it can.
            max_retry_wait=0.5,
            # Short breaker times, so the demo shows a probe within seconds.
            breaker=BreakerConfig(open_for=0.5, max_open=2.0),
        )

    def intro(self, fake: Any, router: Any) -> None:
        self.out.line(f"turnout demo: fake gateways on {fake.root}, no keys, no network beyond 127.0.0.1")
        rows = [[d.name, d.provider, d.model, d.base_url or ""] for d in router.deployments.values()]
        columns = (Column("deployment"), Column("provider"), Column("model"), Column("base_url"))
        self.out.table(columns, rows, title="one router, five gateways:")

    def drive(self, work: Callable[[Callable[[str, Any], None]], Any]) -> Any:
        """Run `work` in a thread; meanwhile show what the gateways receive and what it emits."""
        import queue
        import threading

        box: dict[str, Any] = {}

        def emit(kind: str, value: Any) -> None:
            self.events.put((kind, value))

        def runner() -> None:
            try:
                box["value"] = work(emit)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=runner, name="turnout-demo-call", daemon=True)
        thread.start()
        while thread.is_alive() or not self.events.empty():
            try:
                kind, value = self.events.get(timeout=0.02)
            except queue.Empty:
                continue
            if kind == "wire" and not getattr(self, "quiet_wire", False):
                self.view.wire(value)
            elif kind == "chunk":
                self.view.chunk(value)
            elif kind == "call":
                self.view.call(value)
        thread.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def play(self, number: int, name: str, scenario: Callable[[], tuple[bool, str]]) -> ScenarioResult:
        import time

        import turnout

        title, story = (scenario.__doc__ or "").strip().split("\n", 1)
        self.view.start(number, title, " ".join(story.split()))
        started = time.monotonic()
        try:
            ok, summary = scenario()
        except turnout.TurnoutError as exc:
            ok, summary = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        self.view.result(ok, summary)
        self.view.stop()
        return ScenarioResult(name, ok, summary, elapsed)

    # -- the scenarios -----------------------------------------------------------

    def rate_limit(self) -> tuple[bool, str]:
        """Rate limit, then success
        MeshAPI answers 429 with Retry-After: 0.5. The router waits at least that long
        and retries the same deployment, which answers."""
        from .emulation import Fault

        self.fake.script("meshapi", Fault(error="rate_limited", retry_after=0.5))
        response = self.drive(lambda emit: self.router.chat(DEMO_PROMPT, model="rate-limit"))
        attempts = response.attempts
        self.view.attempts(attempts)
        first = attempts[0].error
        ok = (
            len(attempts) == 2
            and first is not None
            and first.kind == "rate_limited"
            and attempts[1].ok
            and attempts[1].waited >= 0.5
        )
        return ok, f"429 {self.out.arrow} waited {attempts[-1].waited:.2f} s {self.out.arrow} mesh answered"

    def auth_fallback(self) -> tuple[bool, str]:
        """Authentication failure, fallback to another provider
        Mume rejects the key (401). Retrying cannot help, so the router falls back to
        MythicDot at once, and sets Mume aside for 10 minutes."""
        from .emulation import Fault

        self.fake.script("mume", Fault(error="authentication"))
        response = self.drive(lambda emit: self.router.chat(DEMO_PROMPT, model="auth-fallback"))
        attempts = response.attempts
        self.view.attempts(attempts)
        first = attempts[0].error
        ok = (
            len(attempts) == 2
            and first is not None
            and first.kind == "authentication"
            and response.deployment == "mythic"
        )
        return ok, f"mume 401 {self.out.arrow} mythic answered"

    def async_execution(self) -> tuple[bool, str]:
        """ModelRoute asynchronous execution
        ModelRoute answers a submit with 202 and an execution id; the provider polls it
        every poll_interval (0.05 s here) until COMPLETED, then fetches the result."""
        before = len(self.fake.log("modelroute"))
        response = self.drive(lambda emit: self.router.chat(DEMO_PROMPT, model="async"))
        self.view.attempts(response.attempts)
        wire = self.fake.log("modelroute")[before:]
        polls = sum(1 for s in wire if s.method == "GET" and not s.path.endswith("/result"))
        submitted = any(s.method == "POST" and s.status == 202 for s in wire)
        fetched = any(s.path.endswith("/result") and s.status == 200 for s in wire)
        ok = submitted and polls >= 1 and fetched and response.deployment == "modelroute"
        arrow = self.out.arrow
        return ok, f"submit 202 {arrow} {polls} polls {arrow} COMPLETED {arrow} result fetched"

    def stream_fallback(self) -> tuple[bool, str]:
        """A stream that falls back before its first chunk
        MythicDot's connection drops before any chunk reached the caller, so the call
        can still move: the router opens the same stream on MeshAPI."""
        from .emulation import Fault

        self.fake.script("mythicdot", Fault(drop_after=0))

        def work(emit: Callable[[str, Any], None]) -> Any:
            with self.router.stream(DEMO_PROMPT, model="stream-fallback") as stream:
                for chunk in stream:
                    emit("chunk", chunk.delta)
            return stream

        stream = self.drive(work)
        attempts = stream.attempts
        self.view.attempts(attempts)
        first = attempts[0].error
        ok = (
            len(attempts) == 2
            and first is not None
            and first.kind == "stream_interrupted"
            and stream.deployment == "mesh"
            and stream.text == "echo: " + DEMO_PROMPT[0]["content"]
        )
        return ok, f"mythic cut before chunk 1 {self.out.arrow} mesh streamed the answer"

    def stream_cut(self) -> tuple[bool, str]:
        """A stream interrupted after its first chunk
        MeshAPI's connection drops after 3 chunks. Text has reached the caller, so the
        call cannot move: StreamInterruptedError is raised with partial_text."""
        import turnout

        from .emulation import Fault

        self.fake.script("meshapi", Fault(drop_after=3))

        def work(emit: Callable[[str, Any], None]) -> Any:
            with self.router.stream(DEMO_PROMPT, model="stream-cut") as stream:
                for chunk in stream:
                    emit("chunk", chunk.delta)
            return stream

        try:
            self.drive(work)
        except turnout.StreamInterruptedError as error:
            self.view.attempts(error.attempts)
            ok = bool(error.partial_text) and len(error.attempts) == 1
            return ok, f"mesh cut after chunk 3: partial_text={error.partial_text!r}"
        return False, "the stream was not interrupted"

    def breaker(self) -> tuple[bool, str]:
        """A breaker opening under a failing provider
        SaaS-LiteLLM answers every request 503. Each call falls back to MythicDot; after
        5 consecutive failures LiteLLM's breaker opens and it receives only a probe
        when the breaker half-opens (after 0.5 s here, doubling on each re-trip)."""
        import time

        self.fake.set_faults("litellm", {"errors": {"unavailable": 1.0}})
        before = self.fake.requests("litellm")
        self.view.calls_start(self.CALLS)
        self.quiet_wire = True
        arrow, cross, tick = self.out.arrow, self.out.cross, self.out.tick
        answered = 0
        probes = 0
        opened_at: int | None = None

        def work(emit: Callable[[str, Any], None]) -> None:
            nonlocal answered, probes, opened_at
            for number in range(1, self.CALLS + 1):
                was_open = self.router.health()["litellm"].trips > 0
                response = self.router.chat(DEMO_PROMPT, model="breaker")
                answered += 1
                steps = [
                    f"{a.deployment} {tick if a.ok else cross + ' ' + (a.error.kind if a.error else '')}"
                    for a in response.attempts
                ]
                health = self.router.health()["litellm"]
                tried = any(a.deployment == "litellm" for a in response.attempts)
                note = ""
                if tried and was_open:
                    probes += 1
                    note = "probe (half-open)"
                elif not tried:
                    note = "skipped: breaker open" if health.status == "open" else "skipped"
                if opened_at is None and health.trips > 0:
                    opened_at = number
                    note = "breaker opens"
                emit("call", [str(number), f" {arrow} ".join(steps), health.status, note])
                time.sleep(0.05)

        try:
            self.drive(work)
        finally:
            self.quiet_wire = False
            self.fake.set_faults("litellm", None)
        received = self.fake.requests("litellm") - before
        health = self.router.health()
        self.view.table(HEALTH_COLUMNS, health_rows(health, self.out.dash), "router.health()")
        ok = answered == self.CALLS and opened_at is not None and received < self.CALLS and probes >= 1
        return ok, (
            f"{answered}/{self.CALLS} answered; litellm open at call {opened_at}, "
            f"then {probes} probe{'s' if probes != 1 else ''}"
        )

    # -- the end -----------------------------------------------------------------

    def summary(self, elapsed: float, counts: dict[str, int]) -> int:
        rows = [
            [str(i), self.out.tick if r.ok else self.out.cross, r.name, r.summary, seconds(r.elapsed)]
            for i, r in enumerate(self.results, 1)
        ]
        self.out.heading("Summary")
        self.out.table(SUMMARY_COLUMNS, rows)
        served = ", ".join(f"{name} {count}" for name, count in counts.items())
        self.out.line(f"requests served by the fake gateways: {served}")
        failed = [r.name for r in self.results if not r.ok]
        if failed:
            self.out.bad(f"{len(failed)} of {len(self.results)} scenarios did not go as designed.")
            return 1
        self.out.good(f"All {len(self.results)} scenarios went as designed, in {elapsed:.1f} s.")
        return 0


HEALTH_COLUMNS = (
    Column("deployment", 10),
    Column("breaker", 9),
    Column("available", 10),
    Column("trips", 5, "right"),
    Column("cooldown", 14),
    Column("recent errors", 36),
)


def health_rows(health: dict[str, Any], dash: str = "-") -> list[list[str]]:
    import time

    now = time.time()
    rows = []
    for name, h in health.items():
        wait = max(0.0, (h.available_at or now) - now)
        available = "yes" if h.available else f"in {wait:.1f} s" if wait < 10 else f"in {wait:.0f} s"
        errors = ", ".join(f"{kind} {count}" for kind, count in h.recent_errors.items()) or dash
        rows.append([name, h.status, available, str(h.trips), h.cooldown_reason or dash, errors])
    return rows


# -- main ------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "providers": cmd_providers,
    "explain": cmd_explain,
    "chat": cmd_chat,
    "serve-fake": cmd_serve_fake,
}


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join([*COMMANDS, 'demo'])}")
    out = make_output(args.plain)
    from ._errors import ConfigError, TurnoutError

    try:
        if args.command == "demo":
            return Demo(out).run()
        return COMMANDS[args.command](args, out)
    except (UsageError, ConfigError) as exc:
        _fail(str(exc))
        return 2
    except CallFailed as exc:
        _fail(str(exc))
        return 1
    except TurnoutError as exc:
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
