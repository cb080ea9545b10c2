"""turnout-otel: OpenTelemetry spans and metrics for turnout's routers.

Installed = on: the plugin registers one `OpenTelemetryObserver` through the
`turnout_register_observers` hook, and every router hands it its events
(`TURNOUT_DISABLE_PLUGINS=otel` turns it off). It follows the OpenTelemetry
GenAI semantic conventions, uses the global tracer and meter providers and
never sets them: configure an SDK and the spans go wherever it sends them.

Kept light on purpose: OpenTelemetry is imported when the hook runs (or
`OpenTelemetryObserver` is first used), not when turnout discovers plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import turnout

if TYPE_CHECKING:
    from .observer import OpenTelemetryObserver

__all__ = ["OpenTelemetryObserver", "turnout_register_observers"]

__version__ = "0.1.0"


# optionalhook: a core from before the observer hook ignores this one rather than fail
# `Plugins.check_pending()` (pluggy's way for a plugin to implement a newer hook).
@turnout.hookimpl(optionalhook=True)
def turnout_register_observers(register: Callable[[object], None]) -> None:
    from .observer import OpenTelemetryObserver

    register(OpenTelemetryObserver())


def __getattr__(name: str) -> Any:
    if name == "OpenTelemetryObserver":
        from .observer import OpenTelemetryObserver

        return OpenTelemetryObserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
