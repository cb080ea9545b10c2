"""What one call has done so far: its attempts, the chunks that reached the caller,
the answer they make, and the call's context (its id, route and metadata).

The fallback layer writes it; a stream exposes it while it runs; observers
read it when the call ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ._assembly import Assembly
from ._errors import Attempt
from ._models import ChatChunk, ChatResponse

__all__ = ["CallRecord"]


class CallRecord:
    """What one call has done so far; a stream exposes it while it runs."""

    __slots__ = (
        "answer",
        "attempts",
        "call_id",
        "clock",
        "deployment",
        "emitted",
        "first_chunk_at",
        "headers",
        "metadata",
        "provider",
        "route",
        "started",
        "stream",
    )

    def __init__(
        self,
        call_id: str = "",
        route: str = "",
        *,
        stream: bool = False,
        metadata: Mapping[str, Any] | None = None,
        started: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_id = call_id
        self.route = route
        self.stream = stream
        self.metadata: Mapping[str, Any] = metadata or {}
        self.started = started
        # The router's clock, for the time of the first chunk.
        self.clock = clock
        self.attempts: list[Attempt] = []
        self.answer = Assembly()
        self.emitted = 0
        self.headers: dict[str, str] = {}
        self.deployment: str | None = None
        self.provider: str | None = None
        self.first_chunk_at: float | None = None

    def observe(self, chunk: ChatChunk) -> None:
        """A chunk reaches the caller (the stream hands each one here as it returns it,
        so the flow, resumed only after, sees the call committed)."""
        if not self.emitted:
            self.first_chunk_at = self.clock()
        self.emitted += 1
        self.answer.add(chunk)

    @property
    def committed(self) -> bool:
        """A chunk reached the caller: the call can no longer move elsewhere."""
        return self.emitted > 0

    @property
    def text(self) -> str:
        return str(self.answer.text)

    def response(self) -> ChatResponse:
        """The whole answer of a stream, assembled from its chunks."""
        return self.answer.response(self.headers)
