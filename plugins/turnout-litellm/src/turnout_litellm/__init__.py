"""turnout-litellm: SaaS-LiteLLM's Jobs API for turnout.

The plugin registers the `litellm` provider (and its emulator) through the
`turnout` entry-point group. For several calls billed as one job, use
`JobSession` / `AsyncJobSession` (loaded on first access):

    with turnout_litellm.JobSession(deployment, job_type="resume_analysis") as job:
        job.chat(messages)
    job.result.costs
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import turnout

if TYPE_CHECKING:
    from turnout import Provider
    from turnout.emulation import Emulator

    from .provider import JobCallRequest, JobResult, LiteLLM
    from .session import AsyncJobSession, AsyncJobStream, JobSession, JobStream

__version__ = "0.1.0"

__all__ = [
    "AsyncJobSession",
    "AsyncJobStream",
    "JobCallRequest",
    "JobResult",
    "JobSession",
    "JobStream",
    "LiteLLM",
    "turnout_register_emulators",
    "turnout_register_providers",
]

# Loaded on first access, so registering the plugin imports neither httpx nor the emulator.
_LAZY = {
    "AsyncJobSession": "session",
    "AsyncJobStream": "session",
    "JobSession": "session",
    "JobStream": "session",
    "JobCallRequest": "provider",
    "JobResult": "provider",
    "LiteLLM": "provider",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout_litellm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


@turnout.hookimpl
def turnout_register_providers(register: Callable[[Provider], None]) -> None:
    from .provider import LiteLLM

    register(LiteLLM())


@turnout.hookimpl
def turnout_register_emulators(register: Callable[[Emulator], None]) -> None:
    from .emulator import LiteLLMEmulator

    register(LiteLLMEmulator())
