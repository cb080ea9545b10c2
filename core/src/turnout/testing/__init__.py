"""The testing kit for adapter authors: `pip install "turnout[testing]"`.

- `ProviderConformance`: subclass it with `provider = MyProvider()` (and optionally
  `emulator = MyEmulator()`) to run the checks every provider must pass;
- `EmulatorServer`: one emulator on a real loopback HTTP server;
- the pytest plugin (`turnout.testing.plugin`, loaded through the `pytest11` entry
  point): the `fake_gateways` fixture, every installed emulator on loopback.

Nothing here is imported by `import turnout`; names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import ProviderConformance
    from .server import EmulatorServer

__all__ = ["EmulatorServer", "ProviderConformance"]

_HOMES = {"ProviderConformance": ".conformance", "EmulatorServer": ".server"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'turnout.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
