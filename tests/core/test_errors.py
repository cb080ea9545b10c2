"""The taxonomy is exactly the contract's table."""

from __future__ import annotations

import pickle

import pytest

import turnout
from turnout import ErrorKind, FieldError
from turnout._errors import KIND_CLASSES, KIND_RULES, Fallback, error_for

# The contract: kind -> (class name, parent class name, retryable, fall back).
CONTRACT = {
    "authentication": ("AuthenticationError", "ProviderError", False, "yes"),
    "permission_denied": ("PermissionDeniedError", "ProviderError", False, "yes"),
    "insufficient_credits": ("InsufficientCreditsError", "ProviderError", False, "yes"),
    "not_found": ("NotFoundError", "ProviderError", False, "no"),
    "model_not_found": ("ModelNotFoundError", "NotFoundError", False, "yes"),
    "bad_request": ("BadRequestError", "ProviderError", False, "no"),
    "validation": ("ValidationError", "BadRequestError", False, "no"),
    "content_filtered": ("ContentFilterError", "BadRequestError", False, "only on a content-policy route"),
    "context_length_exceeded": (
        "ContextLengthError",
        "BadRequestError",
        False,
        "only on a context-window route",
    ),
    "rate_limited": ("RateLimitError", "ProviderError", True, "yes"),
    "timeout": ("APITimeoutError", "ProviderError", True, "yes"),
    "connection": ("APIConnectionError", "ProviderError", True, "yes"),
    "server_error": ("InternalServerError", "ProviderError", True, "yes"),
    "upstream_error": ("UpstreamError", "InternalServerError", True, "yes"),
    "unavailable": ("ServiceUnavailableError", "ProviderError", True, "yes"),
    "stream_interrupted": (
        "StreamInterruptedError",
        "ProviderError",
        False,
        "only before the first chunk reached the caller",
    ),
    "parse_error": ("ResponseParseError", "ProviderError", True, "yes"),
}


def test_every_kind_is_in_the_contract_and_nothing_else():
    assert {k.value for k in ErrorKind} == set(CONTRACT)
    assert set(KIND_RULES) == set(ErrorKind)


@pytest.mark.parametrize("kind", list(CONTRACT))
def test_each_kind_has_its_class_parent_and_rules(kind):
    name, parent, retryable, fallback = CONTRACT[kind]
    cls = getattr(turnout, name)
    assert KIND_CLASSES[ErrorKind(kind)] is cls
    assert cls.__bases__ == (getattr(turnout, parent),)
    assert issubclass(cls, turnout.ProviderError)
    assert issubclass(cls, turnout.TurnoutError)
    assert KIND_RULES[ErrorKind(kind)].retryable is retryable
    assert KIND_RULES[ErrorKind(kind)].fallback.value == fallback
    error = error_for(ErrorKind(kind), "m", provider="p")
    assert type(error) is cls
    assert error.kind == kind
    assert error.retryable is retryable


def test_client_errors_never_count_against_the_breaker():
    for kind in ("bad_request", "validation", "not_found", "content_filtered", "context_length_exceeded"):
        assert KIND_RULES[ErrorKind(kind)].health_failure is False
    for kind in (
        "server_error",
        "unavailable",
        "timeout",
        "connection",
        "stream_interrupted",
        "parse_error",
        "rate_limited",
    ):
        assert KIND_RULES[ErrorKind(kind)].health_failure is True
    for kind in ("authentication", "permission_denied", "insufficient_credits"):
        assert KIND_RULES[ErrorKind(kind)].cooldown == 600


def test_provider_error_carries_every_contract_attribute():
    error = error_for(
        ErrorKind.RATE_LIMITED,
        "slow down",
        provider="meshapi",
        deployment="mesh",
        status=429,
        code="rate_limit_exceeded",
        retry_after=2.5,
        request_id="req-1",
        details=(FieldError("messages", "too_many", "too many"),),
        partial_text="so far",
    )
    for name in (
        "kind",
        "provider",
        "deployment",
        "status",
        "code",
        "message",
        "retryable",
        "retry_after",
        "request_id",
        "details",
        "partial_text",
        "attempts",
    ):
        assert hasattr(error, name), name
    assert str(error) == (
        "[meshapi/mesh] rate_limited (429 rate_limit_exceeded): slow down (retry after 2.5s)"
        " [request_id=req-1]"
    )
    assert error.fallback is Fallback.ALWAYS
    assert error.attempts == ()


def test_an_explicit_retryable_flag_overrides_the_kind():
    assert error_for(ErrorKind.SERVER_ERROR, "m", retryable=False).retryable is False
    assert error_for(ErrorKind.BAD_REQUEST, "m", retryable=True).retryable is True


def test_errors_survive_pickling_across_processes():
    error = error_for(ErrorKind.UNAVAILABLE, "busy", provider="p", status=503, retry_after=1.0)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is turnout.ServiceUnavailableError
    assert (copy.kind, copy.status, copy.retry_after, copy.message) == (error.kind, 503, 1.0, "busy")


def test_no_healthy_deployment_error_carries_retry_after():
    error = turnout.NoHealthyDeploymentError("all open", route="chat", retry_after=12.0)
    assert isinstance(error, turnout.TurnoutError)
    assert not isinstance(error, turnout.ProviderError)
    assert (error.route, error.retry_after) == ("chat", 12.0)


def test_config_error_names_path_value_and_choices():
    error = turnout.ConfigError(
        "unknown provider", path="deployments[2].provider", value="mesh", choices=["a", "b"]
    )
    assert str(error) == "deployments[2].provider: unknown provider (got 'mesh'); installed: a, b"
    assert error.path == "deployments[2].provider"


def test_config_error_never_shows_a_secret_value():
    error = turnout.ConfigError("bad shape", path="deployments[0].api_key", value="sk-very-secret")
    assert "sk-very-secret" not in str(error)
    assert "sk-very-secret" not in repr(error)
    assert error.value == "<hidden>"
