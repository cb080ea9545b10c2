"""The machinery of the conformance kit: one provider and its emulator on a loopback
server, a fresh router per case (a breaker opened by one case must not decide the
next), whole calls recorded as outcomes, and the invariants every error must keep.

The checks themselves are `ProviderConformance`'s methods (turnout.testing.conformance).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field

import turnout
from turnout import ChatResponse, Deployment, ErrorKind, Plugins, Provider, ProviderError, RetryOverrides
from turnout._hints import MAX_HINT
from turnout._normalize import MESSAGE_LIMIT, kind_for_status
from turnout._transport import SyncTransport
from turnout.emulation import EmulatedRequest, EmulatedResponse, Emulator

from .server import EmulatorServer

__all__ = ["DEADLINE", "Kit", "Outcome", "documented_kind", "error_problems", "last_event", "leaks"]

# Every case must end within this: a hostile answer is an error, never a hang.
DEADLINE = 10.0
# What a message may grow to past the normalizer's cut (a redirect's location is added).
_MESSAGE_ROOM = MESSAGE_LIMIT + 300


@define
class Outcome:
    """How one whole call ended, as its caller saw it."""

    response: ChatResponse | None = None
    error: BaseException | None = None
    deltas: list[str] = field(factory=list)
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    def kind(self) -> str:
        """The error's kind, its class for anything else, "success" for an answer."""
        if isinstance(self.error, ProviderError):
            return self.error.kind.value
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return "success"


class Kit:
    """One provider (and maybe its emulator) under test, on a loopback server."""

    def __init__(
        self,
        provider: Provider,
        emulator: Emulator | None,
        *,
        model: str,
        api_key: str,
        options: Mapping[str, Any],
    ) -> None:
        self.provider = provider
        self.emulator = emulator
        self.model = model
        self.api_key = api_key
        self.options = dict(options)
        prefix = emulator.base_path if emulator is not None and emulator.base_path is not None else None
        if prefix is None:
            prefix = urlsplit(provider.default_base_url).path.rstrip("/")
        self.server = EmulatorServer(emulator, api_prefix=prefix)
        self.plugins = Plugins(entry_points=False)
        self.plugins.add_provider(provider)
        # The router's own transport, shared by the kit's routers (each of which would
        # otherwise load the system's CA certificates again, 15 ms, for loopback HTTP).
        self.transport = SyncTransport()

    def __enter__(self) -> Kit:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.close()
        self.server.close()

    # -- serving -----------------------------------------------------------------------

    def serve(
        self,
        reply: EmulatedResponse | None = None,
        *,
        rewrite: Any = None,
        fault: Any = None,
    ) -> None:
        """What the server answers from now on: `reply` to every request, else the
        emulator (with `fault`, its chunked replies changed by `rewrite`)."""
        self.server.reply = (lambda request: reply) if reply is not None else None
        self.server.rewrite = (lambda r: rewrite(r) if r.chunks is not None else r) if rewrite else None
        self.server.fault = fault
        self.server.requests.clear()
        self.server.replies.clear()
        self.server.failures.clear()

    # -- calling -----------------------------------------------------------------------

    def deployment(self, **changes: Any) -> Deployment:
        fields: dict[str, Any] = {
            "name": "kit",
            "provider": self.provider.name,
            "model": self.model,
            "api_key": self.api_key,
            "base_url": self.server.base_url,
            "options": self.options,
            # One attempt per case: the kit judges the provider's reading, not the retries.
            "retry_policy": RetryOverrides(max_retries=0),
        }
        fields.update(changes)
        return Deployment(**fields)

    def router(self, **changes: Any) -> turnout.Router:
        """A fresh router (a breaker opened or a key cooled down by one case must not
        decide the next) over the shared transport: not to be closed, it would close it."""
        return turnout.Router(
            [self.deployment(**changes)],
            plugins=self.plugins,
            transport=self.transport,
            deadline=DEADLINE,
            timeout=DEADLINE,
        )

    def call(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Outcome:
        """One whole call through a fresh `turnout.Router`: its answer or its error."""
        outcome = Outcome()
        start = time.monotonic()
        deployment_changes = params.pop("deployment", {})
        router = self.router(**deployment_changes)
        try:
            if stream:
                with router.stream(list(messages), **params) as chunks:
                    for chunk in chunks:
                        outcome.deltas.append(chunk.delta)
                    outcome.response = chunks.response
            else:
                outcome.response = router.chat(list(messages), **params)
        except Exception as error:
            outcome.error = error
        outcome.elapsed = time.monotonic() - start
        return outcome

    def async_chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Outcome:
        """The same call through `turnout.AsyncRouter` (its own event loop)."""

        async def run() -> Outcome:
            outcome = Outcome()
            async with turnout.AsyncRouter(
                [self.deployment()], plugins=self.plugins, deadline=DEADLINE, timeout=DEADLINE
            ) as router:
                try:
                    outcome.response = await router.chat(list(messages), **params)
                except Exception as error:
                    outcome.error = error
            return outcome

        return asyncio.run(run())

    def requests(self) -> list[EmulatedRequest]:
        return list(self.server.requests)


def documented_kind(provider: Provider, name: str) -> ErrorKind | None:
    """The kind an emulator's error name stands for: a code of the provider's table,
    a kind, or a status; None when the name is none of these (a scenario)."""
    rule = provider.error_table.rule(name)
    if rule is not None:
        return rule.kind
    if name in ErrorKind.__members__.values():
        return ErrorKind(name)
    if name.isdigit():
        status = int(name)
        return provider.error_table.statuses.get(status, kind_for_status(status))
    return None


def status_kind(provider: Provider, status: int) -> ErrorKind:
    """What a status alone means for this provider (its overrides, else the class)."""
    return provider.error_table.statuses.get(status, kind_for_status(status))


def error_problems(
    error: object, *, provider: str, status: int | None = None, check_status: bool = False
) -> list[str]:
    """What is wrong with an error a normalizer returned (empty: nothing); with
    `check_status`, it must carry the response's `status`."""
    if not isinstance(error, ProviderError):
        return [f"not a ProviderError but {type(error).__name__}"]
    problems = []
    rule = turnout.KIND_RULES.get(error.kind)
    if rule is None:
        return [f"kind {error.kind!r} is not an ErrorKind"]
    if type(error) is not rule.exception:
        problems.append(f"is a {type(error).__name__}, not the {rule.exception.__name__} of {error.kind}")
    if error.provider != provider:
        problems.append(f"names provider {error.provider!r}, not {provider!r}")
    if check_status and error.status != status:
        problems.append(f"has status {error.status!r}, not the response's {status}")
    if not isinstance(error.message, str) or not error.message.strip():
        problems.append(f"has no message ({error.message!r})")
    elif len(error.message) > _MESSAGE_ROOM:
        problems.append(f"has a message of {len(error.message)} characters (cut at {MESSAGE_LIMIT})")
    # A normalizer is the plugin's code: its fields may hold anything, whatever their types say.
    code: Any = error.code
    request_id: Any = error.request_id
    if code is not None and not isinstance(code, str):
        problems.append(f"has a code that is not text: {code!r}")
    if request_id is not None and not isinstance(request_id, str):
        problems.append(f"has a request id that is not text: {request_id!r}")
    if error.retry_after is not None and not (
        isinstance(error.retry_after, int | float) and math.isfinite(error.retry_after)
    ):
        problems.append(f"has retry_after {error.retry_after!r}, not a finite number of seconds")
    elif error.retry_after is not None and not 0 <= error.retry_after <= MAX_HINT:
        problems.append(f"has retry_after {error.retry_after!r}, outside [0, {MAX_HINT:g}] s")
    details = error.details
    if not isinstance(details, tuple) or not all(isinstance(d, turnout.FieldError) for d in details):
        problems.append(f"has details that are not FieldErrors: {error.details!r}")
    try:
        str(error), repr(error)
    except Exception as exc:
        problems.append(f"cannot be shown: {type(exc).__name__}")
    return problems


def _texts(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in `value`, however nested (bounded)."""
    if depth > 6:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("latin-1")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(key, depth + 1)
            yield from _texts(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _texts(item, depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield from _texts(vars(value), depth + 1)


def leaks(error: BaseException, secret: str) -> list[str]:
    """Where `secret` shows in an exception: its text, repr, fields, and those of
    every exception in its chain, and its formatted traceback."""
    found = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if secret in str(current) or secret in repr(current):
            found.append(f"the text of the {name} in the chain")
        elif any(secret in text for text in _texts(current.args)):
            found.append(f"the arguments of the {name} in the chain")
        elif any(secret in text for text in _texts(vars(current))):
            field_names = [k for k, v in vars(current).items() if any(secret in t for t in _texts(v))]
            found.append(f"the fields {field_names} of the {name} in the chain")
        current = current.__cause__ or current.__context__
    if not found and secret in "".join(traceback.format_exception(error)):
        found.append("the formatted traceback")
    return found


def last_event(replies: Sequence[EmulatedResponse]) -> Any:
    """The JSON of the last server-sent event of the last streamed reply (an error
    frame, when one ended the stream), or None."""
    streamed = [r for r in replies if r.chunks is not None]
    if not streamed:
        return None
    events = b"".join(streamed[-1].chunks or ()).replace(b"\r\n", b"\n").split(b"\n\n")
    for event in reversed(events):
        data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if data and data != [b"[DONE]"]:
            try:
                return json.loads(b"\n".join(data))
            except (ValueError, RecursionError):
                return None
    return None
