"""turnout.Router and turnout.AsyncRouter over real loopback HTTP, against every
provider's emulator, with faults injected by the fake-gateway server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .conftest import PROVIDERS, deployment

HI = [{"role": "user", "content": "hi"}]
WORDS = [{"role": "user", "content": "one two three four"}]
STREAMING = ("meshapi", "mume", "litellm", "mythicdot")  # modelroute streams one whole chunk
# SaaS-LiteLLM sends no 429 of its own: an upstream's comes wrapped in a 500 the server
# has retried already, and is not repeated (tests/litellm/test_wrapped_failures.py).
RETRIED_429 = tuple(p for p in PROVIDERS if p != "litellm")


def kinds(attempts: tuple[turnout.Attempt, ...]) -> list[str]:
    return [a.error.kind.value if a.error is not None else "ok" for a in attempts]


def consume(router: turnout.Router, received: list[str]) -> None:
    with router.stream(WORDS) as stream:
        received.extend(chunk.delta for chunk in stream)


async def aconsume(router: turnout.AsyncRouter, received: list[str]) -> None:
    async with router.stream(WORDS) as stream:
        async for chunk in stream:
            received.append(chunk.delta)


# -- 429, then success -----------------------------------------------------------


@pytest.mark.parametrize("provider", RETRIED_429)
def test_a_scripted_429_is_waited_out_then_retried(fake: FakeGateways, provider: str) -> None:
    fake.script(provider, Fault(error="rate_limited", retry_after=0.1))
    with turnout.Router([deployment(fake, provider)]) as router:
        response = router.chat(HI)
    assert response.content == "echo: hi"
    assert response.provider == provider
    assert kinds(response.attempts) == ["rate_limited", "ok"]
    assert response.attempts[0].error is not None
    assert response.attempts[0].error.retry_after is not None
    assert response.attempts[1].waited >= 0.1
    assert fake.pending(provider) == 0
    assert fake.requests(provider) >= 2


@pytest.mark.parametrize("provider", RETRIED_429)
async def test_a_scripted_429_is_waited_out_then_retried_async(fake: FakeGateways, provider: str) -> None:
    fake.script(provider, {"error": "rate_limited", "retry_after": 0.1})
    async with turnout.AsyncRouter([deployment(fake, provider)]) as router:
        response = await router.chat(HI)
    assert response.content == "echo: hi"
    assert kinds(response.attempts) == ["rate_limited", "ok"]
    assert response.attempts[1].waited >= 0.1


# -- streams ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", STREAMING)
def test_streams_arrive_chunk_by_chunk(fake: FakeGateways, provider: str) -> None:
    with turnout.Router([deployment(fake, provider)]) as router, router.stream(WORDS) as stream:
        deltas = [chunk.delta for chunk in stream if chunk.delta]
    assert "".join(deltas) == "echo: one two three four"
    assert len(deltas) >= 5
    assert stream.response is not None
    assert stream.response.provider == provider


@pytest.mark.parametrize("provider", STREAMING)
def test_a_stream_dropped_mid_body_raises_with_partial_text(fake: FakeGateways, provider: str) -> None:
    fake.script(provider, Fault(drop_after=2))
    received: list[str] = []
    backup = deployment(fake, "mythicdot", "backup")
    with (
        turnout.Router([deployment(fake, provider), backup]) as router,
        pytest.raises(turnout.StreamInterruptedError) as caught,
    ):
        consume(router, received)
    error = caught.value
    assert error.partial_text == "echo: one "
    assert "".join(received) == error.partial_text
    # Text reached the caller: no fallback, although a backup was there.
    assert kinds(error.attempts) == ["stream_interrupted"]
    assert fake.requests("mythicdot") == 0 or provider == "mythicdot"


@pytest.mark.parametrize("provider", ["meshapi", "mume"])
async def test_a_stream_dropped_mid_body_raises_with_partial_text_async(
    fake: FakeGateways, provider: str
) -> None:
    fake.script(provider, Fault(drop_after=3))
    received: list[str] = []
    async with turnout.AsyncRouter([deployment(fake, provider)]) as router:
        with pytest.raises(turnout.StreamInterruptedError) as caught:
            await aconsume(router, received)
    assert caught.value.partial_text == "echo: one two "
    assert "".join(received) == caught.value.partial_text


def test_a_stream_dropped_before_its_first_chunk_falls_back(fake: FakeGateways) -> None:
    fake.script("mythicdot", Fault(drop_after=0))
    deployments = [deployment(fake, "mythicdot"), deployment(fake, "meshapi")]
    with turnout.Router(deployments) as router, router.stream(WORDS) as stream:
        text = "".join(chunk.delta for chunk in stream)
    assert text == "echo: one two three four"
    assert kinds(stream.attempts) == ["stream_interrupted", "ok"]
    assert stream.deployment == "meshapi"


def test_an_error_frame_mid_stream_is_its_own_kind_with_partial_text(fake: FakeGateways) -> None:
    fake.script("meshapi", Fault(stream_error="rate_limited", stream_error_after=2))
    with (
        turnout.Router([deployment(fake, "meshapi")]) as router,
        pytest.raises(turnout.RateLimitError) as caught,
    ):
        consume(router, [])
    assert caught.value.partial_text == "echo: one "


# -- HTML pages, malformed bodies, slow bytes ------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_html_502_page_falls_back(fake: FakeGateways, provider: str) -> None:
    backup = "mume" if provider != "mume" else "meshapi"
    fake.script(provider, Fault(html=502))
    primary = deployment(fake, provider, retry_policy=turnout.RetryOverrides(max_retries=0))
    with turnout.Router([primary, deployment(fake, backup)]) as router:
        response = router.chat(HI)
    assert response.content == "echo: hi"
    assert response.deployment == backup
    assert kinds(response.attempts) == ["upstream_error", "ok"]
    first = response.attempts[0].error
    assert first is not None
    assert first.status == 502


async def test_an_html_502_page_falls_back_async(fake: FakeGateways) -> None:
    fake.script("litellm", Fault(html=502))
    primary = deployment(fake, "litellm", retry_policy=turnout.RetryOverrides(max_retries=0))
    async with turnout.AsyncRouter([primary, deployment(fake, "modelroute")]) as router:
        response = await router.chat(HI)
    assert response.deployment == "modelroute"
    assert kinds(response.attempts) == ["upstream_error", "ok"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_malformed_body_is_a_parse_error_and_falls_back(fake: FakeGateways, provider: str) -> None:
    backup = "mythicdot" if provider != "mythicdot" else "meshapi"
    fake.script(provider, Fault(malformed=True))
    primary = deployment(fake, provider, retry_policy=turnout.RetryOverrides(max_retries=0))
    with turnout.Router([primary, deployment(fake, backup)]) as router:
        response = router.chat(HI)
    assert kinds(response.attempts) == ["parse_error", "ok"]
    assert response.deployment == backup


def test_a_slow_first_byte_times_out_and_falls_back(fake: FakeGateways) -> None:
    fake.script("mume", Fault(first_byte_delay=3.0))
    primary = deployment(fake, "mume", retry_policy=turnout.RetryOverrides(max_retries=0))
    with turnout.Router([primary, deployment(fake, "mythicdot")], timeout=0.3) as router:
        response = router.chat(HI)
    assert kinds(response.attempts) == ["timeout", "ok"]
    assert response.deployment == "mythicdot"


# -- error rates -----------------------------------------------------------------

NOISY = {
    "errors": {"rate_limited": 0.15, "unavailable": 0.1, "server_error": 0.05},
    "html": {"502": 0.05},
    "malformed": 0.05,
    "stream_errors": {"server_error": 0.1},
    "drops": 0.1,
    "drop_after": 2,
    "retry_after": [0.01, 0.02],
}


def _outcome(result: Any) -> str:
    if isinstance(result, turnout.ChatResponse):
        assert result.provider in PROVIDERS
        return "ok"
    if isinstance(result, turnout.ProviderError):
        assert isinstance(result.kind, turnout.ErrorKind)
        assert result.attempts, "a raised error carries the attempts"
        return result.kind.value
    assert isinstance(result, turnout.NoHealthyDeploymentError), repr(result)
    return "no_healthy_deployment"


def test_seeded_error_rates_end_every_call_in_a_response_or_a_normalized_error(fake: FakeGateways) -> None:
    for provider in PROVIDERS:
        fake.set_faults(provider, NOISY)
    deployments = [deployment(fake, p) for p in PROVIDERS]
    outcomes: list[str] = []
    with turnout.Router(deployments, deadline=10.0) as router:
        for number in range(30):
            try:
                if number % 3 == 2:
                    with router.stream(WORDS) as stream:
                        text = "".join(chunk.delta for chunk in stream)
                    assert text == "echo: one two three four"
                    outcomes.append(_outcome(stream.response))
                else:
                    outcomes.append(_outcome(router.chat(HI)))
            except (turnout.ProviderError, turnout.NoHealthyDeploymentError) as error:
                outcomes.append(_outcome(error))
    assert len(outcomes) == 30
    assert "ok" in outcomes
    counts = fake.counts()
    assert sum(counts.values()) >= 30
    faulted = [s for s in fake.log() if s.fault]
    assert faulted, "the profile injected faults"


async def test_seeded_error_rates_async_concurrent_calls(fake: FakeGateways) -> None:
    for provider in PROVIDERS:
        fake.set_faults(provider, NOISY)
    deployments = [deployment(fake, p) for p in PROVIDERS]
    async with turnout.AsyncRouter(deployments, deadline=10.0) as router:

        async def one(number: int) -> str:
            try:
                if number % 2:
                    async with router.stream(WORDS) as stream:
                        async for _ in stream:
                            pass
                    return _outcome(stream.response)
                return _outcome(await router.chat(HI))
            except (turnout.ProviderError, turnout.NoHealthyDeploymentError) as error:
                return _outcome(error)

        outcomes = await asyncio.gather(*(one(n) for n in range(24)))
    assert len(outcomes) == 24
    assert "ok" in outcomes
