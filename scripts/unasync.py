"""The sync driver's I/O methods, generated from the async driver's.

The two drivers perform the same reads, sends and stream clean-ups, one with
`await` and one without. Written twice by hand, such twins drift; so, as
httpcore does with its whole sync code, the sync copy of each marked region is
generated from the async one by a few textual rules, and checked:

    python scripts/unasync.py           # rewrite the sync regions
    python scripts/unasync.py --check   # exit 1, with a diff, when one differs

A region is the lines between a `# unasync: begin` and a `# unasync: end`
comment, in the async source and in its sync target. tests/core/test_unasync.py
runs the check, so CI fails on a hand edit of a generated region.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src" / "turnout"
# (async source, sync target), relative to the repository.
PAIRS = [(CORE / "_async_driver.py", CORE / "_sync_driver.py")]
BEGIN, END = "# unasync: begin", "# unasync: end"
# Applied in order, to each line of a region.
RULES = [
    (re.compile(r"\basync def\b"), "def"),
    (re.compile(r"\basync for\b"), "for"),
    (re.compile(r"\basync with\b"), "with"),
    (re.compile(r"\bawait anext\("), "next("),
    (re.compile(r"\bawait "), ""),
]


class RegionError(Exception):
    """A file's markers are missing, unpaired or out of order."""


def regions(lines: list[str], path: Path) -> list[tuple[int, int]]:
    """The (first, end) line indexes of each region's body, markers excluded."""
    found: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith(BEGIN):
            if start is not None:
                raise RegionError(f"{path}:{index + 1}: a region begins inside another")
            start = index + 1
        elif text.startswith(END):
            if start is None:
                raise RegionError(f"{path}:{index + 1}: a region ends that never began")
            found.append((start, index))
            start = None
    if start is not None:
        raise RegionError(f"{path}: a region never ends")
    return found


def unasync_line(line: str) -> str:
    for pattern, replacement in RULES:
        line = pattern.sub(replacement, line)
    return line


def generate(source: str, target: str, source_path: Path, target_path: Path) -> str:
    """`target` with each of its regions replaced by the sync form of the source's."""
    source_lines, target_lines = source.splitlines(keepends=True), target.splitlines(keepends=True)
    wanted, present = regions(source_lines, source_path), regions(target_lines, target_path)
    if len(wanted) != len(present):
        raise RegionError(f"{source_path} has {len(wanted)} regions, {target_path} {len(present)}")
    out: list[str] = []
    at = 0
    for (s_start, s_end), (t_start, t_end) in zip(wanted, present, strict=True):
        out += target_lines[at:t_start]
        out += [unasync_line(line) for line in source_lines[s_start:s_end]]
        at = t_end
    out += target_lines[at:]
    return "".join(out)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = 0
    for source_path, target_path in PAIRS:
        target = target_path.read_text()
        fresh = generate(source_path.read_text(), target, source_path, target_path)
        if fresh == target:
            continue
        stale += 1
        if check:
            name = str(target_path.relative_to(ROOT))
            diff = difflib.unified_diff(
                target.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                f"{name} (as it is)",
                f"{name} (generated)",
            )
            sys.stdout.writelines(diff)
        else:
            target_path.write_text(fresh)
            print(f"rewrote {target_path.relative_to(ROOT)}")
    if check and stale:
        print(f"{stale} file(s) differ from their async source: run python scripts/unasync.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
