"""turnout: send LLM requests through a router that retries correctly, falls back
across providers and raises one error taxonomy for every gateway.

`import turnout` loads nothing but this file: every public name is loaded on
first use (`turnout.Router`, `turnout.RateLimitError`, ...), so httpx, pluggy,
the plugins and the CLI are imported only when something needs them.

The export table is `__init__.pyi` (what type checkers read, too): each
`from .module import Name as Name` line there is one public name.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"


def _exports() -> dict[str, str]:
    """{public name: the private module it lives in}, read from `__init__.pyi`."""
    table: dict[str, str] = {}
    with open(os.path.join(os.path.dirname(__file__), "__init__.pyi"), encoding="utf-8") as stub:
        text = "\n".join(line.split("#", 1)[0] for line in stub)
    for statement in text.split("\nfrom .")[1:]:
        module, _, names = statement.partition(" import ")
        # `import (A as A, ...)` over several lines, or `import A as A` on one.
        names = names[1 : names.index(")")] if names.startswith("(") else names.split("\n", 1)[0]
        for item in names.split(","):
            name = item.split(" as ")[-1].strip()
            if name:
                table[name] = module.strip()
    return table


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
