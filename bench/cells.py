"""What is measured: cells (plain or streamed, sync or async, a concurrency) and their results."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from loopback import STREAM_CHUNKS, TOOL_STREAM_CHUNKS


@dataclass(frozen=True)
class Cell:
    """One way of calling: the contenders of a cell are compared with each other.
    `tools`: a streamed answer of tool calls (two, in pieces) instead of text."""

    stream: bool
    asynchronous: bool
    concurrency: int
    tools: bool = False

    @property
    def key(self) -> str:
        what = "tools" if self.tools else "stream" if self.stream else "plain"
        how = "async" if self.asynchronous else "sync"
        return f"{what}/{how}/c{self.concurrency}"

    @property
    def title(self) -> str:
        what = "streamed (10 chunks)" if self.stream else "plain"
        if self.tools:
            what = f"streamed tool calls ({TOOL_STREAM_CHUNKS} chunks)"
        how = "async" if self.asynchronous else "sync"
        if self.concurrency == 1:
            return f"{what}, {how}, sequential"
        driver = "asyncio.gather + Semaphore" if self.asynchronous else "a pool of threads"
        return f"{what}, {how}, concurrency {self.concurrency} ({driver})"

    @property
    def unit(self) -> str:
        """What CPU time is divided by."""
        return "chunk" if self.stream else "request"

    @property
    def items_per_call(self) -> int:
        if self.tools:
            return TOOL_STREAM_CHUNKS
        return STREAM_CHUNKS if self.stream else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "asynchronous": self.asynchronous,
            "concurrency": self.concurrency,
            "tools": self.tools,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        return cls(
            bool(data["stream"]),
            bool(data["asynchronous"]),
            int(data["concurrency"]),
            bool(data.get("tools", False)),
        )


@dataclass(frozen=True)
class Sample:
    """One round of one contender in one cell."""

    calls: int
    cpu: float  # seconds of the client process's CPU (all threads), time.process_time()
    wall: float  # seconds, time.perf_counter()
    items: int  # requests, or chunks for streams
    connections: int = 0  # TCP connections the upstream accepted during the round

    @classmethod
    def total(cls, parts: list[Sample]) -> Sample:
        """The slices of one round, as one sample."""
        return cls(
            sum(p.calls for p in parts),
            sum(p.cpu for p in parts),
            sum(p.wall for p in parts),
            sum(p.items for p in parts),
            sum(p.connections for p in parts),
        )

    @property
    def cpu_per_item(self) -> float:
        return self.cpu / self.items

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall if self.wall > 0 else float("inf")


@dataclass
class Series:
    """Every round of one contender in one cell."""

    contender: str
    cell: Cell
    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    def cpu(self) -> list[float]:
        return [s.cpu_per_item for s in self.samples]

    def rate(self) -> list[float]:
        return [s.calls_per_second for s in self.samples]

    def connections(self) -> list[float]:
        return [float(s.connections) for s in self.samples]


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"))
        return cls(statistics.median(values), min(values), max(values))


def paired_ratios(numerator: Series, denominator: Series) -> list[float]:
    """Per-round ratios of CPU per item: rounds were interleaved, so round i of one
    contender ran next to round i of the other, under the same conditions."""
    return [a / b for a, b in zip(numerator.cpu(), denominator.cpu(), strict=False) if b > 0]


def paired_differences(minuend: Series, subtrahend: Series) -> list[float]:
    return [a - b for a, b in zip(minuend.cpu(), subtrahend.cpu(), strict=False)]
