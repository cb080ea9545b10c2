"""`ProviderConformance`: the checks every provider must pass, as a pytest test class.

    from turnout.testing import ProviderConformance

    class TestAcme(ProviderConformance):
        provider = Acme()
        emulator = AcmeEmulator()        # optional: else the installed one for its name

Each check is one test that runs a lean table of cases and reports every case
that failed at once (a provider's bug usually shows in several). The checks that
need the gateway's own wire format use the emulator, over a real loopback HTTP
server, through `turnout.Router` (and `turnout.AsyncRouter` once): what users get.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

import turnout
import turnout.testing.hostile as hostile
import turnout.testing.surface as surface
from turnout import ErrorKind, Provider, ProviderError
from turnout.emulation import EmulatedResponse, Emulator, Fault

from .kit import DEADLINE, Kit, Outcome, documented_kind, error_problems, last_event, leaks, status_kind

__all__ = ["ProviderConformance"]


def _report(title: str, problems: Sequence[str], limit: int = 25) -> str:
    shown = "\n".join(f"  - {p}" for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{title}: {len(problems)} case(s) failed\n{shown}{more}"


def _check(title: str, problems: Sequence[str]) -> None:
    if problems:
        pytest.fail(_report(title, problems), pytrace=False)


def _lower(headers: Sequence[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k.lower(): v for k, v in items}


@pytest.mark.usefixtures("turnout_kit")
class ProviderConformance:
    """Subclass it with `provider = MyProvider()` (and optionally `emulator =
    MyEmulator()`); pytest collects the subclass (name it `Test...`).

    Settings, all optional: `model`, `api_key` and `options` (the deployment the
    kit makes; default: the emulator's `demo_deployment()`, else "model", a made-up
    key and no options) and `clean_close_ends_stream` (whether the gateway may end
    a stream by closing it without its end marker; default: the provider's own
    attribute of that name, else False).
    """

    provider: ClassVar[Provider]
    emulator: ClassVar[Emulator | None] = None
    model: ClassVar[str | None] = None
    api_key: ClassVar[str | None] = None
    options: ClassVar[Mapping[str, Any] | None] = None
    clean_close_ends_stream: ClassVar[bool | None] = None

    kit: Kit

    # -- what the kit makes of the settings ----------------------------------------

    @classmethod
    def make_kit(cls) -> Kit:
        emulator = cls.emulator
        if emulator is None:
            emulator = turnout.Plugins().emulators().get(cls.provider.name)
        demo = emulator.demo_deployment() if emulator is not None else None
        return Kit(
            cls.provider,
            emulator,
            model=cls.model or (demo.model if demo else "model"),
            api_key=cls.api_key or (demo.api_key if demo else "kit-key-0123456789abcdef"),
            options=cls.options if cls.options is not None else (demo.options if demo else {}),
        )

    def needs_emulator(self) -> Emulator:
        if self.kit.emulator is None:
            pytest.skip(f"no emulator for {self.provider.name!r}: set `emulator = ...` to run this check")
        return self.kit.emulator

    def ends_on_close(self) -> bool:
        if self.clean_close_ends_stream is not None:
            return self.clean_close_ends_stream
        return bool(getattr(self.provider, "clean_close_ends_stream", False))

    # -- errors, sans-IO -----------------------------------------------------------

    def test_every_status_with_hostile_bodies_and_headers(self) -> None:
        """`normalize` turns any status, body and headers into a well-formed error of the
        right class, and never raises; a body that says nothing leaves the status to decide."""
        problems = []
        name = self.provider.name
        for status in hostile.STATUSES:
            for body_name, (body, content_type) in hostile.BODIES.items():
                for headers_name, headers in hostile.HEADER_SETS.items():
                    case = f"{status} {body_name} {headers_name}"
                    all_headers = {"content-type": content_type, **headers}
                    try:
                        error = self.provider.normalize(status=status, headers=all_headers, body=body)
                    except Exception as exc:
                        problems.append(f"{case}: normalize raised {type(exc).__name__}: {exc}")
                        continue
                    found = error_problems(error, provider=name, status=status, check_status=True)
                    problems += [f"{case}: the error {p}" for p in found]
                    expected = status_kind(self.provider, status)
                    if not found and body_name in hostile.contentless and error.kind is not expected:
                        problems.append(f"{case}: is {error.kind}, but the status alone says {expected}")
        _check("hostile responses, normalized", problems)

    def test_retry_after_in_all_its_forms(self) -> None:
        """Every form of Retry-After (seconds, dates, milliseconds, rate-limit resets,
        nonsense) gives the wait it means, in seconds, on a 429 and a 503."""
        problems = []
        for status in (429, 503):
            for form in hostile.RETRY_AFTER_FORMS:
                headers = form.headers(time.time())
                error = self.provider.normalize(status=status, headers=headers, body=b"")
                got = error.retry_after
                if form.expected is None:
                    ok = got is None
                else:
                    ok = got is not None and abs(got - form.expected) <= form.tolerance + 1e-9
                if not ok:
                    problems.append(f"{status} {form.name} {headers}: {got!r} s, not {form.expected!r}")
        _check("Retry-After", problems)

    # -- errors, over HTTP ---------------------------------------------------------

    def test_hostile_responses_through_a_router(self) -> None:
        """Over real HTTP, each hostile body (at a few statuses) and each status (with an
        HTML page) ends the call with a normalized error, within the deadline."""
        cases = [(s, b) for s in hostile.OVER_HTTP_STATUSES for b in hostile.BODIES]
        cases += [(s, "html") for s in hostile.STATUSES if s not in hostile.OVER_HTTP_STATUSES]
        problems = []
        for status, body_name in cases:
            body, content_type = hostile.BODIES[body_name]
            self.kit.serve(hostile.reply(status, body, content_type))
            outcome = self.kit.call(surface.HELLO)
            found = self._failed_as_expected(outcome, status, body_name)
            problems += [f"{status} {body_name}: {p}" for p in found]
        _check("hostile responses through a router", problems)

    def _read(self, rendered: EmulatedResponse, status: int | None) -> ProviderError:
        """What the provider's normalizer makes of a response, sans-IO."""
        return self.provider.normalize(status=status, headers=_lower(rendered.headers), body=rendered.body)

    def _failed_as_expected(self, outcome: Outcome, status: int, body_name: str) -> list[str]:
        error = outcome.error
        if error is None:
            return ["the call succeeded"]
        if not isinstance(error, ProviderError):
            return [f"raised {type(error).__name__}: {error}"]
        problems = [f"the error {p}" for p in error_problems(error, provider=self.provider.name)]
        if error.deployment != "kit":
            problems.append(f"the error names deployment {error.deployment!r}")
        if outcome.elapsed > DEADLINE:
            problems.append(f"took {outcome.elapsed:.1f} s, past the {DEADLINE:g} s deadline")
        answer = 200 <= status < 300
        if body_name in (hostile.unreadable_answers if answer else hostile.contentless):
            expected = ErrorKind.PARSE_ERROR if answer else status_kind(self.provider, status)
            if error.kind is not expected:
                problems.append(f"is {error.kind}, not {expected}")
        return problems

    def test_documented_errors_round_trip(self) -> None:
        """Every error the emulator renders, sent over HTTP, is raised as its documented
        kind (its code's, its kind's or its status's)."""
        emulator = self.needs_emulator()
        problems = []
        for name in emulator.error_names():
            rendered = emulator.render_error(name)
            self.kit.serve(rendered)
            outcome = self.kit.call(surface.HELLO)
            expected = documented_kind(self.provider, name)
            if expected is None:  # a scenario name: the normalizer's own reading of it
                expected = self._read(rendered, rendered.status).kind
            if outcome.kind() != expected.value:
                problems.append(f"{name} (HTTP {rendered.status}): {outcome.kind()}, not {expected}")
        _check("documented errors", problems)

    def test_error_envelopes_under_200(self) -> None:
        """A 2xx whose body is the gateway's error envelope is raised as that error, never
        returned as an answer, and not as parse_error when it names a documented code."""
        emulator = self.needs_emulator()
        problems = []
        for name in emulator.error_names():
            rendered = emulator.render_error(name)
            if not rendered.body.lstrip().startswith((b"{", b"[")):
                continue  # an HTML page is not an envelope
            self.kit.serve(hostile.with_status(rendered, 200))
            outcome = self.kit.call(surface.HELLO)
            if not isinstance(outcome.error, ProviderError):
                problems.append(f"{name} under a 200: {outcome.kind()}")
                continue
            inband = self._read(rendered, None)
            documented = self.provider.error_table.rule(inband.code) is not None
            if documented and outcome.error.kind is not inband.kind:
                got = outcome.error.kind
                problems.append(f"{name} under a 200: {got}, not {inband.kind} (code {inband.code})")
        _check("error envelopes under a 200", problems)

    # -- streams ---------------------------------------------------------------------

    def streams_over_sse(self) -> None:
        """Skip unless the provider streams server-sent events (some answer a stream
        request with one whole answer)."""
        self.needs_emulator()
        self.kit.serve()
        outcome = self.kit.call(surface.HELLO, stream=True)
        if outcome.error is not None:
            pytest.fail(f"a plain stream failed: {outcome.kind()}", pytrace=False)
        if not any(r.headers.get("accept") == "text/event-stream" for r in self.kit.requests()):
            pytest.skip(f"{self.provider.name!r} does not stream over server-sent events")

    def test_broken_streams(self) -> None:
        """A stream cut before or after its first chunk, one with an event that is not
        JSON, and one closed without its end marker, each end as they must, with the
        text the caller already received in `partial_text`."""
        self.streams_over_sse()
        problems = []
        for rewrite in hostile.STREAM_REWRITES:
            expect = "end" if rewrite.closes_cleanly and self.ends_on_close() else rewrite.expect
            self.kit.serve(rewrite=rewrite.change)
            outcome = self.kit.call(surface.HELLO, stream=True)
            got = "end" if outcome.error is None else outcome.kind()
            if got != expect:
                problems.append(f"{rewrite.name}: {got}, not {expect}")
            elif isinstance(outcome.error, ProviderError) and outcome.error.partial_text != outcome.text:
                problems.append(
                    f"{rewrite.name}: partial_text {outcome.error.partial_text!r}, "
                    f"but the caller received {outcome.text!r}"
                )
        _check("broken streams", problems)

    def test_error_frames(self) -> None:
        """An error frame after the first chunk is raised as the error the provider reads
        in it (never parse_error or stream_interrupted, unless that is what it says),
        with the text the caller already received."""
        self.streams_over_sse()
        emulator = self.needs_emulator()
        problems = []
        for name in emulator.error_names():
            self.kit.serve(fault=Fault(stream_error=name, stream_error_after=1))
            outcome = self.kit.call(surface.HELLO, stream=True)
            if self.kit.server.failures:
                continue  # the emulator cannot send this one as a frame
            error = outcome.error
            if not isinstance(error, ProviderError):
                problems.append(f"{name}: {outcome.kind()}")
                continue
            frame = last_event(self.kit.server.replies)
            headers = _lower(next((r.headers for r in self.kit.server.replies if r.chunks is not None), ()))
            if frame is not None:
                expected = self.provider.normalize(status=None, headers=headers, body=frame).kind
                if error.kind is not expected:
                    problems.append(f"{name}: {error.kind}, but the frame says {expected}")
            elif error.kind in (ErrorKind.PARSE_ERROR, ErrorKind.STREAM_INTERRUPTED):
                problems.append(f"{name}: {error.kind}, not the frame's own kind")
            if error.partial_text != outcome.text:
                problems.append(f"{name}: partial_text {error.partial_text!r}, received {outcome.text!r}")
        _check("error frames", problems)

    # -- keys ------------------------------------------------------------------------

    def test_key_hygiene(self, caplog: pytest.LogCaptureFixture) -> None:
        """The deployment's key, echoed back by the gateway in bodies and headers, is
        in no error field, repr, exception chain, traceback or log record."""
        key = self.kit.api_key
        if len(key) < 6:
            pytest.skip("the deployment's key is too short to be told apart (set `api_key`)")
        problems = []
        caplog.set_level(logging.DEBUG, logger="turnout")
        names = (*self.provider.request_id_headers, "x-request-id", "www-authenticate")
        id_headers = dict.fromkeys(names, key)
        for status in (401, 403, 500):
            for body_name, body in surface.echoing(key).items():
                self.kit.serve(hostile.reply(status, body, "application/json", id_headers))
                outcome = self.kit.call(surface.HELLO)
                if outcome.error is None:
                    problems.append(f"{status} {body_name}: the call succeeded")
                    continue
                found = leaks(outcome.error, key)
                problems += [f"{status} {body_name}: the key is in {where}" for where in found]
        # The connection refused: nothing listens there.
        outcome = self.kit.call(surface.HELLO, deployment={"base_url": "http://127.0.0.1:9/v1"})
        problems += (
            [f"connection refused: the key is in {where}" for where in leaks(outcome.error, key)]
            if (outcome.error is not None)
            else ["connection refused: the call succeeded"]
        )
        for record in caplog.records:
            if not record.name.startswith("turnout"):
                continue  # httpx's own DEBUG records show response headers: yours to enable
            text = record.getMessage() + repr(vars(record))
            if key in text:
                problems.append(f"the key is in a log record of {record.name!r}: {record.msg!r}")
        router = self.kit.router()
        shown = [repr(router), repr(router.deployments), repr(self.provider), str(self.kit.deployment())]
        if any(key in text for text in shown):
            problems.append("the key is in the repr of the router, its deployments or the provider")
        _check("key hygiene", problems)

    # -- the chat surface --------------------------------------------------------------

    def test_chat_and_stream(self) -> None:
        """A chat, a stream and an async chat through the emulator agree; extra headers
        reach the gateway; metadata never does."""
        self.needs_emulator()
        self.kit.serve()
        problems = surface.chat_and_stream(self.kit)
        _check("chat and stream", problems)

    def test_tools(self) -> None:
        """With "tools" in its capabilities: tool calls parsed, a tool loop continued, and
        (with "tool_streaming") streamed calls assembled; without: refused before sending."""
        self.needs_emulator()
        self.kit.serve()
        _check("tools", surface.tools(self.kit))

    def test_content_parts(self) -> None:
        """With "content_parts": text and image parts reach the model as sent; without:
        refused before sending."""
        self.needs_emulator()
        self.kit.serve()
        _check("content parts", surface.content_parts(self.kit))

    def test_response_format(self) -> None:
        """With "response_format": a JSON schema's instance comes back; without: refused
        before sending."""
        self.needs_emulator()
        self.kit.serve()
        _check("response_format", surface.response_format(self.kit))
