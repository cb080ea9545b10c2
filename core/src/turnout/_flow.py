"""Commands that sans-IO flows yield and the drivers perform.

A flow is a generator, in the shape of httpx's `Auth.auth_flow`:

    response = yield Send(request)      # the driver performs it, sends back an HTTPResponse
    yield Sleep(2.0)                    # the driver sleeps (time.sleep / asyncio.sleep)
    head = yield OpenStream(request)    # the driver opens a streamed response: status and headers
    rest = yield ReadBody()             # the open stream's HTTPResponse, body read (capped)
    event = yield READ_EVENT            # the next server-sent event, or None at a clean end
    yield Emit(chunk)                   # hand a chunk to the caller (streams only)

Transport failures come back into the flow as a thrown `ProviderError`
(connection, timeout, stream_interrupted), so a flow's `try`/`finally` sees
them exactly as it sees a gateway's error response.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from attrs import field, frozen

from ._limits import DEFAULT_MAX_BODY, ERROR_BODY_LIMIT
from ._models import ChatChunk

if TYPE_CHECKING:
    from ._budget import RetryBudget
    from ._health import BreakerConfig, DeploymentState, Outcome

__all__ = [
    "CallAbandoned",
    "DEFAULT_MAX_BODY",
    "ERROR_BODY_LIMIT",
    "READ_EVENT",
    "Command",
    "Emit",
    "Flow",
    "HTTPRequest",
    "HTTPResponse",
    "Claim",
    "Claimed",
    "LoadState",
    "OpenStream",
    "Race",
    "ReadBody",
    "ReadEvent",
    "SSEvent",
    "Send",
    "Settle",
    "Sleep",
    "Spend",
]

T = TypeVar("T")


def _lower_headers(value: Mapping[str, str] | Any) -> Mapping[str, str]:
    if isinstance(value, Mapping):
        return {str(k).lower(): str(v) for k, v in value.items()}
    return {str(k).lower(): str(v) for k, v in value}


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@frozen(repr=False)
class HTTPRequest:
    """A request a flow wants sent. Its repr omits headers: they carry the key."""

    method: str
    url: str
    headers: Mapping[str, str] = field(factory=dict)
    content: bytes = b""
    # This endpoint's own timeout in seconds; the driver also bounds it by the deadline.
    timeout: float | None = None
    # Whether the request may be sent again after a failure that leaves its outcome
    # unknown (a read timeout, a connection dropped after it was sent). None: as HTTP
    # says (GET, HEAD, PUT, DELETE, OPTIONS; or any request with an Idempotency-Key).
    repeatable: bool | None = None

    def safe_to_repeat(self) -> bool:
        if self.repeatable is not None:
            return self.repeatable
        return self.method.upper() in _IDEMPOTENT or "idempotency-key" in {k.lower() for k in self.headers}

    @classmethod
    def json(
        cls,
        method: str,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        repeatable: bool | None = None,
    ) -> HTTPRequest:
        all_headers = {"content-type": "application/json", "accept": "application/json"}
        all_headers.update(headers or {})
        body = _ENCODER.encode(payload).encode()
        return cls(method, url, all_headers, body, timeout, repeatable)

    def __repr__(self) -> str:
        return f"HTTPRequest({self.method} {self.url})"


# Compact JSON, UTF-8 as is: one encoder for every request (json.dumps with options
# would make a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@frozen(repr=False)
class HTTPResponse:
    """A response as the flow sees it: header names lower-cased, body capped."""

    status: int
    headers: Mapping[str, str] = field(factory=dict, converter=_lower_headers)
    body: bytes = b""
    # True when the body was longer than the driver was asked to read.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    def __repr__(self) -> str:
        return f"HTTPResponse({self.status}, {len(self.body)} bytes)"


class SSEvent(Protocol):
    """One server-sent event (`turnout._reading.Event`); comments and keep-alives
    never reach a flow."""

    @property
    def data(self) -> str: ...

    @property
    def event(self) -> str: ...


@frozen
class Send:
    request: HTTPRequest
    max_body: int = DEFAULT_MAX_BODY
    # Sent even when the call's deadline has passed (best-effort cleanup such as
    # cancelling an execution or failing a job), with its own short timeout.
    cleanup: bool = False


@frozen
class OpenStream:
    request: HTTPRequest


@frozen
class ReadBody:
    max_body: int = DEFAULT_MAX_BODY


@frozen
class ReadEvent:
    pass


READ_EVENT = ReadEvent()


@frozen
class Sleep:
    seconds: float


@frozen
class Emit:
    chunk: ChatChunk


@frozen
class Notify:
    """Hand `event` (an `AttemptEvent`, `CallEvent` or `BreakerEvent`) to the router's
    observers and loggers: what a flow decided, told without doing any I/O itself."""

    event: Any


@frozen
class LoadState:
    """Read the state of these deployments (a dict name -> DeploymentState comes back)."""

    names: tuple[str, ...]


# What a retry or a fallback asks of the budget when it claims a place: nothing, a
# token (a retry on the same deployment), or a token when the deployment claimed is
# itself failing (a fallback: one to a healthy deployment is free).
Spend = Literal["never", "always", "if_failing"]


@frozen
class Claim:
    """Before an attempt, one atomic step on the shared state (one Redis round trip):
    add the budget's share when a call starts (`deposit`), take a place on the first
    of `candidates` that may be tried at `at` (a probe slot when its breaker is not
    closed), paying a retry token as `spend` says, and read back the states of
    `names`. A `Claimed` comes back (`turnout._state.claim` says exactly what).

    A call's first claim gives `plan` instead of candidates: the route's strategy,
    which orders them from the states (the freshest the store has: its own, in
    memory; the last it read, on Redis)."""

    candidates: tuple[str, ...]
    names: tuple[str, ...]
    at: float
    breaker: BreakerConfig
    budget: RetryBudget
    deposit: bool = False
    spend: Spend = "never"
    plan: Callable[[Mapping[str, DeploymentState]], Sequence[str]] | None = None


@frozen
class Claimed:
    """What a `Claim` got: the deployment it took a place on (None: none may be tried
    at that time, or `spent` is False: a token was due and the budget had none), the
    states of the names asked for, and the claimed one's state before the claim."""

    name: str | None
    states: Mapping[str, DeploymentState]
    before: DeploymentState | None = None
    spent: bool = True
    # The candidates in the order claimed from (what the plan made of them).
    candidates: tuple[str, ...] = ()


@frozen
class Settle:
    """After an attempt, one atomic step: apply its `Outcome` to its deployment's state
    (one Redis round trip). (before, after) comes back."""

    name: str
    outcome: Outcome
    breaker: BreakerConfig


@frozen
class Race:
    """Run several flows at once, each starting after its delay (or as soon as every
    started one has finished without winning); the first whose result `won`
    accepts ends the race and the others are abandoned. The finished results
    come back in the order they finished. A flow must not raise."""

    flows: tuple[Generator[Any, Any, Any], ...]
    delays: tuple[float, ...]
    won: Callable[[Any], bool]


class CallAbandoned(BaseException):
    """Thrown into a flow whose caller went away (task cancelled, stream closed early,
    KeyboardInterrupt), so it can yield `Send(..., cleanup=True)` requests before it ends."""


Command = Send | OpenStream | ReadBody | ReadEvent | Sleep | Emit | Notify | LoadState | Claim | Settle | Race
Flow = Generator[Command, Any, T]
