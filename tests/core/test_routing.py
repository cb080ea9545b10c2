"""The router's decisions as pure functions: scripted replies, a fake clock, no network."""

from __future__ import annotations

import pytest

import turnout
from turnout import ErrorKind, Route
from turnout._errors import KIND_RULES, Fallback

from .acme import ACME_CODES
from .conftest import FAST, deployment
from .scripted import Script, call, drop, fail, kinds, ok

FALLBACK_KINDS = [kind for kind, rule in KIND_RULES.items() if rule.fallback is Fallback.ALWAYS]
NEVER_KINDS = [kind for kind, rule in KIND_RULES.items() if rule.fallback is Fallback.NEVER]
CODE_FOR = {rule.kind: (code, rule.status) for code, rule in ACME_CODES.items()}


def test_success_first_time(make_core, clock):
    core = make_core([deployment("a"), deployment("b")])
    script = Script(clock, {"a.test": [ok("fine")]})
    response, _ = call(core, script)
    assert response.content == "fine"
    assert (response.deployment, response.provider) == ("a", "acme")
    assert kinds(response.attempts) == [("a", None)]
    assert response.attempts[0].elapsed == pytest.approx(0.01)


def test_retry_then_success_waits_the_policy_backoff(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=2, base=0.5, cap=8.0, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy)
    script = Script(clock, {"a.test": [fail(503, "overloaded"), fail(500, "oops"), ok()]})
    response, _ = call(core, script)
    assert kinds(response.attempts) == [("a", "unavailable"), ("a", "server_error"), ("a", None)]
    assert script.sleeps == [0.5, 1.0]
    assert [a.waited for a in response.attempts] == [0.0, 0.5, 1.0]


def test_retry_waits_at_least_the_servers_retry_after(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=1, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=7), ok()]})
    response, _ = call(core, script)
    assert script.sleeps == [7.0]
    assert response.attempts[-1].waited == 7.0


def test_retries_exhausted_then_falls_back(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=FAST)
    script = Script(clock, {"a.test": [fail(500, "oops")] * 3, "b.test": [ok("from b")]})
    response, _ = call(core, script)
    assert script.hosts == ["a.test", "a.test", "a.test", "b.test"]
    assert response.deployment == "b"
    assert response.content == "from b"


@pytest.mark.parametrize("kind", FALLBACK_KINDS, ids=str)
def test_every_fallback_kind_moves_to_the_next_deployment(make_core, clock, kind):
    policy = turnout.RetryPolicy(max_retries=0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=policy)
    if kind in CODE_FOR:
        code, status = CODE_FOR[kind]
        first = fail(status, code)
    elif kind is ErrorKind.PARSE_ERROR:
        first = turnout.HTTPResponse(200, {"content-type": "application/json"}, b"<html>nope</html>")
    else:
        first = drop(kind)
    script = Script(clock, {"a.test": [first], "b.test": [ok()]})
    response, _ = call(core, script)
    assert kinds(response.attempts) == [("a", kind.value), ("b", None)]


@pytest.mark.parametrize("kind", NEVER_KINDS, ids=str)
def test_client_errors_never_fall_back(make_core, clock, kind):
    core = make_core([deployment("a"), deployment("b")], retry_policy=FAST)
    code, status = CODE_FOR[kind]
    script = Script(clock, {"a.test": [fail(status, code)], "b.test": [ok()]})
    error, _ = call(core, script)
    assert isinstance(error, KIND_RULES[kind].exception)
    assert script.hosts == ["a.test"]
    assert kinds(error.attempts) == [("a", kind.value)]


def test_the_last_error_is_raised_with_the_whole_history(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=turnout.RetryPolicy(max_retries=0))
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(429, "slow_down")]})
    error, _ = call(core, script)
    assert isinstance(error, turnout.RateLimitError)
    assert (error.provider, error.deployment) == ("acme", "b")
    assert kinds(error.attempts) == [("a", "unavailable"), ("b", "rate_limited")]


def test_not_retryable_errors_are_not_repeated(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=FAST)
    script = Script(clock, {"a.test": [fail(401, "invalid_key")], "b.test": [ok()]})
    response, _ = call(core, script)
    assert script.hosts == ["a.test", "b.test"]
    assert response.deployment == "b"


def test_each_deployment_retries_by_the_policy_of_the_route_that_lists_it(make_core, clock):
    """A call on "fast" does not retry its own deployment; falling back into "careful",
    it retries there as "careful" says."""
    careful = turnout.RetryPolicy(max_retries=2, base=0.01, cap=0.01, jitter="none")
    routes = {
        "fast": {
            "deployments": ["a"],
            "fallbacks": ["careful"],
            "retry_policy": turnout.RetryPolicy(max_retries=0),
        },
        "careful": {"deployments": ["b"], "retry_policy": careful},
    }
    core = make_core([deployment("a"), deployment("b")], routes, retry_policy=FAST)
    script = Script(
        clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(503, "overloaded")] * 2 + [ok()]}
    )
    response, _ = call(core, script, model="fast")
    assert script.hosts == ["a.test", "b.test", "b.test", "b.test"]
    assert [a.decision for a in response.attempts] == ["fallback", "retry", "retry", "done"]
    assert script.sleeps == [0.01, 0.01]


def test_content_filter_goes_only_to_the_content_policy_route(make_core, clock):
    routes = {
        "chat": {"deployments": ["a", "b"], "content_policy_fallbacks": ["lenient"]},
        "lenient": ["c"],
    }
    core = make_core([deployment("a"), deployment("b"), deployment("c")], routes, retry_policy=FAST)
    script = Script(clock, {"a.test": [fail(400, "content_blocked")], "c.test": [ok("lenient answer")]})
    response, _ = call(core, script, model="chat")
    assert script.hosts == ["a.test", "c.test"]
    assert response.deployment == "c"


def test_content_filter_without_a_content_route_is_raised(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], {"chat": ["a", "b"]}, retry_policy=FAST)
    script = Script(clock, {"a.test": [fail(400, "content_blocked")]})
    error, _ = call(core, script, model="chat")
    assert isinstance(error, turnout.ContentFilterError)
    assert script.hosts == ["a.test"]


def test_context_length_goes_only_to_the_context_window_route(make_core, clock):
    routes = {
        "chat": {"deployments": ["a", "b"], "context_window_fallbacks": ["long"], "fallbacks": ["backup"]},
        "long": ["c"],
        "backup": ["d"],
    }
    deps = [deployment(n) for n in "abcd"]
    core = make_core(deps, routes, retry_policy=FAST)
    script = Script(clock, {"a.test": [fail(400, "too_long")], "c.test": [ok()]})
    response, _ = call(core, script, model="chat")
    assert script.hosts == ["a.test", "c.test"]
    assert response.deployment == "c"


def test_route_fallbacks_come_after_the_routes_own_deployments(make_core, clock):
    routes = {"chat": {"deployments": ["a", "b"], "fallbacks": ["backup"]}, "backup": ["c"]}
    core = make_core([deployment(n) for n in "abc"], routes, retry_policy=turnout.RetryPolicy(max_retries=0))
    script = Script(
        clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(502, "upstream")], "c.test": [ok()]}
    )
    response, _ = call(core, script, model="chat")
    assert kinds(response.attempts) == [("a", "unavailable"), ("b", "upstream_error"), ("c", None)]


def test_fallback_routes_do_not_loop(make_core, clock):
    routes = {
        "x": {"deployments": ["a"], "fallbacks": ["y"]},
        "y": {"deployments": ["b"], "fallbacks": ["x"]},
    }
    core = make_core(
        [deployment("a"), deployment("b")], routes, retry_policy=turnout.RetryPolicy(max_retries=0)
    )
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(503, "overloaded")]})
    error, _ = call(core, script, model="x")
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert script.hosts == ["a.test", "b.test"]


def test_a_retry_that_would_overrun_the_deadline_falls_back_now(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=3, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a"), deployment("b")], retry_policy=policy, deadline=10.0)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=60)], "b.test": [ok()]})
    response, _ = call(core, script)
    assert script.sleeps == []
    assert response.deployment == "b"


def test_a_retry_that_would_overrun_the_deadline_with_nowhere_to_go_raises_at_once(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=3, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy, deadline=10.0)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=60)]})
    started = clock()
    error, _ = call(core, script)
    assert isinstance(error, turnout.RateLimitError)
    assert error.retry_after == 60
    assert script.sleeps == []
    assert clock() - started == pytest.approx(0.01)


def test_a_long_retry_after_falls_back_when_another_deployment_is_ready(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=3, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a"), deployment("b")], retry_policy=policy, max_retry_wait=5.0)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=20)], "b.test": [ok()]})
    response, _ = call(core, script)
    assert script.sleeps == []
    assert response.deployment == "b"


def test_a_long_retry_after_is_waited_when_nothing_else_can_serve(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=3, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy, max_retry_wait=5.0)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=20), ok()]})
    response, _ = call(core, script)
    assert script.sleeps == [20.0]
    assert response.deployment == "a"


def test_the_deadline_bounds_every_wait_and_attempt(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=100, base=1.0, cap=1.0, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy, deadline=5.0)
    script = Script(clock, {"a.test": [fail(503, "overloaded")] * 100}, latency=0.5)
    started = clock()
    error, _ = call(core, script)
    assert isinstance(error, turnout.ServiceUnavailableError)
    assert clock() - started <= 5.0
    assert sum(script.sleeps) + 0.5 * len(script.sent) <= 5.0


def test_per_call_deadline_overrides_the_router_default(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=100, base=1.0, cap=1.0, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy, deadline=600.0)
    script = Script(clock, {"a.test": [fail(503, "overloaded")] * 100}, latency=0.1)
    started = clock()
    call(core, script, deadline=2.0)
    assert clock() - started <= 2.0


def test_deployment_policy_overrides_router_and_provider_policy(make_core, clock):
    never = turnout.RetryPolicy(max_retries=0)
    core = make_core(
        [deployment("a", retry_policy=never), deployment("b")],
        retry_policy=turnout.RetryPolicy(max_retries=5, base=0.001, cap=0.001),
    )
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(503, "overloaded"), ok()]})
    response, _ = call(core, script)
    assert script.hosts == ["a.test", "b.test", "b.test"]
    assert response.deployment == "b"


def test_model_names_a_route_or_a_single_deployment(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], {"chat": ["a", "b"]}, retry_policy=FAST)
    script = Script(clock, {"b.test": [fail(503, "overloaded")] * 3})
    error, _ = call(core, script, model="b")
    assert script.hosts == ["b.test"] * 3
    assert isinstance(error, turnout.ServiceUnavailableError)


def test_unknown_model_is_a_config_error_listing_what_exists(make_core):
    core = make_core([deployment("a")], {"chat": ["a"]})
    with pytest.raises(turnout.ConfigError, match="chat") as info:
        core.route("nope")
    assert info.value.path == "model"


def test_omitted_routes_make_one_route_of_every_deployment_in_order(make_core):
    core = make_core([deployment("b"), deployment("a")])
    assert core.route(None) == Route("default", ("b", "a"))


def test_errors_are_stamped_with_provider_and_deployment(make_core, clock):
    core = make_core([deployment("a")], retry_policy=turnout.RetryPolicy(max_retries=0))
    script = Script(clock, {"a.test": [drop(ErrorKind.CONNECTION)]})
    error, _ = call(core, script)
    assert isinstance(error, turnout.APIConnectionError)
    assert (error.provider, error.deployment) == ("acme", "a")


def test_each_key_goes_only_to_its_own_host(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=turnout.RetryPolicy(max_retries=0))
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [ok()]})
    call(core, script)
    assert [(host, headers["authorization"]) for host, headers in script.sent] == [
        ("a.test", "Bearer sk-acme-a-0123456789"),
        ("b.test", "Bearer sk-acme-b-0123456789"),
    ]
