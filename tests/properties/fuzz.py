"""A bounded fuzz session: the property tests, with many examples, until a time budget.

    python -m tests.properties.fuzz [SECONDS]     # or TURNOUT_FUZZ_SECONDS; default 180
    nox -s fuzz -- 600

Each property of tests/properties runs in turn with 1000 fresh random examples
(`TURNOUT_FUZZ=1`), round after round, and the session stops by itself once
the budget is spent (the property under way finishes its 1000 examples first). The
first failure stops it with hypothesis' minimal failing example and exit code 1.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

DEFAULT_SECONDS = 180.0
MODULES = sorted(p.stem for p in Path(__file__).parent.glob("test_*.py"))


def properties() -> list[tuple[str, Callable[[], None]]]:
    """Every hypothesis test of tests/properties, by name."""
    found = []
    for name in MODULES:
        module = importlib.import_module(f"tests.properties.{name}")
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("test_") and hasattr(value, "hypothesis"):
                found.append((f"{name}.{attr}", value))
    return found


def main(argv: list[str]) -> int:
    budget = float(argv[0]) if argv else float(os.environ.get("TURNOUT_FUZZ_SECONDS", DEFAULT_SECONDS))
    os.environ["TURNOUT_FUZZ"] = "1"  # read when the strategies module is imported
    tests = properties()
    ends = time.monotonic() + budget
    runs: dict[str, int] = dict.fromkeys((name for name, _ in tests), 0)
    # Round after round, in turn: a short budget still reaches every property once.
    for name, test in itertools.cycle(tests):
        if time.monotonic() >= ends:
            break
        try:
            test()
        except Exception:
            traceback.print_exc()
            print(f"fuzz: {name} failed (after {sum(runs.values())} runs of 1000 examples)")
            return 1
        runs[name] += 1
    for name, count in runs.items():
        print(f"{count:5d} x 1000 examples  {name}")
    print(f"fuzz: {sum(runs.values())} runs of {len(tests)} properties, no failure in {budget:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
