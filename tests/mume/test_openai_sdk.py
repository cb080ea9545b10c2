"""The proof: the official OpenAI SDK, pointed at the emulator over real loopback HTTP,
raises the exception class that matches the kind turnout gives the same response.

Mume's docs tell users to call it with the OpenAI SDK, so the SDK's reading of a
response is the reference turnout's normalizer must agree with.
"""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout import ErrorKind
from turnout.emulation import Fault, FaultScript
from turnout.testing.server import EmulatorServer
from turnout_mume.emulator import DOCUMENTED_STATUSES
from turnout_mume.provider import MUME_CODES

from .helpers import FAST, HI, KEY, MODEL, MUME, drain

openai = pytest.importorskip("openai")

K = ErrorKind

# The OpenAI SDK class for each kind turnout gives a status response. The SDK
# maps statuses (400, 401, 403, 404, 409, 422, 429, >= 500) to subclasses and
# anything else to APIStatusError itself: Mume's 402 has no class of its own,
# and a 503 is an InternalServerError there.
SDK_CLASS = {
    K.BAD_REQUEST: openai.BadRequestError,
    K.CONTEXT_LENGTH_EXCEEDED: openai.BadRequestError,
    K.CONTENT_FILTERED: openai.BadRequestError,
    K.AUTHENTICATION: openai.AuthenticationError,
    K.INSUFFICIENT_CREDITS: openai.APIStatusError,
    K.PERMISSION_DENIED: openai.PermissionDeniedError,
    K.NOT_FOUND: openai.NotFoundError,
    K.MODEL_NOT_FOUND: openai.NotFoundError,
    K.RATE_LIMITED: openai.RateLimitError,
    K.SERVER_ERROR: openai.InternalServerError,
    K.UNAVAILABLE: openai.InternalServerError,
}

# The other way round: the turnout classes each SDK class may correspond to (the
# SDK folds every 5xx into InternalServerError, and has no class for 402).
TURNOUT_CLASSES = {
    openai.BadRequestError: (turnout.BadRequestError,),
    openai.AuthenticationError: (turnout.AuthenticationError,),
    openai.PermissionDeniedError: (turnout.PermissionDeniedError,),
    openai.NotFoundError: (turnout.NotFoundError,),
    openai.RateLimitError: (turnout.RateLimitError,),
    openai.InternalServerError: (turnout.InternalServerError, turnout.ServiceUnavailableError),
    openai.APIStatusError: (turnout.InsufficientCreditsError,),
}


def client(server: EmulatorServer, max_retries: int = 0) -> Any:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=max_retries)


def sdk_error(server: EmulatorServer, name: str) -> Any:
    server.fault = Fault(error=name, retry_after=1)
    with client(server) as sdk, pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=MODEL, messages=HI)
    return info.value


def turnout_error(sdk: Any) -> turnout.ProviderError:
    """turnout's reading of the very response the SDK raised for."""
    response = sdk.response
    return MUME.normalize(status=response.status_code, headers=dict(response.headers), body=response.content)


@pytest.mark.parametrize("name", DOCUMENTED_STATUSES)
def test_every_documented_status(mume_server: EmulatorServer, name: str) -> None:
    sdk = sdk_error(mume_server, name)
    ours = turnout_error(sdk)
    assert sdk.status_code == ours.status == int(name)
    assert type(sdk) is SDK_CLASS[ours.kind]
    assert ours.message == sdk.body["message"]
    assert ours.request_id == sdk.request_id
    assert ours.retry_after == 1.0
    assert isinstance(ours, TURNOUT_CLASSES[type(sdk)])


@pytest.mark.parametrize("code", sorted(set(MUME_CODES) - {"insufficient_quota"}))
def test_every_code(mume_server: EmulatorServer, code: str) -> None:
    sdk = sdk_error(mume_server, code)
    ours = turnout_error(sdk)
    assert ours.kind is MUME_CODES[code].kind
    assert type(sdk) is SDK_CLASS[ours.kind]
    assert isinstance(ours, TURNOUT_CLASSES[type(sdk)])
    assert sdk.code == ours.code == code
    assert sdk.type == ours.extra["type"]
    assert sdk.param == ours.extra.get("param")


def test_insufficient_quota_is_where_turnout_is_deliberately_more_precise(
    mume_server: EmulatorServer,
) -> None:
    """OpenAI's own SDK calls an exhausted account a rate limit (it rides on a 429),
    and would retry it; turnout calls it insufficient_credits and does not."""
    sdk = sdk_error(mume_server, "insufficient_quota")
    ours = turnout_error(sdk)
    assert type(sdk) is openai.RateLimitError
    assert sdk.code == "insufficient_quota"
    assert isinstance(ours, turnout.InsufficientCreditsError)
    assert ours.retryable is False


def test_the_sdk_reads_a_completion(mume_server: EmulatorServer) -> None:
    with client(mume_server) as sdk:
        completion = sdk.chat.completions.create(model=MODEL, messages=HI)
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.model == MODEL
    assert mume_server.requests[0].path == "/api/v1/chat/completions"
    assert mume_server.requests[0].bearer() == KEY


def test_the_sdk_reads_a_stream(mume_server: EmulatorServer) -> None:
    with (
        client(mume_server) as sdk,
        sdk.chat.completions.create(model=MODEL, messages=HI, stream=True) as stream,
    ):
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: hello there"


@pytest.mark.parametrize("name", ["rate_limit_exceeded", "503", "context_length_exceeded"])
def test_a_mid_stream_error_chunk_reads_the_same_in_both(
    mume_server: EmulatorServer, plugins: turnout.Plugins, name: str
) -> None:
    mume_server.fault = Fault(stream_error=name, stream_error_after=2)
    sdk_text: list[str] = []
    with (
        client(mume_server) as sdk,
        sdk.chat.completions.create(model=MODEL, messages=HI, stream=True) as stream,
        pytest.raises(openai.APIError) as sdk_info,
    ):
        sdk_text.extend(chunk.choices[0].delta.content or "" for chunk in stream)

    deployment = turnout.Deployment(
        "mume", "mume", MODEL, api_key=KEY, base_url=mume_server.base_url, retry_policy=FAST
    )
    ours_text: list[str] = []
    with (
        turnout.Router([deployment], plugins=plugins) as router,
        router.stream(HI) as ours_stream,
        pytest.raises(turnout.ProviderError) as ours_info,
    ):
        drain(ours_stream, ours_text)
    ours = ours_info.value
    assert "".join(sdk_text) == "".join(ours_text) == ours.partial_text == "echo: hello "
    assert ours.message == sdk_info.value.message
    assert ours.code == str(sdk_info.value.body["code"])
    assert ours.request_id is not None
    assert ours.request_id.startswith("req_mume_")


# -- retries: the SDK's and turnout's Mume policy, side by side -----------------


def sdk_requests(server: EmulatorServer, name: str) -> int:
    """How many requests the SDK (its default 2 retries) sends for a repeated error."""
    server.requests.clear()
    server.fault = Fault(error=name, retry_after=0.001)  # the SDK honours it: no real wait
    with client(server, max_retries=2) as sdk, pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(model=MODEL, messages=HI)
    return len(server.requests)


def turnout_attempts(server: EmulatorServer, plugins: turnout.Plugins, name: str) -> int:
    server.fault = Fault(error=name, retry_after=0.001)
    deployment = turnout.Deployment(
        "mume", "mume", MODEL, api_key=KEY, base_url=server.base_url, retry_policy=FAST
    )
    with (
        turnout.Router([deployment], plugins=plugins) as router,
        pytest.raises(turnout.ProviderError) as info,
    ):
        router.chat(HI)
    return len(info.value.attempts)


@pytest.mark.parametrize("name", [*DOCUMENTED_STATUSES, "408", "422", "502", "504", "invalid_api_key"])
def test_same_number_of_tries_as_the_sdk(
    mume_server: EmulatorServer, plugins: turnout.Plugins, name: str
) -> None:
    assert sdk_requests(mume_server, name) == turnout_attempts(mume_server, plugins, name)


@pytest.mark.parametrize(("name", "sdk", "ours"), [("409", 3, 1), ("insufficient_quota", 3, 1)])
def test_where_the_tries_differ_on_purpose(
    mume_server: EmulatorServer, plugins: turnout.Plugins, name: str, sdk: int, ours: int
) -> None:
    """409 is bad_request in turnout's taxonomy and an exhausted account stays
    exhausted: neither is repeated (see docs/providers/mume.md)."""
    assert sdk_requests(mume_server, name) == sdk
    assert turnout_attempts(mume_server, plugins, name) == ours


def test_the_sdk_and_turnout_both_recover_from_one_503(
    mume_server: EmulatorServer, plugins: turnout.Plugins
) -> None:
    mume_server.fault = FaultScript(Fault(error="503", retry_after=0.001))
    with client(mume_server, max_retries=2) as sdk:
        completion = sdk.chat.completions.create(model=MODEL, messages=HI)
    assert completion.choices[0].message.content == "echo: hello there"
    mume_server.fault = FaultScript(Fault(error="503", retry_after=0.001))
    deployment = turnout.Deployment(
        "mume", "mume", MODEL, api_key=KEY, base_url=mume_server.base_url, retry_policy=FAST
    )
    with turnout.Router([deployment], plugins=plugins) as router:
        response = router.chat(HI)
    assert response.content == "echo: hello there"
    assert [a.error.kind.value if a.error else None for a in response.attempts] == ["unavailable", None]
