"""How `turnout demo` shows a scenario while it runs: plain lines printed as they
come (a pipe, a log), or one rich live display per scenario on a terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .output import ATTEMPT_COLUMNS, Column, Output, RichOutput, attempt_rows, decision_line

if TYPE_CHECKING:
    from rich.table import Table

    from turnout import Attempt, AttemptEvent
    from turnout.fake import Served

__all__ = ["CALL_COLUMNS", "HEALTH_COLUMNS", "DemoView", "RichDemoView", "health_rows", "make_view"]

WIRE_COLUMNS = (
    Column("gateway", 10),
    Column("request", 34, wrap=True),
    Column("status", 6, "right"),
    Column("injected fault", 22, wrap=True),
)
# The demo's deployments are introduced with their provider: the attempts leave it out.
_PROVIDER = next(i for i, c in enumerate(ATTEMPT_COLUMNS) if c.header == "provider")
DEMO_ATTEMPT_COLUMNS = ATTEMPT_COLUMNS[:_PROVIDER] + ATTEMPT_COLUMNS[_PROVIDER + 1 :]
_OUTCOME = next(i for i, c in enumerate(DEMO_ATTEMPT_COLUMNS) if c.header == "outcome")
CALL_COLUMNS = (
    Column("call", 4, "right"),
    Column("tried", 34, wrap=True),
    Column("breaker", 9),
    Column("note", 21, wrap=True),
)
HEALTH_COLUMNS = (
    Column("deployment", 10),
    Column("breaker", 9),
    Column("available", 10),
    Column("trips", 5, "right"),
    Column("cooldown", 14, wrap=True),
    Column("recent errors", 36, wrap=True),
)


def _wire_row(served: Served) -> list[str]:
    return [served.provider, f"{served.method} {served.path}", str(served.status), served.fault]


def _attempt_rows(attempts: Sequence[Attempt], dash: str) -> list[list[str]]:
    return [row[:_PROVIDER] + row[_PROVIDER + 1 :] for row in attempt_rows(attempts, dash)]


def health_rows(health: dict[str, Any], dash: str = "-") -> list[list[str]]:
    """`router.health()` in `HEALTH_COLUMNS` order."""
    now = time.time()
    rows = []
    for name, h in health.items():
        wait = max(0.0, (h.available_at or now) - now)
        available = "yes" if h.available else f"in {wait:.1f} s" if wait < 10 else f"in {wait:.0f} s"
        errors = ", ".join(f"{kind} {count}" for kind, count in h.recent_errors.items()) or dash
        rows.append([name, h.status, available, str(h.trips), h.cooldown_reason or dash, errors])
    return rows


class DemoView:
    """Plain lines, printed as they come."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.wire_widths: list[int] | None = None
        self.call_widths: list[int] = []
        self.text: list[str] = []

    def start(self, number: int, title: str, story: str) -> None:
        self.out.heading(f"{number}. {title}")
        self.out.note(story)
        self.wire_widths = None
        self.text = []

    def wire(self, served: Served) -> None:
        if self.wire_widths is None:
            self.wire_widths = self.out.live_widths(WIRE_COLUMNS)
            self.out.line("wire (what the fake gateways received):")
            self.out.row(WIRE_COLUMNS, self.wire_widths, [c.header for c in WIRE_COLUMNS])
        self.out.row(WIRE_COLUMNS, self.wire_widths, _wire_row(served))

    def chunk(self, delta: str) -> None:
        self.text.append(delta)

    def decision(self, event: AttemptEvent) -> None:
        """One attempt, as the router decides what comes next: printed at once."""
        self.out.line(f"router: {decision_line(event, self.out.arrow)}")

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        if self.text:
            self.out.line(f"streamed: {''.join(self.text)!r}")
        rows = _attempt_rows(attempts, self.out.dash)
        self.out.table(DEMO_ATTEMPT_COLUMNS, rows, title="attempts (what the router did):")

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str) -> None:
        self.out.table(columns, rows, title=title)

    def result(self, ok: bool, text: str) -> None:
        (self.out.good if ok else self.out.bad)(f"{'as expected' if ok else 'UNEXPECTED'}: {text}")

    def calls_start(self, total: int, title: str) -> None:
        self.call_widths = self.out.live_widths(CALL_COLUMNS)
        self.out.line(title)
        self.out.row(CALL_COLUMNS, self.call_widths, [c.header for c in CALL_COLUMNS])

    def call(self, row: Sequence[str]) -> None:
        self.out.row(CALL_COLUMNS, self.call_widths, row)

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
        self.wire_table: Table | None = None
        self.stream_text: Any = None

    def start(self, number: int, title: str, story: str) -> None:
        from rich.live import Live

        super().start(number, title, story)
        self.content = _Parts()
        self.wire_table = None
        self.stream_text = None
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

    def wire(self, served: Served) -> None:
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

    def decision(self, event: AttemptEvent) -> None:
        from rich.text import Text

        line = Text(f"router: {decision_line(event, self.out.arrow)}")
        line.stylize("green" if event.error is None else "yellow")
        self.content.parts.append(line)
        self.refresh()

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        from rich.text import Text

        table = self.out.make_table(DEMO_ATTEMPT_COLUMNS, "attempts: what the router did")
        for row in _attempt_rows(attempts, self.out.dash):
            cells = [Text(c) for c in row]
            cells[_OUTCOME].stylize("green" if row[_OUTCOME] == "ok" else "red")
            table.add_row(*cells)
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

    def calls_start(self, total: int, title: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.calls_table = self.out.make_table(CALL_COLUMNS, title)
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


def make_view(out: Output) -> DemoView:
    return RichDemoView(out) if isinstance(out, RichOutput) else DemoView(out)
