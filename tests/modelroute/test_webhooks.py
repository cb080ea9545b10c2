"""Webhook verification and parsing, with callbacks signed by the emulator."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

import turnout
from turnout import ErrorKind
from turnout_modelroute import webhooks
from turnout_modelroute.emulator import ModelRouteEmulator, Outcome
from turnout_modelroute.webhooks import (
    ExecutionEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTimestampError,
    WebhookVerifier,
    construct_event,
    parse_event,
    sign,
    verify,
)

from .conftest import Harness

NOW = 1_710_924_600
SECRET = "whsec_test_secret"


def clock() -> float:
    return float(NOW)


async def finished(harness: Harness, outcome: Outcome) -> tuple[ModelRouteEmulator, str]:
    """An emulator holding one execution that ran to its end through the router."""
    emulator = ModelRouteEmulator(default=outcome, webhook_secret=SECRET, clock=clock)
    with contextlib.suppress(turnout.ProviderError):
        await harness.chat(emulator)
    return emulator, emulator.execution().id


async def test_a_completed_callback_verifies_and_parses(harness: Harness) -> None:
    emulator, execution_id = await finished(harness, Outcome(text="the answer"))
    headers, body = emulator.webhook(execution_id)
    event = construct_event(body, headers, SECRET, clock=clock)
    assert isinstance(event, ExecutionEvent)
    assert event.type == "execution.completed"
    assert event.execution_id == execution_id
    assert event.status == "COMPLETED"
    assert event.output_text == "the answer"
    assert event.error is None
    assert event.created_at == datetime.fromtimestamp(NOW, UTC)
    assert event.id is not None
    assert event.id.startswith("evt_")


async def test_a_failed_callback_carries_the_normalized_error(harness: Harness) -> None:
    outcome = Outcome.failed("CONTENT_MODERATION_REJECTED")
    emulator, execution_id = await finished(harness, outcome)
    headers, body = emulator.webhook(execution_id)
    event = WebhookVerifier(SECRET, clock=clock).construct_event(body, headers)
    assert event.status == "FAILED"
    assert isinstance(event.error, turnout.ContentFilterError)
    assert (event.error.code, event.error.status, event.error.retryable) == (
        "CONTENT_MODERATION_REJECTED",
        400,
        False,
    )
    assert event.output_text is None


def test_expired_and_cancelled_events_carry_their_errors() -> None:
    expired = parse_event({"type": "execution.expired", "data": {"id": "exe_1", "status": "EXPIRED"}})
    assert isinstance(expired.error, turnout.APITimeoutError)
    assert expired.error.code == "EXPIRED"
    cancelled = parse_event({"type": "execution.cancelled", "data": {"id": "exe_1", "status": "CANCELLED"}})
    assert cancelled.error is not None
    assert (cancelled.error.kind, cancelled.error.retryable) == (ErrorKind.UPSTREAM_ERROR, False)


def signed(body: bytes, *, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {"X-Signature": sign(body, secret, timestamp), "X-Signature-Timestamp": str(timestamp)}


BODY = json.dumps(
    {
        "id": "evt_1",
        "type": "execution.completed",
        "created_at": NOW,
        "data": {"id": "exe_1", "status": "COMPLETED", "output": {"text": "hi"}},
    }
).encode()


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == expected
    verify(BODY, {"X-Signature": expected, "X-Signature-Timestamp": str(NOW)}, SECRET, clock=clock)


def test_a_tampered_body_is_refused() -> None:
    headers = signed(BODY)
    tampered = BODY.replace(b'"hi"', b'"ho"')
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(tampered, headers, SECRET, clock=clock)


def test_a_tampered_signature_is_refused() -> None:
    headers = signed(BODY)
    flipped = headers["X-Signature"][:-1] + ("0" if headers["X-Signature"][-1] != "0" else "1")
    with pytest.raises(WebhookSignatureError):
        verify(BODY, {**headers, "X-Signature": flipped}, SECRET, clock=clock)


def test_a_tampered_timestamp_is_refused() -> None:
    headers = signed(BODY)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(BODY, {**headers, "X-Signature-Timestamp": str(NOW + 1)}, SECRET, clock=clock)


def test_the_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookSignatureError):
        verify(BODY, signed(BODY, secret="someone else"), SECRET, clock=clock)


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_stale_or_future_callback_is_refused(age: int) -> None:
    headers = signed(BODY, timestamp=NOW - age)
    with pytest.raises(WebhookTimestampError, match="tolerance"):
        verify(BODY, headers, SECRET, clock=clock)


def test_the_tolerance_is_adjustable() -> None:
    headers = signed(BODY, timestamp=NOW - 299)
    verify(BODY, headers, SECRET, clock=clock)
    with pytest.raises(WebhookTimestampError):
        verify(BODY, headers, SECRET, clock=clock, tolerance=60)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Signature": "abc"},
        {"X-Signature-Timestamp": str(NOW)},
        {"X-Signature": "abc", "X-Signature-Timestamp": "yesterday"},
        {"X-Signature": "", "X-Signature-Timestamp": str(NOW)},
        {"X-Signature": "ünïcode", "X-Signature-Timestamp": str(NOW)},
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(BODY, headers, SECRET, clock=clock)


def test_header_names_are_case_insensitive_and_pairs_work() -> None:
    headers = signed(BODY)
    verify(BODY, {k.lower(): v for k, v in headers.items()}, SECRET, clock=clock)
    verify(BODY, list(headers.items()), SECRET, clock=clock)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    verify(BODY, signed(BODY), SECRET, clock=clock)
    assert len(calls) == 1


def test_a_rotated_secret_list_accepts_either() -> None:
    verifier = WebhookVerifier(["new-secret", SECRET], clock=clock)
    verifier.verify(BODY, signed(BODY))
    verifier.verify(BODY, signed(BODY, secret="new-secret"))
    with pytest.raises(WebhookSignatureError):
        verifier.verify(BODY, signed(BODY, secret="old-secret"))
    assert SECRET not in repr(verifier)


def test_an_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookVerifier("")


def test_the_emulator_signs_with_its_secret_and_the_timestamp_given() -> None:
    emulator = ModelRouteEmulator(webhook_secret=SECRET, clock=clock)
    headers, body = emulator.sign_webhook({"type": "execution.completed", "execution_id": "exe_9"})
    event = construct_event(body, headers, SECRET, clock=clock)
    assert event.execution_id == "exe_9"
    old_headers, _ = emulator.sign_webhook(body, timestamp=NOW - 3600)
    with pytest.raises(WebhookTimestampError):
        verify(body, old_headers, SECRET, clock=clock)


def test_a_bad_signature_is_checked_before_the_body_is_parsed() -> None:
    with pytest.raises(WebhookSignatureError):
        construct_event(b"not json", signed(b"other"), SECRET, clock=clock)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"type": "execution.completed"}',
        b'{"data": {"id": "exe_1"}}',
        b"\xff",
        b"[" * 100_000,
    ],
)
def test_authentic_but_unreadable_events_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        construct_event(body, signed(body), SECRET, clock=clock)


def test_events_are_frozen() -> None:
    event = parse_event(BODY)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.status = "FAILED"  # type: ignore[misc]


def test_an_iso_timestamp_is_parsed() -> None:
    event = parse_event(
        {
            "type": "execution.processing",
            "created_at": "2024-03-20T08:50:00Z",
            "data": {"id": "e", "status": "PROCESSING"},
        }
    )
    assert event.created_at == datetime(2024, 3, 20, 8, 50, tzinfo=UTC)
