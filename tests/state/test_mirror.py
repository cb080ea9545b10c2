"""The Redis scripts mirror the pure functions exactly: both run on the same inputs.

Each property writes generated records (and tokens) into a real Redis, makes the
step through `RedisStore` (arguments encoded, script run, reply decoded) and
through the pure function (`turnout._state.claim`, `turnout._health.settle`),
and compares every field, floats by `==`: the scripts must reach the same
doubles, in the same order of operations, and carry them across exactly.

Records are written in this version's encoding and in the previous version's
(cattrs, Python's `repr` floats): both read the same. Decoding is compared too,
on JSON documents of every shape (`decode_state` is the reference; strings are
free of lone surrogates, which lua-cjson refuses and Python accepts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout._budget import RetryBudget
from turnout._errors import ErrorKind
from turnout._flow import Claim, Settle
from turnout._health import BreakerConfig, DeploymentState, Outcome, settle
from turnout._redis_codec import COUNT_LIMIT, decode_state, decode_tokens, encode_state
from turnout._state import claim
from turnout.state import RedisStore

from .conftest import RedisServer

pytestmark = pytest.mark.redis

FUZZING = os.environ.get("TURNOUT_FUZZ") == "1"
MIRROR = settings(
    max_examples=2000 if FUZZING else 120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
NOW = 1_700_000_000.0
NAMES = ("a", "b", "c", "d")
KINDS = [kind.value for kind in ErrorKind]


def legacy(state: DeploymentState) -> bytes:
    """A record as the previous version wrote it (cattrs, defaults left out)."""
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn

    converter = cattrs.Converter()
    converter.register_unstructure_hook(
        DeploymentState,
        make_dict_unstructure_fn(DeploymentState, converter, _cattrs_omit_if_default=True),
    )
    return json.dumps(converter.unstructure(state), separators=(",", ":")).encode()


# -- strategies -------------------------------------------------------------------------

finite = {"allow_nan": False, "allow_infinity": False}
# Wall-clock times near now (17 significant digits: what a lossy encoding would round),
# and some far from it.
times = st.one_of(
    st.just(0.0),
    st.floats(-5000, 5000, **finite).map(lambda d: NOW + d),
    st.floats(0, 1e13, **finite),
)
durations = st.one_of(st.just(0.0), st.floats(0, 4000, **finite), st.floats(0, 1e-3, **finite))
# Counts stay below the limit even after one more (a record never counts two billion).
counts = st.one_of(st.integers(0, 30), st.integers(0, COUNT_LIMIT - 2))
texts = st.one_of(st.sampled_from(KINDS), st.text(max_size=12))

states = st.builds(
    DeploymentState,
    status=st.sampled_from(["closed", "open", "half_open"]),
    consecutive=counts,
    window=st.lists(st.booleans(), max_size=130).map(tuple),
    open_until=times,
    trips=st.one_of(st.integers(0, 12), st.integers(0, 2000)),
    probes=counts,
    probe_until=times,
    cooldown_until=times,
    cooldown_reason=texts,
    exhausted_until=times,
    inflight=counts,
    latency=st.none() | durations,
    errors=st.lists(texts, max_size=25).map(tuple),
)
breakers = st.builds(
    BreakerConfig,
    consecutive_failures=st.integers(1, 15),
    failure_rate=st.floats(0.01, 1.5, **finite),
    window=st.integers(1, 120),
    min_calls=st.integers(1, 120),
    open_for=st.floats(0.001, 1000, **finite),
    max_open=st.floats(0.001, 5000, **finite),
    jitter=st.floats(0, 1, **finite),
    probes=st.integers(1, 4),
    probe_timeout=st.floats(0.001, 1000, **finite),
    ewma_alpha=st.floats(0.001, 1, **finite),
)
# Failures that count for health most often: they are what trips a breaker.
outcomes = st.builds(
    Outcome,
    kind=st.sampled_from(["failure", "failure", "failure", "success", "release", "quota"]),
    at=times,
    latency=st.none() | durations,
    error=texts,
    health_failure=st.sampled_from([True, True, False]),
    cooldown=st.just(0.0) | durations,
    rate_limited=st.booleans(),
    retry_after=st.sampled_from([None, None, 0.0]) | durations,
    draw=st.floats(0, 1, exclude_max=True, **finite),
    exhausted_until=st.just(0.0) | times,
)
budgets = st.builds(
    RetryBudget, ratio=st.floats(0, 3, **finite), burst=st.one_of(st.just(10.0), st.floats(0, 30, **finite))
)
encodings = st.sampled_from([encode_state, legacy])


@st.composite
def claims(draw: st.DrawFn) -> tuple[dict[str, DeploymentState], float | None, Claim]:
    names = tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True)))
    candidates = tuple(draw(st.permutations(names))[: draw(st.integers(0, len(names)))])
    found = {name: draw(st.one_of(states, st.just(DeploymentState()))) for name in names}
    tokens = draw(st.none() | st.just(0.0) | st.just(1.0) | st.floats(0, 30, **finite))
    command = Claim(
        candidates,
        names,
        draw(times),
        draw(breakers),
        draw(budgets),
        deposit=draw(st.booleans()),
        spend=draw(st.sampled_from(["never", "always", "if_failing"])),
    )
    return found, tokens, command


# -- the mirror -------------------------------------------------------------------------


class Mirror:
    """A store and a plain client on one server, under a prefix of their own."""

    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.store = RedisStore(server.url, prefix=prefix, budget_start=7.5)
        self.client = server.client()

    def put(self, name: str, state: DeploymentState, encode: Callable[[DeploymentState], bytes]) -> None:
        self.client.set(self.store.key(name), encode(state))

    def stored(self, name: str) -> DeploymentState:
        return decode_state(self.client.get(self.store.key(name)))

    def tokens(self) -> float:
        return decode_tokens(self.client.get(self.store._core.layout.budget_key), self.store.budget_start)

    def set_tokens(self, tokens: float | None) -> None:
        key = self.store._core.layout.budget_key
        if tokens is None:
            self.client.delete(key)
        else:
            self.client.set(key, repr(tokens))


@pytest.fixture(scope="module")
def mirror(redis_server: RedisServer) -> Iterator[Mirror]:
    made = Mirror(redis_server, "mirror:")
    yield made
    made.store.close()
    made.client.close()


@MIRROR
@given(state=states, outcome=outcomes, breaker=breakers, encode=encodings)
def test_settle_in_redis_is_settle_in_python(
    mirror: Mirror,
    state: DeploymentState,
    outcome: Outcome,
    breaker: BreakerConfig,
    encode: Callable[[DeploymentState], bytes],
) -> None:
    mirror.put("a", state, encode)
    before, after = mirror.store.settle(Settle("a", outcome, breaker))
    assert before == state
    assert after == settle(state, outcome, breaker)
    assert mirror.stored("a") == after
    assert mirror.store.shared


@MIRROR
@given(case=claims(), encode=encodings)
def test_claim_in_redis_is_claim_in_python(
    mirror: Mirror,
    case: tuple[dict[str, DeploymentState], float | None, Claim],
    encode: Callable[[DeploymentState], bytes],
) -> None:
    found, tokens, command = case
    for name, state in found.items():
        mirror.put(name, state, encode)
    mirror.set_tokens(tokens)
    got = mirror.store.claim(command)
    left, expected = claim(found, mirror.store.budget_start if tokens is None else tokens, command)
    assert got == expected
    assert mirror.store._core.outage.seen_tokens == left
    assert mirror.tokens() == left
    assert {name: mirror.stored(name) for name in found} == expected.states
    assert mirror.store.shared


@MIRROR
@given(state=states, encode=encodings)
def test_a_record_reads_back_as_written(
    mirror: Mirror, state: DeploymentState, encode: Callable[[DeploymentState], bytes]
) -> None:
    mirror.put("a", state, encode)
    assert mirror.store.load(["a"]) == {"a": state}
    assert decode_state(encode(state)) == state


def test_a_plan_orders_from_the_states_last_read(mirror: Mirror) -> None:
    """The strategy runs in Python, on what the store last read; the script claims in
    that order (here: least busy first, which the last read says is `b`)."""
    mirror.put("a", DeploymentState(inflight=3), encode_state)
    mirror.put("b", DeploymentState(inflight=1), encode_state)
    mirror.store.load(["a", "b"])
    mirror.put("b", DeploymentState(inflight=5), encode_state)  # another process, since

    def least_busy(states: Any) -> list[str]:
        return sorted(states, key=lambda name: states[name].inflight)

    command = Claim((), ("a", "b"), NOW, BreakerConfig(), RetryBudget(), plan=least_busy)
    got = mirror.store.claim(command)
    assert (got.name, got.candidates) == ("b", ("b", "a"))
    assert got.states["b"].inflight == 6
    # The next plan sees what this claim read back: `a` is the less busy now.
    assert mirror.store.claim(command).candidates == ("a", "b")


# -- decoding ---------------------------------------------------------------------------

FIELD_NAMES = [
    "status", "consecutive", "window", "open_until", "trips", "probes", "probe_until",
    "cooldown_until", "cooldown_reason", "exhausted_until", "inflight", "latency", "errors",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 40),
    st.floats(),
    st.floats(-1e10, 1e10),
    st.text(max_size=8),
    st.sampled_from(["closed", "open", "half_open", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from([*FIELD_NAMES, "later_field"]), values, max_size=6),
    st.dictionaries(st.sampled_from(FIELD_NAMES), st.lists(st.booleans()) | st.lists(st.text()), max_size=3),
    values,
)


@MIRROR
@given(document=documents)
def test_the_script_reads_a_value_as_decode_state_does(mirror: Mirror, document: Any) -> None:
    raw = json.dumps(document).encode()
    mirror.client.set(mirror.store.key("a"), raw)
    assert mirror.store.load(["a"]) == {"a": decode_state(raw)}


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'"closed"',
        b"{}",
        b'{"status": "sideways"}',
        b'{"inflight": "many"}',
        b'{"inflight": 1.5}',
        b'{"inflight": -1}',
        b'{"inflight": 2147483648}',
        b'{"inflight": 5.0, "trips": 1e1}',
        b'{"open_until": 1e999}',
        b'{"open_until": NaN}',
        b'{"latency": null, "window": {}}',
        b'{"window": [true, 1]}',
        b'{"window": {"1": true}}',
        b'{"errors": ["server_error", null]}',
        b'{"cooldown_reason": "caf\xc3\xa9"}',
        b'{"cooldown_reason": "caf\xe9"}',
        b'{"cooldown_reason": "\xed\xa0\x80"}',
        b'{"cooldown_reason": "\xf4\x90\x80\x80"}',
        b"\xff\xfe",
        b'{"inflight": 1} trailing',
        b'{"open_until": 1700000000.1234567, "inflight": 2}',
    ],
)
def test_corrupt_foreign_and_edge_values_read_as_decode_state_reads_them(mirror: Mirror, raw: bytes) -> None:
    mirror.client.set(mirror.store.key("a"), raw)
    assert mirror.store.load(["a"]) == {"a": decode_state(raw)}


@MIRROR
@given(text=st.text(alphabet="0123456789.eE+-x ", max_size=8) | st.floats().map(repr))
def test_the_script_reads_the_budget_as_decode_tokens_does(mirror: Mirror, text: str) -> None:
    mirror.client.set(mirror.store._core.layout.budget_key, text)
    command = Claim((), ("a",), NOW, BreakerConfig(), RetryBudget())
    mirror.store.claim(command)
    assert mirror.store._core.outage.seen_tokens == decode_tokens(text.encode(), mirror.store.budget_start)
