"""Retries, waits and fallbacks of whole calls, with both routers, over acme's emulator.

Which statuses and kinds a provider's own default policy repeats is tested as
pure decisions in its folder; here the router applies a policy it is given.
"""

from __future__ import annotations

from typing import Any

import pytest

import turnout
from turnout import OpenAICompatible
from turnout.emulation import EmulatedRequest, Fault, FaultScript, mock_transport

from .acme import AcmeEmulator
from .calls import ANSWER, FAST, NO_RETRY, Calls, emulated, fixed, history, hosts
from .conftest import deployment


def listing(*statuses: int) -> turnout.RetryPolicy:
    """A policy that repeats only these statuses, with millisecond waits."""
    return turnout.RetryPolicy(retry_statuses=frozenset(statuses), base=0.001, cap=0.001, jitter="none")


# -- retrying on the same deployment ---------------------------------------------


@pytest.mark.parametrize("error", ["slow_down", "rate_limited"], ids=["code", "kind"])
async def test_a_429_is_retried_after_its_retry_after(calls: Calls, error: str) -> None:
    script = FaultScript(Fault(error=error, retry_after=0.01))
    response = await calls.chat([deployment("a")], emulated(script), retry_policy=FAST)
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == ANSWER
    assert history(response.attempts) == [("a", "rate_limited"), ("a", None)]
    first = response.attempts[0].error
    assert first is not None
    assert first.retry_after == 0.01
    assert first.code == "slow_down"
    assert first.deployment == "a"
    assert first.request_id == "req_acme_000001"
    # The server's hint, above the (millisecond) backoff: never less than it asked.
    assert response.attempts[1].waited == 0.01
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("faults", "kinds"),
    [
        ([Fault(error="overloaded", retry_after=0.001), Fault(error="overloaded")], ["unavailable"] * 2),
        ([Fault(html=502), Fault(html=503)], ["upstream_error", "unavailable"]),
        ([Fault(html=502)] * 2, ["upstream_error"] * 2),
        ([Fault(html=503)] * 2, ["unavailable"] * 2),
        ([Fault(error="timed_out")] * 2, ["timeout"] * 2),
    ],
    ids=["unavailable", "proxy-pages", "html-502", "html-503", "504"],
)
@pytest.mark.parametrize("policy", [FAST, listing(429, 502, 503, 504)], ids=["any", "listed"])
async def test_retryable_failures_are_retried_until_one_succeeds(
    calls: Calls, faults: list[Fault], kinds: list[str], policy: turnout.RetryPolicy
) -> None:
    script = FaultScript(*faults)
    response = await calls.chat([deployment("a")], emulated(script), retry_policy=policy)
    assert isinstance(response, turnout.ChatResponse)
    assert response.content == ANSWER
    assert history(response.attempts) == [("a", kind) for kind in kinds] + [("a", None)]
    assert len(script.requests) == 3


@pytest.mark.parametrize("max_retries", [2, 3])
@pytest.mark.parametrize(
    ("fault", "cls", "kind"),
    [
        (Fault(error="oops"), turnout.InternalServerError, "server_error"),
        (Fault(html=503), turnout.ServiceUnavailableError, "unavailable"),
    ],
    ids=["500", "html-503"],
)
async def test_retries_stop_at_the_policys_limit_and_the_last_error_is_raised(
    calls: Calls, fault: Fault, cls: type[turnout.ProviderError], kind: str, max_retries: int
) -> None:
    script = FaultScript(*[fault] * 10)
    policy = turnout.RetryPolicy(max_retries=max_retries, base=0.001, cap=0.001, jitter="none")
    error = await calls.chat([deployment("a")], emulated(script), retry_policy=policy)
    assert type(error) is cls
    assert history(error.attempts) == [("a", kind)] * (max_retries + 1)
    assert len(script.requests) == max_retries + 1


# -- falling back ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "fault", "kind", "status", "code"),
    [
        # Retries only 429, 502, 503 and 504 (as MeshAPI's SDK does): a 500 is not repeated.
        ([429, 502, 503, 504], Fault(error="oops"), "server_error", 500, "oops"),
        # Retries only 429, 500 and 503 (as MythicDot's does): a proxy's 502 is not repeated.
        ([429, 500, 503], Fault(html=502), "upstream_error", 502, None),
    ],
    ids=["500", "502"],
)
async def test_what_the_policy_does_not_repeat_falls_back_at_once(
    calls: Calls, policy: list[int], fault: Fault, kind: str, status: int, code: str | None
) -> None:
    statuses = listing(*policy)
    alone = await calls.chat([deployment("a")], emulated(FaultScript(fault)), retry_policy=statuses)
    assert isinstance(alone, turnout.ProviderError)
    assert (alone.kind, alone.status, alone.code) == (kind, status, code)
    assert len(alone.attempts) == 1

    script = FaultScript(fault)
    deps = [deployment("a"), deployment("b")]
    response = await calls.chat(deps, emulated(script), retry_policy=statuses)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "b"
    assert history(response.attempts) == [("a", kind), ("b", None)]
    assert hosts(script) == ["a.test", "b.test"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("invalid_key", "authentication"),
        ("forbidden", "permission_denied"),
        ("no_credit", "insufficient_credits"),
        ("model_missing", "model_not_found"),
    ],
)
async def test_account_and_model_errors_fall_back_at_once(calls: Calls, error: str, kind: str) -> None:
    script = FaultScript(Fault(error=error))
    deps = [deployment("a"), deployment("b")]
    response = await calls.chat(deps, emulated(script), retry_policy=FAST)
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "b"
    assert history(response.attempts) == [("a", kind), ("b", None)]
    assert hosts(script) == ["a.test", "b.test"]


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("invalid_key", turnout.AuthenticationError),
        ("forbidden", turnout.PermissionDeniedError),
        ("no_credit", turnout.InsufficientCreditsError),
        ("model_missing", turnout.ModelNotFoundError),
        ("bad_request", turnout.BadRequestError),
        ("invalid_field", turnout.ValidationError),
        ("too_long", turnout.ContextLengthError),
        ("not_found", turnout.NotFoundError),
    ],
)
async def test_client_errors_are_not_retried(
    calls: Calls, error: str, cls: type[turnout.ProviderError]
) -> None:
    script = FaultScript(*[Fault(error=error)] * 3)
    raised = await calls.chat([deployment("a")], emulated(script), retry_policy=FAST)
    assert type(raised) is cls
    assert raised.code == error  # the gateway's own code, verbatim
    assert len(raised.attempts) == 1
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("fault", "cls", "status"),
    [
        (Fault(error="bad_request"), turnout.BadRequestError, 400),
        (Fault(error="invalid_field"), turnout.ValidationError, 422),
        (Fault(error="not_found"), turnout.NotFoundError, 404),
        (Fault(html=409), turnout.BadRequestError, 409),
    ],
    ids=["400", "422", "404", "409"],
)
async def test_request_errors_neither_retry_nor_fall_back(
    calls: Calls, fault: Fault, cls: type[turnout.ProviderError], status: int
) -> None:
    script = FaultScript(fault)
    raised = await calls.chat([deployment("a"), deployment("b")], emulated(script), retry_policy=FAST)
    assert type(raised) is cls
    assert raised.status == status
    assert [a.deployment for a in raised.attempts] == ["a"]
    assert hosts(script) == ["a.test"]


async def test_field_errors_come_through_the_router(calls: Calls) -> None:
    body = b'{"error": {"message": "messages is required", "code": "invalid_field", "param": "messages"}}'
    raised = await calls.chat([deployment("a"), deployment("b")], fixed(422, body), retry_policy=FAST)
    assert isinstance(raised, turnout.ValidationError)
    assert [d.field for d in raised.details] == ["messages"]
    assert [a.deployment for a in raised.attempts] == ["a"]


async def test_a_malformed_completion_is_a_parse_error_and_falls_back(calls: Calls) -> None:
    script = FaultScript(Fault(malformed=True))
    alone = await calls.chat([deployment("a")], emulated(script), retry_policy=NO_RETRY)
    assert isinstance(alone, turnout.ResponseParseError)
    assert alone.status == 200
    assert len(script.requests) == 1

    script = FaultScript(Fault(malformed=True))
    deps = [deployment("a"), deployment("b")]
    response = await calls.chat(deps, emulated(script), retry_policy=NO_RETRY)
    assert isinstance(response, turnout.ChatResponse)
    assert history(response.attempts) == [("a", "parse_error"), ("b", None)]


async def test_context_length_moves_only_to_a_context_window_route(calls: Calls) -> None:
    script = FaultScript(Fault(error="too_long"))
    routes = {
        "chat": {"deployments": ["short"], "context_window_fallbacks": ["long"]},
        "long": ["long"],
    }
    deps = [
        deployment("short", base_url="https://a.test/v1"),
        deployment("long", base_url="https://b.test/v1"),
    ]
    response = await calls.chat(deps, emulated(script), routes=routes, params={"model": "chat"})
    assert isinstance(response, turnout.ChatResponse)
    assert history(response.attempts) == [("short", "context_length_exceeded"), ("long", None)]
    assert response.deployment == "long"


# -- fallback routes across providers, from configuration -----------------------------


class OtherGateway(OpenAICompatible):
    """Another OpenAI-compatible gateway in front of acme (the docs' example)."""

    name = "othergw"
    default_base_url = "https://other.test/v1"


CONFIG: dict[str, Any] = {
    "deadline": 60.0,
    "deployments": [
        {"name": "primary", "provider": "othergw", "model": "gpt-4.1-mini", "api_key": "env:OTHER_KEY"},
        {
            "name": "acme-gpt",
            "provider": "acme",
            "model": "acme/gpt",
            "api_key": "env:ACME_KEY",
            "base_url": "https://acme.test/v1",
        },
        {
            "name": "acme-claude",
            "provider": "acme",
            "model": "acme/claude",
            "api_key": "env:ACME_KEY",
            "base_url": "https://acme.test/v1",
        },
    ],
    "routes": {
        "chat": {"deployments": ["primary"], "fallbacks": ["acme"]},
        "acme": {"deployments": ["acme-gpt", "acme-claude"]},
    },
}
# Every provider's own policy, with millisecond waits.
QUICK = turnout.RetryOverrides(base=0.001, cap=0.001)


@pytest.fixture
def two_gateways(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> Calls:
    monkeypatch.setenv("OTHER_KEY", "sk-other-abcdef123456")
    monkeypatch.setenv("ACME_KEY", "sk-acme-0123456789abcdef")
    calls.plugins.add_provider(OtherGateway())
    return calls


def by_model(faults: dict[str, Fault]) -> Any:
    def choose(request: EmulatedRequest) -> Fault | None:
        payload = request.json()
        return faults.get(payload.get("model")) if isinstance(payload, dict) else None

    return choose


def both(faults: Any) -> Any:
    emulator = AcmeEmulator()
    return mock_transport({"other.test": emulator, "acme.test": emulator}, faults)


async def test_a_fallback_route_takes_over_when_the_first_gateway_is_down(two_gateways: Calls) -> None:
    script = FaultScript(*[Fault(error="overloaded")] * 3, match=lambda r: r.host == "other.test")
    response = await two_gateways.chat(CONFIG, both(script), retry_policy=QUICK, params={"model": "chat"})
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "acme-gpt"
    assert response.provider == "acme"
    assert [a.deployment for a in response.attempts] == ["primary"] * 3 + ["acme-gpt"]


async def test_a_fallback_route_falls_back_across_its_models(two_gateways: Calls) -> None:
    faults = by_model({"gpt-4.1-mini": Fault(error="invalid_key"), "acme/gpt": Fault(error="model_missing")})
    response = await two_gateways.chat(CONFIG, both(faults), retry_policy=QUICK, params={"model": "chat"})
    assert isinstance(response, turnout.ChatResponse)
    assert response.deployment == "acme-claude"
    assert [kind for _, kind in history(response.attempts)] == ["authentication", "model_not_found", None]


async def test_a_stream_falls_back_across_routes_and_models(two_gateways: Calls) -> None:
    faults = by_model({"gpt-4.1-mini": Fault(error="invalid_key"), "acme/gpt": Fault(error="overloaded")})
    streamed = await two_gateways.stream(CONFIG, both(faults), retry_policy=QUICK, params={"model": "chat"})
    assert streamed.error is None
    assert streamed.text == ANSWER
    assert streamed.deployment == "acme-claude"
    # acme's policy repeats an unavailable stream twice before the route moves on.
    kinds = [kind for _, kind in history(streamed.attempts)]
    assert kinds == ["authentication", "unavailable", "unavailable", "unavailable", None]
