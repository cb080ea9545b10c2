"""The two ways a command ends badly on purpose: bad input (exit code 2) and a
failed call (exit code 1). `main` turns them into one line on stderr."""

from __future__ import annotations

__all__ = ["CallFailed", "UsageError"]


class UsageError(Exception):
    """Bad input on the command line: exit code 2."""


class CallFailed(Exception):
    """The call itself failed: exit code 1 (the attempts are already shown)."""
