"""Breakers, cooldowns, the retry budget, rate-limit awareness and strategies, on a fake clock."""

from __future__ import annotations

import asyncio
import collections
import random
import threading

import httpx
import pytest

import turnout
from turnout._health import BreakerConfig, DeploymentState, Outcome, availability, on_failure
from turnout._state import Claim, MemoryStore, RetryBudget, Settle
from turnout.emulation import Fault, mock_transport

from .acme import AcmeEmulator
from .conftest import deployment
from .scripted import Script, call, fail, kinds, ok

NO_RETRY = turnout.RetryPolicy(max_retries=0)


def test_breaker_opens_after_twelve_consecutive_health_failures_and_is_skipped(make_core, clock):
    """The default breaker (docs/resilience.md explains twelve): a dead deployment
    trips after twelve failures in a row, then is skipped."""
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY)
    script = Script(clock, {"a.test": [fail(503, "overloaded")] * 12, "b.test": [ok()] * 20})
    for _ in range(11):
        call(core, script)
    assert core.health_report(core.store.load(["a", "b"]))["a"].status == "closed"
    call(core, script)
    assert core.health_report(core.store.load(["a", "b"]))["a"].status == "open"
    before = script.hosts.count("a.test")
    for _ in range(5):
        response, _ = call(core, script)
        assert kinds(response.attempts) == [("b", None)]
    assert script.hosts.count("a.test") == before == 12


def test_breaker_half_opens_one_probe_and_closes_on_success(make_core, clock):
    config = BreakerConfig(consecutive_failures=2, open_for=30.0, jitter=0.0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY, breaker=config)
    script = Script(clock, {"a.test": [fail(500, "oops")] * 2 + [ok("probe ok")], "b.test": [ok()] * 10})
    call(core, script)
    call(core, script)
    assert core.store.load(["a"])["a"].status == "open"
    clock.advance(29.0)
    assert call(core, script)[0].deployment == "b"
    clock.advance(1.5)
    response, _ = call(core, script)
    assert response.deployment == "a"
    assert core.store.load(["a"])["a"].status == "closed"


def test_a_failed_probe_reopens_for_twice_as_long(make_core, clock):
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY, breaker=config)
    script = Script(clock, {"a.test": [fail(500, "oops")] * 3, "b.test": [ok()] * 10})
    call(core, script)
    state = core.store.load(["a"])["a"]
    assert state.open_until - clock() == pytest.approx(10.0, abs=0.1)
    clock.advance(10.5)
    call(core, script)  # the probe fails
    state = core.store.load(["a"])["a"]
    assert (state.status, state.trips) == ("open", 2)
    assert state.open_until - clock() == pytest.approx(20.0, abs=0.1)


def test_half_open_lets_only_the_configured_number_of_probes_through():
    config = BreakerConfig(consecutive_failures=1, open_for=10.0, jitter=0.0, probes=1)
    store = MemoryStore()
    error = turnout._errors.error_for(turnout.ErrorKind.SERVER_ERROR, "x")
    store.settle(Settle("a", Outcome.failure(error, 0.0, rng=random.Random(1)), config))

    def probe(at: float) -> str | None:
        return store.claim(Claim(("a",), ("a",), at, config, RetryBudget())).name

    assert [probe(11.0) for _ in range(3)] == ["a", None, None]
    # A probe that never reports back frees its slot after probe_timeout.
    assert probe(11.0 + config.probe_timeout + 1) == "a"


def test_failure_rate_over_the_window_trips_the_breaker():
    config = BreakerConfig(consecutive_failures=100, failure_rate=0.5, window=20, min_calls=10)
    state = DeploymentState()
    rng = random.Random(0)
    error = turnout._errors.error_for(turnout.ErrorKind.UNAVAILABLE, "x")
    for i in range(9):
        state = (
            turnout._health.on_success(state, 0.1, config)
            if i % 2
            else on_failure(state, error, 0, config, rng)
        )
    assert state.status == "closed"  # 9 calls: below min_calls
    state = on_failure(state, error, 0, config, rng)
    assert state.status == "open"  # 6 of 10 failed


@pytest.mark.parametrize("code", ["bad_request", "invalid_field", "not_found", "content_blocked", "too_long"])
def test_client_errors_never_trip_the_breaker(make_core, clock, code):
    core = make_core([deployment("a")], retry_policy=NO_RETRY)
    status = {"not_found": 404, "invalid_field": 422}.get(code, 400)
    script = Script(clock, {"a.test": [fail(status, code)] * 20})
    for _ in range(20):
        call(core, script)
    state = core.store.load(["a"])["a"]
    assert (state.status, state.consecutive, state.window) == ("closed", 0, ())
    assert len(script.sent) == 20


def test_a_401_cools_the_deployment_down_for_ten_minutes(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY)
    script = Script(clock, {"a.test": [fail(401, "invalid_key"), ok()], "b.test": [ok()] * 3})
    call(core, script)
    clock.advance(599)
    assert call(core, script)[0].deployment == "b"
    clock.advance(2)
    assert call(core, script)[0].deployment == "a"
    health = core.health_report(core.store.load(["a", "b"]))["a"]
    assert health.recent_errors == {"authentication": 1}


def test_a_429_retry_after_cools_down_other_calls_until_then(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=40), ok()], "b.test": [ok()] * 3})
    call(core, script)
    clock.advance(30)
    assert call(core, script)[0].deployment == "b"
    clock.advance(11)
    assert call(core, script)[0].deployment == "a"


def test_the_call_that_got_the_429_may_still_retry_there_after_waiting(make_core, clock):
    policy = turnout.RetryPolicy(max_retries=1, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy)
    script = Script(clock, {"a.test": [fail(429, "slow_down", retry_after=3), ok()]})
    response, _ = call(core, script)
    assert kinds(response.attempts) == [("a", "rate_limited"), ("a", None)]
    assert script.sleeps == [3.0]


def test_a_retry_does_not_wait_out_a_breaker_when_a_fallback_can_answer_now(make_core, clock):
    """The retry layer never waits on a deployment the router has set aside (here the
    failure itself trips the breaker) while another can be tried at once."""
    config = BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    policy = turnout.RetryPolicy(max_retries=2, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a"), deployment("b")], retry_policy=policy, breaker=config)
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [ok()]})
    response, _ = call(core, script, deadline=60.0)
    assert kinds(response.attempts) == [("a", "unavailable"), ("b", None)]
    assert script.sleeps == []
    assert response.attempts[0].decision == "fallback"
    assert response.attempts[0].reason == "set aside for 30.0 s, longer than a fallback"


def test_a_retry_waits_out_a_breaker_when_nothing_else_can_answer(make_core, clock):
    config = BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    policy = turnout.RetryPolicy(max_retries=2, base=0.1, cap=0.1, jitter="none")
    core = make_core([deployment("a")], retry_policy=policy, breaker=config)
    script = Script(clock, {"a.test": [fail(503, "overloaded"), ok()]})
    response, _ = call(core, script, deadline=60.0)
    assert kinds(response.attempts) == [("a", "unavailable"), ("a", None)]
    assert script.sleeps == [pytest.approx(30.0, abs=0.1)]


def test_everything_open_raises_no_healthy_deployment_with_retry_after(make_core, clock):
    config = BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY, breaker=config)
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [fail(503, "overloaded")]})
    call(core, script)
    clock.advance(5)
    # Both reopen in 25 s, after this call's 10 s deadline: nothing to wait for.
    error, _ = call(core, script, deadline=10.0)
    assert isinstance(error, turnout.NoHealthyDeploymentError)
    assert error.retry_after == pytest.approx(25.0, abs=0.1)
    assert error.attempts == ()
    # It names each deployment, why it is set aside and until when.
    assert set(error.reasons) == {"a", "b"}
    assert error.reasons["a"].startswith("breaker open for 25.0 s more (until ")
    assert "a: breaker open for 25.0 s more" in str(error)
    assert "the call's deadline (in 10.0 s)" in str(error)


def test_when_every_deployment_is_set_aside_the_call_waits_for_the_first_within_its_deadline(
    make_core, clock
):
    config = BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY, breaker=config)
    script = Script(clock, {"a.test": [fail(503, "overloaded"), ok()], "b.test": [fail(503, "overloaded")]})
    call(core, script)
    clock.advance(5)
    response, _ = call(core, script, deadline=60.0)
    assert response.content == "hello"
    assert script.sleeps == [pytest.approx(25.0, abs=0.1)]
    assert kinds(response.attempts) == [("a", None)]
    assert response.attempts[0].waited == pytest.approx(25.0, abs=0.1)


def test_wait_for_healthy_waits_within_the_deadline(make_core, clock):
    config = BreakerConfig(consecutive_failures=1, open_for=30.0, jitter=0.0)
    core = make_core([deployment("a")], retry_policy=NO_RETRY, breaker=config, wait_for_healthy=True)
    script = Script(clock, {"a.test": [fail(503, "overloaded"), ok("after the wait")]})
    call(core, script)
    response, _ = call(core, script)
    assert response.content == "after the wait"
    assert script.sleeps == [pytest.approx(30.0, abs=0.1)]
    # ...but never past the deadline.
    call(core, Script(clock, {"a.test": [fail(503, "overloaded")]}))
    error, _ = call(core, Script(clock, {}), deadline=5.0)
    assert isinstance(error, turnout.NoHealthyDeploymentError)


def test_the_retry_budget_bounds_attempts_when_upstreams_fail_broadly(make_core, clock):
    budget = RetryBudget(ratio=0.2, burst=10.0)
    policy = turnout.RetryPolicy(max_retries=3, base=0.001, cap=0.001, jitter="none")
    breaker = BreakerConfig(consecutive_failures=10**6, failure_rate=1.1)  # keep the breaker out of it
    deps = [deployment("a"), deployment("b")]
    core = make_core(deps, retry_policy=policy, budget=budget, breaker=breaker)
    script = Script(
        clock, {"a.test": [fail(503, "overloaded")] * 2000, "b.test": [fail(503, "overloaded")] * 2000}
    )
    calls = 200
    for _ in range(calls):
        call(core, script)
    # Without the budget: 8 attempts per call (4 on each deployment).
    assert len(script.sent) <= (1 + budget.ratio) * calls + budget.burst
    assert len(script.sent) >= calls


def test_rate_limit_headers_steer_the_next_call_elsewhere(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY)
    exhausted = ok("last one")
    exhausted = turnout.HTTPResponse(
        200,
        {**exhausted.headers, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"},
        exhausted.body,
    )
    script = Script(clock, {"a.test": [exhausted, ok()], "b.test": [ok()]})
    assert call(core, script)[0].deployment == "a"
    assert call(core, script)[0].deployment == "b"
    clock.advance(21)
    assert call(core, script)[0].deployment == "a"


def test_x_ratelimit_reset_as_unix_time(make_core, clock):
    core = make_core([deployment("a"), deployment("b")], retry_policy=NO_RETRY)
    reply = ok()
    reply = turnout.HTTPResponse(
        200,
        {**reply.headers, "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(clock()) + 60)},
        reply.body,
    )
    script = Script(clock, {"a.test": [reply], "b.test": [ok()]})
    call(core, script)
    health = core.health_report(core.store.load(["a", "b"]))["a"]
    assert health.exhausted_until == int(clock()) + 60
    assert not health.available


# -- strategies --------------------------------------------------------------------


def first_choices(core, script, n, model="r"):
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        response, _ = call(core, script, model=model)
        counts[response.attempts[0].deployment] += 1
    return counts


def test_weighted_spreads_by_weight(make_core, clock):
    deps = [deployment("a", weight=3.0), deployment("b", weight=1.0)]
    core = make_core(deps, {"r": {"deployments": ["a", "b"], "strategy": "weighted"}})
    script = Script(clock, {"a.test": [ok()] * 2000, "b.test": [ok()] * 2000})
    counts = first_choices(core, script, 2000)
    assert 0.71 < counts["a"] / 2000 < 0.79


def test_round_robin_alternates(make_core, clock):
    deps = [deployment("a"), deployment("b"), deployment("c")]
    core = make_core(deps, {"r": {"deployments": ["a", "b", "c"], "strategy": "round_robin"}})
    script = Script(clock, {h: [ok()] * 10 for h in ("a.test", "b.test", "c.test")})
    order = [call(core, script, model="r")[0].deployment for _ in range(6)]
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_least_latency_prefers_the_measured_fastest(make_core, clock):
    deps = [deployment("a"), deployment("b")]
    core = make_core(deps, {"r": {"deployments": ["a", "b"], "strategy": "least_latency"}})
    slow = Script(clock, {"a.test": [ok()]}, latency=0.5)
    call(core, slow, model="a")
    fast = Script(clock, {"b.test": [ok()]}, latency=0.05)
    call(core, fast, model="b")
    script = Script(clock, {"a.test": [ok()] * 10, "b.test": [ok()] * 10}, latency=0.05)
    assert first_choices(core, script, 10) == {"b": 10}


def test_least_busy_prefers_fewer_calls_in_flight(make_core, clock):
    deps = [deployment("a"), deployment("b")]
    core = make_core(deps, {"r": {"deployments": ["a", "b"], "strategy": "least_busy"}})
    core.store.seed({"a": turnout._health.evolve(core.store.load(["a"])["a"], inflight=3)})
    script = Script(clock, {"b.test": [ok()] * 5})
    assert first_choices(core, script, 5) == {"b": 5}


def test_lowest_cost_prefers_the_cheapest(make_core, clock):
    deps = [
        deployment("a", input_cost=5.0, output_cost=15.0),
        deployment("b", input_cost=0.5, output_cost=1.5),
    ]
    core = make_core(deps, {"r": {"deployments": ["a", "b"], "strategy": "lowest_cost"}})
    script = Script(clock, {"b.test": [ok()] * 5})
    assert first_choices(core, script, 5) == {"b": 5}


def test_every_strategy_skips_unhealthy_deployments(make_core, clock):
    for strategy in ("priority", "weighted", "round_robin", "least_latency", "least_busy", "lowest_cost"):
        deps = [deployment("a", input_cost=0.0), deployment("b", input_cost=9.0)]
        core = make_core(
            deps, {"r": {"deployments": ["a", "b"], "strategy": strategy}}, retry_policy=NO_RETRY
        )
        core.store.seed({"a": turnout._health.evolve(DeploymentState(), cooldown_until=clock() + 100)})
        script = Script(clock, {"b.test": [ok()] * 10})
        assert first_choices(core, script, 10) == {"b": 10}, strategy


# -- introspection and concurrency ---------------------------------------------------


def test_router_health_reports_each_deployment(plugins):
    transport = mock_transport(
        {"a.test": AcmeEmulator(), "b.test": AcmeEmulator()},
        lambda r: Fault(error="invalid_key") if r.headers.get("host") == "a.test" else None,
    )
    with turnout.Router([deployment("a"), deployment("b")], plugins=plugins, transport=transport) as router:
        router.chat([{"role": "user", "content": "x"}])
        health = router.health()
    assert set(health) == {"a", "b"}
    assert (health["a"].available, health["a"].cooldown_reason) == (False, "authentication")
    assert health["a"].recent_errors == {"authentication": 1}
    assert (health["b"].status, health["b"].available, health["b"].inflight) == ("closed", True, 0)
    assert health["b"].latency is not None


def failing_once_transport() -> httpx.MockTransport:
    body = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return httpx.Response(500, json={"error": {"message": "down"}})
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def test_threads_sharing_one_router_lose_no_updates(plugins):
    breaker = BreakerConfig(consecutive_failures=10**6, failure_rate=1.1)
    budget = RetryBudget(ratio=1.0, burst=10**6)
    router = turnout.Router(
        [deployment("a"), deployment("b")],
        plugins=plugins,
        transport=failing_once_transport(),
        retry_policy=NO_RETRY,
        breaker=breaker,
        budget=budget,
    )
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                assert router.chat([{"role": "user", "content": "x"}]).deployment == "b"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    health = router.health()
    assert health["a"].consecutive_failures == 200
    assert health["a"].inflight == health["b"].inflight == 0
    router.close()


def test_tasks_sharing_one_async_router_lose_no_updates(plugins):
    breaker = BreakerConfig(consecutive_failures=10**6, failure_rate=1.1)
    budget = RetryBudget(ratio=1.0, burst=10**6)

    async def main() -> dict:
        async with turnout.AsyncRouter(
            [deployment("a"), deployment("b")],
            plugins=plugins,
            transport=failing_once_transport(),
            retry_policy=NO_RETRY,
            breaker=breaker,
            budget=budget,
        ) as router:
            results = await asyncio.gather(
                *(router.chat([{"role": "user", "content": "x"}]) for _ in range(200))
            )
            assert {r.deployment for r in results} == {"b"}
            return await router.health()

    health = asyncio.run(main())
    assert health["a"].consecutive_failures == 200
    assert health["a"].inflight == health["b"].inflight == 0


def test_an_abandoned_stream_gives_back_its_place(plugins):
    transport = mock_transport({"a.test": AcmeEmulator()})
    with turnout.Router([deployment("a")], plugins=plugins, transport=transport) as router:
        with router.stream([{"role": "user", "content": "one two three four"}]) as stream:
            next(iter(stream))
            assert router.health()["a"].inflight == 1
        assert router.health()["a"].inflight == 0


def test_availability_is_pure_data():
    config = BreakerConfig()
    assert availability(DeploymentState(), 0.0, config) == (True, 0.0)
    assert availability(DeploymentState(cooldown_until=10.0), 5.0, config) == (False, 10.0)
    assert availability(
        DeploymentState(status="open", open_until=20.0, cooldown_until=10.0), 5.0, config
    ) == (
        False,
        20.0,
    )


def test_a_spent_budget_after_a_wait_for_a_failing_fallback_gives_up_with_the_last_error(make_core, clock):
    """Found by bench/resilience_sim.py: the primary fails, the fallback is set aside (its
    breaker open) and frees up within the deadline, so the call waits for it; after the
    wait the fallback is half-open (failing), which costs a retry token, and the budget
    has none. The call ends with the primary's error, every attempt recorded once."""
    config = BreakerConfig(consecutive_failures=1, open_for=2.0, jitter=0.0)
    core = make_core(
        [deployment("a"), deployment("b")],
        retry_policy=NO_RETRY,
        breaker=config,
        budget=RetryBudget(ratio=0.0, burst=0.0),
        wait_for_healthy=True,
    )
    error = turnout._errors.error_for(turnout.ErrorKind.SERVER_ERROR, "x")
    core.store.settle(Settle("b", Outcome.failure(error, clock(), rng=random.Random(1)), config))
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [ok()]})
    raised, _ = call(core, script)
    assert isinstance(raised, turnout.ServiceUnavailableError)
    assert script.sleeps == [pytest.approx(2.0, abs=0.1)]
    assert script.hosts == ["a.test"]  # b was never sent a request without a token
    assert [(a.deployment, a.decision) for a in raised.attempts] == [("a", "fallback")]


FIXED = turnout.RetryPolicy(max_retries=2, base=0.5, cap=0.5, jitter="none")


def test_a_retry_whose_breaker_opens_while_it_waits_is_not_sent_and_the_call_falls_back(make_core, clock):
    """The retry's place was claimed before its wait; another call trips the breaker
    meanwhile. The retry is not sent (found by bench/chaos: a dead upstream got five
    requests in the second after its trip); the attempt before it stands, noted once."""
    config = BreakerConfig(consecutive_failures=2, open_for=10.0, jitter=0.0)
    core = make_core([deployment("a"), deployment("b")], retry_policy=FIXED, breaker=config)
    script = Script(clock, {"a.test": [fail(503, "overloaded")], "b.test": [ok("from b")]})
    error = turnout._errors.error_for(turnout.ErrorKind.SERVER_ERROR, "x")
    script.on_sleep = lambda: core.store.settle(
        Settle("a", Outcome.failure(error, clock(), rng=random.Random(1)), config)
    )
    response, record = call(core, script)
    assert response.content == "from b"
    assert script.hosts == ["a.test", "b.test"]
    assert [(a.deployment, a.decision) for a in record.attempts] == [("a", "retry"), ("b", "done")]
    assert core.store.load(["a"])["a"].inflight == 0  # the retry's place was given back


def test_a_retry_whose_breaker_opens_while_it_waits_waits_for_the_probe_when_nothing_else_can(
    make_core, clock
):
    """One deployment; another call trips its breaker (open 1 s) during the retry's
    wait: the retry is not sent then, but waits out the open period (its token paid
    once) and goes as the half-open probe."""
    config = BreakerConfig(consecutive_failures=2, open_for=1.0, jitter=0.0)
    core = make_core(
        [deployment("a")], retry_policy=FIXED, breaker=config, budget=RetryBudget(ratio=0.0, burst=1.0)
    )
    script = Script(clock, {"a.test": [fail(503, "overloaded"), ok("the probe")]})
    error = turnout._errors.error_for(turnout.ErrorKind.SERVER_ERROR, "x")
    tripped: list[None] = []

    def meanwhile() -> None:
        if not tripped:  # once: during the first wait
            tripped.append(None)
            core.store.settle(Settle("a", Outcome.failure(error, clock(), rng=random.Random(1)), config))

    script.on_sleep = meanwhile
    response, record = call(core, script)
    assert response.content == "the probe"
    assert script.hosts == ["a.test", "a.test"]
    assert script.sleeps == [pytest.approx(0.5), pytest.approx(1.0, abs=0.05)]
    assert [(a.deployment, a.decision) for a in record.attempts] == [("a", "retry"), ("a", "done")]
    assert core.store.load(["a"])["a"].status == "closed"


def test_a_cooldown_begun_while_a_retry_waits_does_not_stop_it(make_core, clock):
    """Another call's 429 cools the deployment down for 1 s during the retry's wait:
    the retry, whose place was claimed and whose wait honours its own error, is sent."""
    core = make_core([deployment("a")], retry_policy=FIXED)
    script = Script(clock, {"a.test": [fail(503, "overloaded"), ok("sent as planned")]})
    limited = turnout._errors.error_for(turnout.ErrorKind.RATE_LIMITED, "slow down", retry_after=1.0)
    script.on_sleep = lambda: core.store.settle(
        Settle("a", Outcome.failure(limited, clock(), rng=random.Random(1)), core.breaker)
    )
    response, _ = call(core, script)
    assert response.content == "sent as planned"
    assert script.sleeps == [pytest.approx(0.5)]
