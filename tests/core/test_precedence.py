"""Who supplies each provider, normalizer and named retry policy: installed
distributions (real dist-infos on sys.path), code registrations, and the conflicts."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

import turnout
from turnout import ErrorKind, Plugins
from turnout._flow import HTTPResponse
from turnout.emulation import Fault, mock_transport

from .acme import Acme, AcmeEmulator
from .distributions import Install

PROVIDER = """
from tests.core.acme import Acme

@turnout.hookimpl
def turnout_register_providers(register):
    register(Acme())
"""

# A company proxy in front of acme: it rewrites every error as {"proxy": "..."}.
NORMALIZER = """
class Proxy:
    def normalize(self, *, status, headers=None, body=None):
        kind = turnout.ErrorKind.RATE_LIMITED
        return turnout.error_for(kind, "the proxy refused", status=status, code="PROXY")

@turnout.hookimpl
def turnout_register_normalizers(register):
    register("acme", Proxy())
"""

POLICY = """
@turnout.hookimpl
def turnout_register_retry_policies(register):
    register("patient", turnout.RetryPolicy(max_retries={retries}, base=1.0, cap=60.0))
"""


class Proxy:
    """The same proxy, in code."""

    def __init__(self, code: str = "IN_CODE") -> None:
        self.code = code

    def normalize(self, *, status, headers=None, body=None):
        return turnout.error_for(ErrorKind.UNAVAILABLE, "in code", status=status, code=self.code)


# -- two installed distributions claiming one name ------------------------------------


@pytest.mark.parametrize(
    ("what", "source", "message"),
    [
        ("provider", PROVIDER, "provider 'acme'"),
        ("normalizer", PROVIDER + NORMALIZER, "normalizer for provider 'acme'"),
        ("policy", POLICY.format(retries=5), "retry policy 'patient'"),
    ],
)
def test_two_installed_distributions_claiming_one_name_is_a_config_error_naming_both(
    install: Install, what: str, source: str, message: str
) -> None:
    install("turnout-first", "first", source, version="1.0")
    # The second distribution claims only the contested name.
    second = {"provider": PROVIDER, "normalizer": NORMALIZER, "policy": POLICY.format(retries=9)}[what]
    install("turnout-second", "second", second, version="2.5")
    plugins = Plugins()
    with pytest.raises(turnout.ConfigError) as info:
        plugins.infos() if what != "policy" else plugins.retry_policies()
    text = str(info.value)
    assert message in text
    assert "turnout-first 1.0 (entry point 'first')" in text
    assert "turnout-second 2.5 (entry point 'second')" in text
    assert "TURNOUT_DISABLE_PLUGINS" in text


def test_turning_one_of_them_off_resolves_the_conflict(install: Install) -> None:
    install("turnout-first", "first", PROVIDER)
    install("turnout-second", "second", PROVIDER)
    assert Plugins(blocked=["second"]).infos()["acme"].distribution == "turnout-first"


# -- in-code registration wins, visibly ----------------------------------------------


def test_a_provider_registered_in_code_replaces_an_installed_one_and_says_so(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER, version="1.2.3")
    plugins = Plugins()
    installed = plugins.provider("acme")
    mine = Acme()
    plugins.add_provider(mine)
    assert plugins.provider("acme") is mine is not installed
    info = plugins.infos()["acme"]
    assert (info.distribution, info.version, info.replaces) == (None, None, "turnout-fakeplug")


def test_a_plugin_registered_in_code_wins_too(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER)

    class Mine:
        @turnout.hookimpl
        def turnout_register_providers(self, register):
            register(Acme())

    plugins = Plugins()
    plugins.register(Mine(), name="mine")
    assert plugins.infos()["acme"].replaces == "turnout-fakeplug"


def test_register_provider_in_the_process(default_acme: None) -> None:
    turnout.register_provider(mine := Acme())
    assert turnout._plugins.default_plugins().provider("acme") is mine
    assert turnout.providers()["acme"].distribution is None


# -- normalizers -----------------------------------------------------------------------


def test_an_installed_normalizer_reads_the_errors_of_an_installed_provider(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER)
    install("turnout-proxy", "proxy", NORMALIZER, version="3.0")
    plugins = Plugins()
    provider = plugins.provider("acme")
    error = provider.error_from(HTTPResponse(503, {}, b"<html>proxy page</html>"))
    assert (error.kind, error.code, error.provider) == (ErrorKind.RATE_LIMITED, "PROXY", "acme")
    # Stream frames and 200-with-error bodies go through it too (status None).
    assert provider.stream_error({"error": {"code": "oops"}}, HTTPResponse(200, {}, b"")).code == "PROXY"
    info = plugins.infos()["acme"]
    assert (info.distribution, info.normalizer) == ("turnout-fakeplug", "turnout-proxy")
    # The provider as its plugin registered it is left as it was.
    assert Acme().normalize(status=503, body=b"").kind is ErrorKind.UNAVAILABLE


def test_a_router_raises_what_the_normalizer_says(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER)
    install("turnout-proxy", "proxy", NORMALIZER)
    transport = mock_transport({"acme.test": AcmeEmulator()}, Fault(error="overloaded"))
    router = turnout.Router(
        [turnout.Deployment("a", "acme", "m", api_key="k", retry_policy=turnout.RetryPolicy(max_retries=0))],
        plugins=Plugins(),
        transport=transport,
    )
    with pytest.raises(turnout.RateLimitError) as info:
        router.chat([{"role": "user", "content": "hi"}])
    assert (info.value.code, info.value.deployment, info.value.status) == ("PROXY", "a", 503)


def test_an_installed_normalizer_does_not_touch_a_provider_registered_in_code(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER)
    install("turnout-proxy", "proxy", NORMALIZER)
    plugins = Plugins()
    plugins.add_provider(Acme())
    assert plugins.provider("acme").normalize(status=503).kind is ErrorKind.UNAVAILABLE
    assert plugins.infos()["acme"].normalizer is None


def test_a_normalizer_registered_in_code_wins_over_an_installed_one(install: Install) -> None:
    install("turnout-fakeplug", "fakeplug", PROVIDER)
    install("turnout-proxy", "proxy", NORMALIZER)
    plugins = Plugins()
    plugins.add_normalizer("acme", Proxy())
    assert plugins.provider("acme").normalize(status=429).code == "IN_CODE"
    assert plugins.infos()["acme"].normalizer == "code"
    # ... and applies to a provider registered in code.
    plugins.add_provider(Acme())
    assert plugins.provider("acme").normalize(status=429).code == "IN_CODE"


def test_normalize_error_uses_the_replacing_normalizer(default_acme: None) -> None:
    turnout.register_normalizer("acme", Proxy("ANY"))
    assert turnout.normalize_error("acme", status=500, body=b"").code == "ANY"


def test_a_normalizer_for_a_provider_that_is_not_installed(install: Install) -> None:
    install("turnout-proxy", "proxy", NORMALIZER)
    with pytest.raises(turnout.ConfigError) as info:
        Plugins().infos()
    text = str(info.value)
    assert "turnout-proxy 1.0 (entry point 'proxy') registered a normalizer for provider 'acme'" in text
    assert "which is not installed; installed: " in text


def test_a_normalizer_that_fails_leaves_the_providers_own_reading_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def normalize(self, *, status, headers=None, body=None):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "the body holds sk-secret")

    class Wrong:
        def normalize(self, *, status, headers=None, body=None):
            return "rate limited"

    for normalizer, problem in ((Broken(), "raised UnicodeDecodeError"), (Wrong(), "returned str")):
        plugins = Plugins(entry_points=False)
        plugins.add_provider(Acme())
        plugins.add_normalizer("acme", normalizer)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="turnout.plugins"):
            error = plugins.provider("acme").normalize(status=502, body=b"\xff\xfe")
        assert error.kind is ErrorKind.UPSTREAM_ERROR
        assert f"the normalizer from code for provider 'acme' {problem}" in caplog.text
        assert "sk-secret" not in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acme", object()), "expected a provider name and an object with normalize"),
        ((42, Proxy()), "expected a provider name and an object with normalize"),
    ],
)
def test_a_malformed_normalizer_registration_names_the_plugin(args, message) -> None:
    class Plugin:
        @turnout.hookimpl
        def turnout_register_normalizers(self, register):
            register(*args)

    plugins = Plugins(entry_points=False)
    plugins.add_provider(Acme())
    plugins.register(Plugin(), name="odd")
    with pytest.raises(turnout.ConfigError, match=message) as info:
        plugins.providers()
    assert "plugin 'odd'" in str(info.value)


def test_register_called_with_the_wrong_arguments_names_the_plugin() -> None:
    class Plugin:
        @turnout.hookimpl
        def turnout_register_retry_policies(self, register):
            register(turnout.RetryPolicy())

    plugins = Plugins(entry_points=False)
    plugins.register(Plugin(), name="odd")
    with pytest.raises(turnout.TurnoutError, match="plugin 'odd' failed to register its retry policies"):
        plugins.retry_policies()


# -- named retry policies --------------------------------------------------------------


def test_installed_policies_are_listed_with_their_distribution(install: Install) -> None:
    install("turnout-policies", "policies", POLICY.format(retries=7), version="0.3")
    infos = Plugins().retry_policies()
    assert infos["patient"] == turnout.RetryPolicyInfo(
        "patient", turnout.RetryPolicy(max_retries=7, base=1.0, cap=60.0), "turnout-policies", "0.3"
    )


def test_a_policy_registered_in_code_wins_and_says_so(install: Install) -> None:
    install("turnout-policies", "policies", POLICY.format(retries=7))
    plugins = Plugins()
    plugins.add_retry_policy("patient", mine := turnout.RetryPolicy(max_retries=1))
    assert plugins.retry_policy("patient") is mine
    info = plugins.retry_policies()["patient"]
    assert (info.distribution, info.replaces) == (None, "turnout-policies")


def test_retry_policies_in_the_process(default_acme: None) -> None:
    turnout.register_retry_policy("eager", policy := turnout.RetryPolicy(max_retries=9))
    assert turnout.retry_policies() == {"eager": turnout.RetryPolicyInfo("eager", policy, None, None)}


def test_a_registered_policy_must_be_a_retry_policy() -> None:
    class Plugin:
        @turnout.hookimpl
        def turnout_register_retry_policies(self, register):
            register("patient", {"max_retries": 5})

    plugins = Plugins(entry_points=False)
    plugins.register(Plugin(), name="odd")
    with pytest.raises(turnout.ConfigError, match=r"expected a name and a turnout\.RetryPolicy"):
        plugins.retry_policies()


# -- observers (the router's use of them is issue 18's) ------------------------------------


def test_observers_are_what_plugins_registered_in_order(install: Install) -> None:
    # Plugins installed in the environment may register observers too (turnout-otel does).
    installed = [entry.name for entry in importlib.metadata.entry_points(group="turnout")]
    install(
        "turnout-watch",
        "watch",
        """
        class Watch:
            def on_call(self, event):
                pass

        @turnout.hookimpl
        def turnout_register_observers(register):
            register(Watch())
        """,
    )
    mine = object()

    class Mine:
        @turnout.hookimpl
        def turnout_register_observers(self, register):
            register(mine)

    plugins = Plugins(blocked=installed)
    plugins.register(Mine(), name="mine")
    observers = plugins.observers()
    assert [type(o).__name__ for o in observers] == ["Watch", "object"]
    assert observers[1] is mine
    assert plugins.observers()[0] is observers[0]  # made once
    assert Plugins(blocked=["watch", *installed]).observers() == []
