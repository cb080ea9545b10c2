"""turnout-acme, installed: the conformance kit, then what is Acme's own (its envelope,
its named policy, the plugin as turnout finds it)."""

from __future__ import annotations

import pytest
from turnout_acme.emulator import AcmeEmulator
from turnout_acme.policy import ACME_PATIENT
from turnout_acme.provider import Acme

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways
from turnout.testing import ProviderConformance


# --8<-- [start:kit]
class TestAcme(ProviderConformance):
    provider = Acme()
    emulator = AcmeEmulator()


# --8<-- [end:kit]


def test_quota_says_how_long_to_wait_in_milliseconds() -> None:
    body = b'{"status": "error", "reason": "QUOTA", "retry_in_ms": 1500, "request_id": "r1"}'
    error = turnout.normalize_error("acme", status=429, body=body)
    assert (type(error), error.code, error.retry_after, error.request_id) == (
        turnout.RateLimitError,
        "QUOTA",
        1.5,
        "r1",
    )


def test_a_200_with_the_envelope_and_a_frame_are_errors_with_the_reasons_status() -> None:
    body = {"status": "error", "reason": "OVERLOADED"}
    error = turnout.normalize_error("acme", status=None, body=body)
    assert (error.kind, error.status, error.retryable) == ("unavailable", 503, True)
    assert turnout.normalize_error("acme", status=None, body={"status": "ok"}).kind == "upstream_error"


def test_internal_is_not_repeated() -> None:
    error = turnout.normalize_error("acme", status=500, body={"status": "error", "reason": "INTERNAL"})
    assert (error.kind, error.retryable) == ("server_error", False)


def test_the_plugin_as_turnout_finds_it() -> None:
    info = turnout.providers()["acme"]
    assert (info.distribution, info.module, info.normalizer) == (
        "turnout-acme",
        "turnout_acme.provider",
        None,
    )
    patient = turnout.retry_policies()["acme-patient"]
    assert patient == turnout.RetryPolicyInfo("acme-patient", ACME_PATIENT, "turnout-acme", "0.1.0")


# --8<-- [start:config]
def test_acme_patient_from_configuration(fake_gateways: FakeGateways) -> None:
    config = {
        "retry_policy": "acme-patient",
        "deployments": [
            {
                "name": "acme",
                "provider": "acme",
                "model": "acme-large",
                "api_key": "acme_test_0123456789",
                "base_url": fake_gateways.base_url("acme"),
                "retry": {"base": 0.01},  # the named policy, waiting less in a test
            }
        ],
    }
    # Three quota refusals, then an answer: acme-patient rides them out.
    quota = Fault(error="QUOTA", retry_after=0.02)
    fake_gateways.script("acme", quota, quota, quota)
    with turnout.Router.from_config(config) as router:
        answer = router.chat([{"role": "user", "content": "hi"}])
        assert router.policy("acme").max_retries == 5
    assert answer.content == "echo: hi"
    assert [a.error.code if a.error else None for a in answer.attempts] == ["QUOTA", "QUOTA", "QUOTA", None]
    assert all(a.waited >= 0.02 for a in answer.attempts[1:])  # never sooner than retry_in_ms


# --8<-- [end:config]


def test_an_unknown_policy_name_lists_acmes() -> None:
    deployments = [{"name": "a", "provider": "acme", "model": "m"}]
    config = {"retry_policy": "acme-patiant", "deployments": deployments}
    with pytest.raises(turnout.ConfigError, match=r"known: acme-patient"):
        turnout.Router.from_config(config)
