"""Merging a run of some cells into an existing report (`run.py --cells ... --merge`).

The new run's report is rendered as usual, then its measured targets and its
request tables replace (or join) the old report's, its observations about one
cell and its method text replace the old ones, and one row of "Machine and
run" says which run made them: the rest of the report stays as its own run
made it. Nothing is retyped: every
line comes from one of the two generated reports.

The server cell (bench/serve_bench.py), the concurrency cell
(bench/concurrency_bench.py) and the Redis store's (bench/redis_latency.py) write
their own sections between markers; `splice` puts one in a report, and a full
run keeps them (`kept_sections`).
"""

from __future__ import annotations

import re

__all__ = [
    "CONCURRENCY_END",
    "CONCURRENCY_START",
    "REDIS_END",
    "REDIS_START",
    "SERVER_END",
    "SERVER_START",
    "kept_sections",
    "merge",
    "splice",
]

SERVER_START = "<!-- serve-bench:start -->"
SERVER_END = "<!-- serve-bench:end -->"
# bench/concurrency_bench.py's section: AsyncRouter's transport at 50 and 200 concurrent calls.
CONCURRENCY_START = "<!-- concurrency-bench:start -->"
CONCURRENCY_END = "<!-- concurrency-bench:end -->"
# bench/redis_latency.py's section: what a RedisStore adds to a call, in time and round trips.
REDIS_START = "<!-- redis-bench:start -->"
REDIS_END = "<!-- redis-bench:end -->"
# Sections that scripts of their own write; a full run of bench/run.py keeps them as they are.
_MARKERS = ((SERVER_START, SERVER_END), (CONCURRENCY_START, CONCURRENCY_END), (REDIS_START, REDIS_END))


def _section(lines: list[str], heading: str) -> tuple[int, int]:
    """[start, end) of the lines under `heading` (a `## ` line), up to the next `## `."""
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def _cell(row: str, index: int) -> str:
    return row.split(" | ")[index].strip("| ").strip()


def _rows(lines: list[str], heading: str) -> list[int]:
    """The indices of a section's table rows (not the head or the separator)."""
    start, end = _section(lines, heading)
    table = [i for i in range(start, end) if lines[i].startswith("| ")]
    return table[1:] if table and lines[table[0] + 1].startswith("|---") else table


def _subsections(lines: list[str], heading: str) -> dict[str, list[str]]:
    """The `### ` subsections of a section, each with its lines."""
    start, end = _section(lines, heading)
    found: dict[str, list[str]] = {}
    title = None
    for line in lines[start + 1 : end]:
        if line.startswith("### "):
            title = line
            found[title] = []
        if title is not None:
            found[title].append(line)
    return found


def _targets(old: list[str], new: list[str]) -> None:
    """Measured targets replace the old rows; a new one goes where a full run puts it
    (after the row that precedes it in the new report), else last."""
    order = [new[i] for i in _rows(new, "## Targets")]
    for position, row in enumerate(order):
        if _cell(row, 1) == "not measured":
            continue
        rows = _rows(old, "## Targets")
        keys = {_cell(old[i], 0): i for i in rows}
        if _cell(row, 0) in keys:
            old[keys[_cell(row, 0)]] = row
            continue
        before = [keys[_cell(r, 0)] for r in order[:position] if _cell(r, 0) in keys]
        old.insert((before[-1] if before else rows[-1]) + 1, row)


def _requests(old: list[str], new: list[str]) -> None:
    for title, block in _subsections(new, "## Requests").items():
        present = _subsections(old, "## Requests")
        if title in present:
            start = old.index(title)
            old[start : start + len(present[title])] = block
        else:
            _, end = _section(old, "## Requests")
            old[end:end] = block


def _observations(old: list[str], new: list[str]) -> None:
    """An observation about one cell ("- At concurrency 50, ...") becomes the new run's, when
    it made one; those about several cells stay as their run wrote them."""
    prefix, heading = "- At concurrency ", "## Observations"
    if heading not in new or heading not in old:
        return
    start, end = _section(new, heading)
    fresh = {line.split(",")[0]: line for line in new[start:end] if line.startswith(prefix)}
    start, end = _section(old, heading)
    for i in range(start, end):
        if old[i].startswith(prefix) and old[i].split(",")[0] in fresh:
            old[i] = fresh[old[i].split(",")[0]]


def _method(old: list[str], new: list[str]) -> None:
    def span(lines: list[str]) -> tuple[int, int]:
        start = lines.index("How it is measured:")
        return start, lines.index("## Requests", start)

    (a, b), (c, d) = span(old), span(new)
    old[a:b] = new[c:d]


def _run_row(old: list[str], new: list[str], label: str) -> None:
    facts = {_cell(new[i], 0): _cell(new[i], 1) for i in _rows(new, "## Machine and run")}
    parts = [
        facts.get("command", ""),
        facts.get("settings", ""),
        f"started {facts.get('started', '?')}",
        f"upstream served {facts.get('upstream served', '?')}",
        f"load average at the start {facts.get('load average when the run started (1 / 5 / 15 min)', '?')}, "
        f"at the end {facts.get('load average when the run ended', '?')}",
    ]
    row = f"| {label} | {'; '.join(p for p in parts if p)} |"
    rows = _rows(old, "## Machine and run")
    same = [i for i in rows if _cell(old[i], 0) == label]
    if same:
        old[same[0]] = row
    else:
        old.insert(rows[-1] + 1, row)


def merge(old: str, new: str, *, label: str) -> str:
    """`old` with `new`'s measured targets, request tables, method and a `label` row."""
    lines, fresh = old.splitlines(), new.splitlines()
    _targets(lines, fresh)
    _requests(lines, fresh)
    _observations(lines, fresh)
    _method(lines, fresh)
    _run_row(lines, fresh, label)
    text = "\n".join(lines).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def _marked(text: str, start: str, end: str) -> str | None:
    """The section between `start` and `end`, markers included, if `text` has one."""
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        return None
    return text[first : last + len(end)] + "\n"


def kept_sections(text: str) -> list[str]:
    """Every section a script of its own wrote into `text` (the server cell's, the concurrency
    cell's, the Redis store's)."""
    return [found for start, end in _MARKERS if (found := _marked(text, start, end)) is not None]


def splice(text: str, section: str) -> str:
    """`text` with the section of the same markers replaced by `section` (appended if it has none)."""
    start, end = next((s, e) for s, e in _MARKERS if section.startswith(s))
    old = _marked(text, start, end)
    if old is not None:
        return text.replace(old, section)
    return text.rstrip("\n") + "\n\n" + section
