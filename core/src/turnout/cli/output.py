"""How the command line writes: plain text for pipes, rich for terminals.

Both take the same calls (`line`, `heading`, `kv`, `table`), so a command never
asks which one it has. Tables never cut a value: on a terminal the columns
marked `wrap` give way (their text wraps) so a row fits the width; in a pipe
each row stays one line, whatever its length, for the tools that read it.
rich is imported only when stdout is a terminal (and `turnout[cli]` is installed).
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from turnout import Attempt, AttemptEvent
    from turnout._errors import ProviderError

__all__ = [
    "ATTEMPT_COLUMNS",
    "decision_line",
    "Column",
    "Output",
    "RichOutput",
    "attempt_rows",
    "make_output",
    "seconds",
    "wire_detail",
]

INDENT = "  "
GAP = "  "
# A wrapping column is never narrowed below this (nor below its header's longest word).
MIN_WRAP = 8
# Prose in a pipe is wrapped to this.
PROSE_WIDTH = 80
# Where a word too long for its column may break: after one of these.
BREAKS = "/._-"


class Column(NamedTuple):
    header: str
    # What a live table (rows printed as they come) reserves; 0: the content's width.
    width: int = 0
    justify: Literal["left", "right"] = "left"
    # May be narrowed to fit the terminal, its text wrapped (the others keep their width).
    wrap: bool = False


def fit_widths(
    columns: Sequence[Column], natural: Sequence[int], limit: int | None, indent: int = len(INDENT)
) -> list[int]:
    """Widths whose row fits `limit` characters: the wrapping columns give way,
    the widest first, down to their floor. None: no limit (a pipe)."""
    widths = list(natural)
    if limit is None:
        return widths
    excess = indent + sum(widths) + len(GAP) * (len(widths) - 1) - limit
    floors = [
        max(MIN_WRAP, *(len(word) for word in c.header.split())) if c.wrap else w
        for c, w in zip(columns, widths, strict=True)
    ]
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=widths.__getitem__)
        widths[widest] -= 1
        excess -= 1
    return widths


def wrap_cell(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width`: at spaces, and a longer word after a
    `/`, `.`, `_` or `-` when it has one (a URL, a module), else anywhere."""
    lines: list[str] = []
    for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]:
        while len(line) > width:
            cut = max(line.rfind(mark, 0, width) for mark in BREAKS) + 1 or width
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return lines


def layout(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], limit: int | None, indent: int = len(INDENT)
) -> tuple[list[int], list[list[list[str]]]]:
    """The widths of a whole table, and each cell (the header row first) as its lines."""
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    widths = fit_widths(columns, natural, limit, indent)
    cells = [
        [
            wrap_cell(cell, width) if limit and column.wrap else [cell]
            for column, width, cell in zip(columns, widths, row, strict=True)
        ]
        for row in [[c.header for c in columns], *rows]
    ]
    return widths, cells


class Output:
    """Plain text: what a pipe, a log or a test reads. `width`: the terminal's
    columns when stdout is one (tables then wrap to fit), None in a pipe."""

    rich = False
    arrow = "->"
    cross = "x"
    tick = "ok"
    dash = "-"

    def __init__(self, stream: Any = None, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.width = width

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def prose(self, text: str) -> None:
        """A paragraph, wrapped to the terminal's width (80 columns in a pipe:
        prose is read by people, not parsed)."""
        for line in textwrap.wrap(text, self.width or PROSE_WIDTH, break_on_hyphens=False) or [""]:
            self.line(line)

    def heading(self, text: str) -> None:
        self.line()
        self.line(f"== {text} ==")

    def note(self, text: str) -> None:
        self.prose(text)

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
        widths, cells = layout(columns, rows, self.width)
        for row in cells:
            self._lines(columns, widths, row)

    def live_widths(self, columns: Sequence[Column]) -> list[int]:
        """Widths for a table whose rows are printed as they come (content unknown)."""
        return fit_widths(columns, [max(c.width, len(c.header)) for c in columns], self.width)

    def row(self, columns: Sequence[Column], widths: Sequence[int], row: Sequence[str]) -> None:
        """One row, columns padded to `widths`. A longer cell wraps in a wrapping
        column on a terminal; otherwise it pushes the rest of its row along."""
        cells = [
            wrap_cell(cell, width) if self.width and column.wrap else [cell]
            for column, width, cell in zip(columns, widths, row, strict=True)
        ]
        self._lines(columns, widths, cells)

    def _lines(
        self, columns: Sequence[Column], widths: Sequence[int], cells: Sequence[Sequence[str]]
    ) -> None:
        for n in range(max(len(lines) for lines in cells)):
            parts = []
            for column, width, lines in zip(columns, widths, cells, strict=True):
                text = lines[n] if n < len(lines) else ""
                parts.append(text.rjust(width) if column.justify == "right" else text.ljust(width))
            self.line(INDENT + GAP.join(parts).rstrip())


class RichOutput(Output):
    """A terminal: rich tables, colours, live displays."""

    rich = True
    arrow = "→"
    cross = "✗"
    tick = "✓"
    dash = "—"

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        super().__init__(width=self.console.width)

    def line(self, text: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(text))

    def styled(self, text: str, style: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style))

    def prose(self, text: str) -> None:
        self.line(text)

    def heading(self, text: str) -> None:
        from rich.markup import escape

        self.console.print()
        self.console.rule(f"[bold]{escape(text)}", align="left", style="cyan")

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

    def make_table(
        self,
        columns: Sequence[Column],
        title: str = "",
        widths: Sequence[int] = (),
        headers: Sequence[Sequence[str]] = (),
    ) -> Table:
        """An empty table: the wrapping columns wrap (folding a word longer than
        the column), the others keep their content's width; nothing is cut.
        `widths` and `headers` (as lines): when the table is laid out already."""
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
            collapse_padding=True,
            expand=False,
        )
        for n, column in enumerate(columns):
            table.add_column(
                "\n".join(headers[n]) if headers else column.header,
                justify=column.justify,
                no_wrap=not column.wrap,
                overflow="fold",
                width=widths[n] if widths and column.wrap else None,
            )
        return table

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str = "") -> None:
        """A whole table, laid out as the plain one is (breaking long words after a
        separator, not anywhere as rich would)."""
        from rich.text import Text

        widths, cells = layout(columns, rows, self.console.width, indent=0)
        table = self.make_table(columns, title, widths, cells[0])
        for row in cells[1:]:
            table.add_row(*(Text("\n".join(lines)) for lines in row))
        self.console.print(table)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def make_output(plain: bool = False) -> Output:
    """rich on a terminal (unless `plain`, TERM=dumb or no rich); plain text otherwise,
    wrapped to the terminal's width when there is one."""
    if not sys.stdout.isatty():
        return Output()
    if not plain and os.environ.get("TERM") != "dumb" and _rich_available():
        return RichOutput()
    return Output(width=shutil.get_terminal_size().columns)


# -- what the commands show ------------------------------------------------------


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


ATTEMPT_COLUMNS = (
    Column("#", 2, "right"),
    Column("deployment", 10),
    Column("provider", 10),
    Column("outcome", 18),
    Column("detail", 22, wrap=True),
    Column("then", 9),
    Column("elapsed", 7, "right"),
    Column("waited", 7, "right"),
)


def attempt_rows(attempts: Sequence[Attempt], dash: str = "-") -> list[list[str]]:
    """One row per attempt, in `ATTEMPT_COLUMNS` order."""
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
                attempt.decision or dash,
                seconds(attempt.elapsed),
                seconds(attempt.waited) if attempt.waited else dash,
            ]
        )
    return rows


def decision_line(event: AttemptEvent, arrow: str = "->") -> str:
    """One attempt as it is decided: `a (acme): 429 rate_limited -> retry: 429, retry after 0.5 s`."""
    error = event.error
    outcome = "ok" if error is None else f"{wire_detail(error)} {error.kind.value}".strip()
    reason = f": {event.reason}" if event.reason else ""
    return f"{event.deployment} ({event.provider}): {outcome} {arrow} {event.decision}{reason}"
