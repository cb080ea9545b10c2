"""Hostile answers through either router: whatever the status, headers or body, the caller
gets a normalized error of the right kind with a bounded message, never a crash or an
empty success. (Normalization alone is tested in test_normalize.py.)"""

from __future__ import annotations

import pytest

import turnout
from turnout import ErrorKind
from turnout.emulation import EmulatedRequest, EmulatedResponse, Fault, mock_transport

from .acme import AcmeEmulator
from .calls import FAST, NO_RETRY, Calls, fixed
from .conftest import deployment

K = ErrorKind
FIVE_MB = 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind"),
    [
        pytest.param(200, b"<html><title>Login</title></html>", "text/html", K.PARSE_ERROR, id="html-200"),
        pytest.param(200, b"", "application/json", K.PARSE_ERROR, id="empty-200"),
        pytest.param(200, bytes(range(256)), "application/octet-stream", K.PARSE_ERROR, id="binary-200"),
        pytest.param(200, b'[{"choices": []}]', "application/json", K.PARSE_ERROR, id="list-200"),
        pytest.param(200, b"[]", "application/json", K.PARSE_ERROR, id="empty-list-200"),
        pytest.param(200, b"[" * 100_000, "application/json", K.PARSE_ERROR, id="nested-200"),
        pytest.param(200, b"x" * FIVE_MB, "text/plain", K.PARSE_ERROR, id="5mb-200"),
        pytest.param(
            200,
            b'{"error": {"message": "late", "code": "slow_down"}}',
            "application/json",
            K.RATE_LIMITED,
            id="error-in-a-200",
        ),
        pytest.param(302, b"", "text/plain", K.UPSTREAM_ERROR, id="redirect-302"),
        pytest.param(429, b'["not", "an", "envelope"]', "application/json", K.RATE_LIMITED, id="list-429"),
        pytest.param(401, b"x" * FIVE_MB, "text/plain", K.AUTHENTICATION, id="5mb-401"),
        pytest.param(
            402,
            b'{"error": {"message": "' + b"y" * FIVE_MB + b'"}}',
            "application/json",
            K.INSUFFICIENT_CREDITS,
            id="5mb-json-402",
        ),
        pytest.param(500, b"", "text/plain", K.SERVER_ERROR, id="empty-500"),
        pytest.param(500, b"\x89PNG\r\n\x1a\n\x00\x00binary", "image/png", K.SERVER_ERROR, id="png-500"),
        pytest.param(500, bytes(range(256)) * 4, "application/octet-stream", K.SERVER_ERROR, id="binary-500"),
        pytest.param(500, b'[{"detail": "a list"}]', "application/json", K.SERVER_ERROR, id="list-500"),
        pytest.param(500, b"x" * FIVE_MB, "text/plain", K.SERVER_ERROR, id="5mb-500"),
        pytest.param(
            502, b"<html><title>502 Bad Gateway</title></html>", "text/html", K.UPSTREAM_ERROR, id="html-502"
        ),
        pytest.param(503, b"", "text/plain", K.UNAVAILABLE, id="empty-503"),
    ],
)
async def test_hostile_bodies_are_normalized(
    calls: Calls, status: int, body: bytes, content_type: str, kind: ErrorKind
) -> None:
    error = await calls.chat([deployment("a")], fixed(status, body, content_type), retry_policy=NO_RETRY)
    assert isinstance(error, turnout.ProviderError)
    assert error.kind is kind
    assert type(error) is turnout.KIND_RULES[kind].exception
    assert len(error.message) <= 500


class HugePage(AcmeEmulator):
    """A load balancer's five-megabyte maintenance page in front of acme."""

    def respond(self, request: EmulatedRequest, fault: Fault) -> EmulatedResponse:
        return EmulatedResponse(503, (("content-type", "text/html"),), b"<p>" + b"x" * FIVE_MB)


async def test_a_five_megabyte_error_page_is_retried_and_its_message_cut(calls: Calls) -> None:
    transport = mock_transport({"a.test": HugePage()})
    error = await calls.chat([deployment("a")], transport, retry_policy=FAST)
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert len(error.attempts) == 3
    assert len(error.message) <= 500
