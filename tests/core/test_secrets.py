"""Keys stay secret: each goes only to its own deployment's gateway, and never shows in a
repr, a str, an error, an attempt, an exception chain or a log line. Whole calls run with
both routers (the `calls` fixture)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

import turnout
from turnout.emulation import Fault, FaultScript

from .acme import Acme
from .calls import HI, NO_RETRY, Calls, emulated, per_host
from .conftest import deployment

KEY = "sk-acme-a-0123456789"
OTHER = "sk-acme-b-0123456789"


def test_secret_repr_and_str_hide_the_key():
    secret = turnout.Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert secret.reveal() == KEY


def test_deployment_repr_hides_the_key():
    dep = deployment("a")
    assert KEY not in repr(dep)
    assert KEY not in str(dep)
    assert KEY not in repr(dep.api_key)
    assert dep.key() == KEY  # but it is there to be sent


def test_request_repr_hides_headers():
    request = turnout.HTTPRequest.json(
        "POST", "https://a.test", {}, headers={"authorization": f"Bearer {KEY}"}
    )
    assert KEY not in repr(request)


@pytest.mark.parametrize("stream", [False, True])
def test_the_request_a_provider_builds_hides_the_key_but_sends_it(stream):
    request = Acme().request(deployment("a"), turnout.ChatRequest(HI), stream=stream)
    assert KEY not in repr(request)
    assert KEY not in str(request)
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_each_key_goes_only_to_its_own_base_url(calls: Calls):
    script = FaultScript(Fault(error="overloaded"))
    response = await calls.chat([deployment("a"), deployment("b")], emulated(script), retry_policy=NO_RETRY)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "b"
    sent = [(r.host, r.headers.get("authorization")) for r in script.requests]
    assert sent == [("a.test", f"Bearer {KEY}"), ("b.test", f"Bearer {OTHER}")]


def shown(error: BaseException, calls: Calls) -> list[str]:
    """Everything a caller, a log or a traceback could show of a failed call."""
    texts = [str(error), repr(error), str(error.args), repr(error.__dict__)]
    cause: BaseException | None = error
    while cause is not None:  # the whole exception chain
        texts += [repr(cause), str(cause)]
        cause = cause.__cause__ or cause.__context__
    attempts = getattr(error, "attempts", ())
    texts += [repr(attempts), str(attempts)]
    texts += [repr(a) + str(a) + repr(a.error) + str(a.error) for a in attempts]
    assert calls.router is not None
    texts += [repr(calls.router.deployments)]
    texts += [repr(d) + str(d) for d in calls.router.deployments.values()]
    return texts


async def test_no_key_shows_when_every_deployment_fails(calls: Calls):
    script = per_host({"a": [Fault(error="invalid_key")], "b": [Fault(error="oops")]})
    error = await calls.chat([deployment("a"), deployment("b")], emulated(script), retry_policy=NO_RETRY)
    assert isinstance(error, turnout.InternalServerError)
    assert [a.error.kind for a in error.attempts if a.error] == ["authentication", "server_error"]
    assert error.attempts[0].error is not None
    assert error.attempts[0].error.status == 401
    assert [r.headers["authorization"] for r in script.requests] == [f"Bearer {KEY}", f"Bearer {OTHER}"]
    for text in shown(error, calls):
        assert KEY not in text
        assert OTHER not in text


def echoing(status: int, body: Any) -> httpx.MockTransport:
    """A gateway that quotes the key it received back in its answer, as some do."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        text = json.dumps(body).replace("{key}", sent).replace("{auth}", f"Bearer {sent}")
        return httpx.Response(
            status, headers={"content-type": "application/json", "x-request-id": "r1"}, content=text
        )

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("status", "body", "cls", "masked"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key provided: {key}", "code": "invalid_key", "param": None}},
            turnout.AuthenticationError,
            "Incorrect API key provided: ***",
        ),
        (
            401,
            {"error": {"code": "invalid_key", "message": "Invalid API key: {key}"}},
            turnout.AuthenticationError,
            "Invalid API key",
        ),
        (
            401,
            {"detail": "Invalid API key: {auth}"},
            turnout.AuthenticationError,
            "Invalid API key: Bearer ***",
        ),
        # An error reported inside a 200 (an execution that failed, an in-band envelope).
        (
            200,
            {"error": {"code": "invalid_field", "message": "key {key} is not allowed here"}},
            turnout.ValidationError,
            "key ",
        ),
    ],
    ids=["openai", "code-first", "detail", "in-band"],
)
async def test_a_key_echoed_by_the_gateway_is_masked_everywhere(calls: Calls, status, body, cls, masked):
    error = await calls.chat([deployment("a")], echoing(status, body), retry_policy=NO_RETRY)
    assert type(error) is cls
    assert masked in error.message  # what the gateway said is kept, the key masked
    for text in [error.message, *shown(error, calls)]:
        assert KEY not in text


async def test_a_whole_failing_run_logs_and_reports_no_key(calls: Calls, caplog):
    caplog.set_level(logging.DEBUG)
    transport = emulated(FaultScript(*[Fault(error="invalid_key")] * 2))
    error = await calls.chat([deployment("a"), deployment("b")], transport)
    assert isinstance(error, turnout.AuthenticationError)
    everything = caplog.text + "".join(shown(error, calls))
    assert "sk-acme-a" not in everything
    assert "sk-acme-b" not in everything
    assert len(error.attempts) == 2


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
