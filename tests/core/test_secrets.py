"""Keys stay secret: never in a repr, a str, an error, an attempt or a log line."""

from __future__ import annotations

import logging

import httpx
import pytest

import turnout
from turnout._flow import HTTPRequest
from turnout.emulation import Fault, mock_transport

from .acme import AcmeEmulator
from .conftest import deployment

KEY = "sk-acme-a-0123456789"


def test_secret_repr_and_str_hide_the_key():
    secret = turnout.Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert secret.reveal() == KEY


def test_deployment_repr_hides_the_key():
    dep = deployment("a")
    assert KEY not in repr(dep)
    assert KEY not in str(dep)
    assert dep.key() == KEY


def test_request_repr_hides_headers():
    request = HTTPRequest.json("POST", "https://a.test", {}, headers={"authorization": f"Bearer {KEY}"})
    assert KEY not in repr(request)


def test_an_error_that_echoes_the_key_is_redacted(plugins):
    def handler(request: httpx.Request) -> httpx.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(
            401, json={"error": {"message": f"Incorrect API key provided: {sent}", "code": "invalid_key"}}
        )

    router = turnout.Router([deployment("a")], plugins=plugins, transport=httpx.MockTransport(handler))
    with router, pytest.raises(turnout.AuthenticationError) as info:
        router.chat([{"role": "user", "content": "x"}])
    error = info.value
    for text in (str(error), repr(error), error.message, repr(error.attempts), str(error.args)):
        assert KEY not in text
    assert "***" in error.message


def test_a_whole_failing_run_logs_and_reports_no_key(plugins, caplog):
    caplog.set_level(logging.DEBUG)
    transport = mock_transport(
        {"a.test": AcmeEmulator(), "b.test": AcmeEmulator()}, Fault(error="invalid_key")
    )
    router = turnout.Router([deployment("a"), deployment("b")], plugins=plugins, transport=transport)
    with router, pytest.raises(turnout.AuthenticationError) as info:
        router.chat([{"role": "user", "content": "x"}])
    everything = (
        caplog.text
        + repr(info.value)
        + str(info.value)
        + repr(info.value.attempts)
        + repr(router.deployments)
    )
    assert "sk-acme-a" not in everything
    assert "sk-acme-b" not in everything
    assert len(info.value.attempts) == 2


def test_attribute_error_names_who_failed_and_masks_the_key():
    error = turnout.error_for(turnout.ErrorKind.AUTHENTICATION, f"bad key {KEY}", provider="")
    same = turnout.attribute_error(error, provider="acme", deployment="a", secret=KEY)
    assert same is error
    assert (error.provider, error.deployment) == ("acme", "a")
    for text in (str(error), repr(error), str(error.args)):
        assert KEY not in text
    # What the error already says is kept; short secrets are not masked (too many false hits).
    turnout.attribute_error(error, provider="other", deployment="b")
    assert (error.provider, error.deployment) == ("acme", "a")
    assert turnout.redact("key abc", "abc") == "key abc"
