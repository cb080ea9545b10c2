"""The fake-gateway server itself: prefixes, real chunked streams, dropped
connections, fault profiles and scripts, the admin endpoints, seeded rates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import turnout
from turnout.emulation import Fault
from turnout.fake import FakeGateways, FaultProfile, fault_from_mapping, load_faults

from .conftest import KEYS, PROVIDERS

CHAT = {"model": "m", "messages": [{"role": "user", "content": "one two three four"}]}
AUTH = {"authorization": f"Bearer {KEYS['meshapi']}"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def mesh(fake: FakeGateways) -> str:
    return fake.base_url("meshapi") + "/v1/chat/completions"


def read_into(
    received: list[bytes], http: httpx.Client, url: str, payload: object, timeout: float = 5.0
) -> None:
    with http.stream("POST", url, json=payload, headers=AUTH, timeout=timeout) as response:
        assert response.status_code == 200
        received.extend(response.iter_raw())


def test_every_installed_provider_is_served_under_its_own_prefix(
    http: httpx.Client, fake: FakeGateways
) -> None:
    assert set(PROVIDERS) <= set(fake.providers)
    state = http.get(fake.root + "/_faults").json()
    assert set(PROVIDERS) <= set(state["providers"])
    for provider in PROVIDERS:
        assert fake.url(provider) == f"{fake.root}/{provider}"
        assert state["providers"][provider]["base_url"] == fake.base_url(provider)
    assert fake.base_url("mume").endswith("/mume/api/v1")
    assert fake.base_url("mythicdot").endswith("/mythicdot/v1")
    assert fake.base_url("litellm").endswith("/litellm/api")
    missing = http.get(fake.root + "/nowhere/v1/chat/completions")
    assert missing.status_code == 404
    assert "meshapi" in missing.json()["detail"]


def test_each_prefix_speaks_its_gateways_wire_format(http: httpx.Client, fake: FakeGateways) -> None:
    # The same missing key, five different answers: each emulator's own envelope.
    body = http.post(mesh(fake), json=CHAT).json()
    assert body["error"]["code"] == "unauthorized"
    jobs = http.post(fake.base_url("litellm") + "/jobs/create-and-call", json=CHAT)
    assert jobs.status_code == 401
    assert "detail" in jobs.json()
    execution = http.post(
        fake.base_url("modelroute") + "/v1/executions",
        json={"model": "m", "input": {"messages": CHAT["messages"]}},
        headers={"authorization": f"Bearer {KEYS['modelroute']}"},
    )
    assert execution.status_code == 202
    assert execution.json()["status"] == "PENDING"
    assert fake.requests("meshapi") == 1
    assert fake.requests("litellm") == 1
    assert fake.requests("modelroute") == 1
    assert fake.requests("mume") == 0


def test_streams_are_chunked_and_written_chunk_by_chunk(http: httpx.Client, fake: FakeGateways) -> None:
    fake.set_faults("meshapi", {"chunk_delay": 0.02})
    pieces = []
    with http.stream("POST", mesh(fake), json={**CHAT, "stream": True}, headers=AUTH) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        pieces = list(response.iter_raw())
    # echo: / one / two / three / four / finish / [DONE], each its own write.
    assert len(pieces) >= 7
    assert pieces[-1] == b"data: [DONE]\n\n"


def test_drop_after_really_cuts_the_connection_mid_body(http: httpx.Client, fake: FakeGateways) -> None:
    fake.script("meshapi", Fault(drop_after=2))
    received: list[bytes] = []
    with pytest.raises(httpx.RemoteProtocolError):
        read_into(received, http, mesh(fake), {**CHAT, "stream": True})
    assert b"".join(received).count(b"data: ") == 2
    # The server is fine afterwards.
    assert http.post(mesh(fake), json=CHAT, headers=AUTH).status_code == 200


def test_html_and_malformed_faults(http: httpx.Client, fake: FakeGateways) -> None:
    fake.script("meshapi", Fault(html=502), Fault(malformed=True), None)
    page = http.post(mesh(fake), json=CHAT, headers=AUTH)
    assert page.status_code == 502
    assert page.headers["content-type"] == "text/html"
    assert b"<html>" in page.content
    odd = http.post(mesh(fake), json=CHAT, headers=AUTH)
    assert odd.status_code == 200
    assert "choices" not in odd.json()
    assert http.post(mesh(fake), json=CHAT, headers=AUTH).json()["choices"]
    log = fake.log("meshapi")
    assert [s.status for s in log] == [502, 200, 200]
    assert [s.scripted for s in log] == [True, True, True]
    assert log[0].fault == "HTML 502 page"


def test_a_slow_first_byte_is_a_read_timeout_after_the_headers(
    http: httpx.Client, fake: FakeGateways
) -> None:
    fake.script("meshapi", Fault(first_byte_delay=3.0))
    received: list[bytes] = []
    with pytest.raises(httpx.ReadTimeout):
        read_into(received, http, mesh(fake), CHAT, timeout=0.3)
    assert received == []


def test_errors_render_in_the_providers_own_words_with_retry_after(
    http: httpx.Client, fake: FakeGateways
) -> None:
    fake.script("meshapi", Fault(error="rate_limited", retry_after=2))
    response = http.post(mesh(fake), json=CHAT, headers=AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = turnout.normalize_error("meshapi", status=429, headers=response.headers, body=response.content)
    assert isinstance(error, turnout.RateLimitError)
    assert error.retry_after == 2


# -- the admin endpoints ---------------------------------------------------------


def test_admin_endpoint_sets_shows_and_clears_a_profile(http: httpx.Client, fake: FakeGateways) -> None:
    admin = fake.root + "/_faults/mume"
    set_ = http.post(admin, json={"errors": {"rate_limited": 1.0}, "retry_after": 0.5})
    assert set_.status_code == 200
    assert set_.json()["faults"]["errors"] == {"rate_limited": 1.0}
    assert fake.faults("mume").errors == {"rate_limited": 1.0}
    url = fake.base_url("mume") + "/chat/completions"
    limited = http.post(url, json=CHAT, headers={"authorization": "Bearer k"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "0.5"
    assert http.get(admin).json()["requests"] == 1
    assert http.delete(admin).status_code == 200
    assert http.post(url, json=CHAT, headers={"authorization": "Bearer k"}).status_code == 200


def test_admin_endpoint_scripts_the_next_responses(http: httpx.Client, fake: FakeGateways) -> None:
    script = fake.root + "/_faults/meshapi/script"
    answer = http.post(script, json=[{"error": "unavailable"}, None, {"html": 504}])
    assert answer.status_code == 200
    assert answer.json()["scripted"] == 3
    statuses = [http.post(mesh(fake), json=CHAT, headers=AUTH).status_code for _ in range(4)]
    assert statuses == [503, 200, 504, 200]
    assert http.post(script, json={"faults": [{"drop_after": 1}]}).json()["scripted"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/_faults/meshapi", b"{not json", 400),
        ("POST", "/_faults/meshapi", b'{"errors": {"rate_limited": 2}}', 400),
        ("POST", "/_faults/meshapi", b'{"error_rate": 0.1}', 400),
        ("POST", "/_faults/meshapi", b'{"errors": {"no_such_error": 0.1}}', 400),
        ("POST", "/_faults/meshapi/script", b'[{"eror": "x"}]', 400),
        ("POST", "/_faults/meshapi/script", b'{"error": "x"}', 400),
        ("POST", "/_faults/nowhere", b"{}", 404),
        ("PATCH", "/_faults/meshapi", b"{}", 405),
    ],
)
def test_admin_endpoint_refuses_bad_input(
    http: httpx.Client, fake: FakeGateways, method: str, path: str, body: bytes, status: int
) -> None:
    response = http.request(method, fake.root + path, content=body)
    assert response.status_code == status
    assert response.json()["detail"]
    assert fake.faults("meshapi") == FaultProfile()


# -- profiles, seeds, files ------------------------------------------------------


def test_seeded_rates_are_reproducible(http: httpx.Client, fake: FakeGateways) -> None:
    def run() -> list[int]:
        fake.reset()
        fake.set_faults("meshapi", {"errors": {"unavailable": 0.3}, "html": {"502": 0.2}})
        return [http.post(mesh(fake), json=CHAT, headers=AUTH).status_code for _ in range(25)]

    first, second = run(), run()
    assert first == second
    assert {200, 503, 502} <= set(first)
    assert fake.requests("meshapi") == 25


def test_a_profile_draws_each_fault_kind() -> None:
    import random

    profile = FaultProfile.from_mapping(
        {
            "errors": {"rate_limited": 0.2},
            "html": {"502": 0.2},
            "malformed": 0.2,
            "stream_errors": {"server_error": 0.3},
            "drops": 0.3,
            "drop_after": 3,
            "retry_after": [1, 2],
            "latency": 0.01,
        }
    )
    rng = random.Random(5)
    faults = [profile.draw(rng) for _ in range(400)]
    assert any(f.html == 502 for f in faults)
    assert {f.retry_after for f in faults if f.error == "rate_limited"} == {1.0, 2.0}
    assert any(f.malformed for f in faults)
    assert any(f.stream_error == "server_error" for f in faults)
    assert any(f.drop_after == 3 for f in faults)
    assert all(f.latency == 0.01 for f in faults)


def test_faults_load_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "faults.toml"
    toml.write_text(
        'seed = 9\n["*"]\nlatency = 0.01\n[meshapi]\nerrors = { rate_limited = 0.2, unavailable = 0.1 }\n'
        'retry_after = [1, 2]\nhtml = { "502" = 0.05 }\n'
    )
    config = load_faults(toml)
    assert config.seed == 9
    assert config.profiles["meshapi"].errors == {"rate_limited": 0.2, "unavailable": 0.1}
    assert config.profiles["meshapi"].html == {502: 0.05}
    assert config.profiles["*"].latency == 0.01
    data = tmp_path / "faults.json"
    data.write_text(json.dumps({"mume": {"drops": 0.5, "drop_after": 2}}))
    assert load_faults(data).profiles["mume"].drops == 0.5
    fake = FakeGateways(toml)
    assert fake.seed == 9
    assert fake.faults("meshapi").retry_after == (1.0, 2.0)
    assert fake.faults("mume").latency == 0.01  # "*": defaults for every provider...
    assert fake.faults("meshapi").latency == 0.01  # ...under its own table's keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[meshapi]\nerrors = { rate_limited = 1.5 }\n", "meshapi.errors.rate_limited"),
        ("[meshapi]\nlatncy = 1\n", "meshapi.latncy"),
        ("[nowhere]\nlatency = 1\n", "nowhere"),
        ("[meshapi]\nerrors = { not_an_error = 0.1 }\n", "meshapi.errors.not_an_error"),
        ("[meshapi]\nerrors = { unavailable = 0.7 }\nmalformed = 0.5\n", "add up"),
        ("seed = 'x'\n", "seed"),
        ("[meshapi\n", "invalid TOML"),
    ],
)
def test_bad_faults_are_config_errors_naming_the_path(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(text)
    with pytest.raises(turnout.ConfigError, match=message.replace(".", r"\.")):
        FakeGateways(path)


@pytest.mark.parametrize(
    ("text", "path", "value", "message"),
    [
        (
            "[meshapi]\nlatncy = 1\n",
            "meshapi.latncy",
            None,
            "meshapi.latncy: unknown key; did you mean 'latency'?",
        ),
        (
            "[meshapi]\nerrors = { rate_limited = 1.5 }\n",
            "meshapi.errors.rate_limited",
            1.5,
            "meshapi.errors.rate_limited: must be a rate between 0 and 1 (got 1.5)",
        ),
        ("[meshapi]\nerrors = 3\n", "meshapi.errors", 3, "meshapi.errors: expected a table (got 3)"),
        ("meshapi = 3\n", "meshapi", 3, "meshapi: expected a table (got 3)"),
        (
            '[meshapi]\nhtml = { "302" = 0.1 }\n',
            "meshapi.html.302",
            "302",
            "meshapi.html.302: must be an HTTP error status (400-599) (got '302')",
        ),
        (
            "[meshapi]\nretry_after = [1, -2]\n",
            "meshapi.retry_after[1]",
            -2,
            "meshapi.retry_after[1]: must be a number of seconds (>= 0) (got -2)",
        ),
        (
            "[meshapi]\nretry_after = []\n",
            "meshapi.retry_after",
            [],
            "meshapi.retry_after: must not be empty (got [])",
        ),
        (
            "[mume]\ndrop_after = 1.5\n",
            "mume.drop_after",
            1.5,
            "mume.drop_after: expected an integer (got 1.5)",
        ),
        (
            "[mume]\nmalformed = true\n",
            "mume.malformed",
            True,
            "mume.malformed: expected a number (got True)",
        ),
        ('seed = "x"\n', "seed", "x", "seed: expected an integer (got 'x')"),
        ('["*"]\nlatency = -1\n', "*.latency", -1, "*.latency: must be a number of seconds (>= 0) (got -1)"),
    ],
)
def test_fault_file_errors_name_the_path_the_value_and_a_near_key(
    tmp_path: Path, text: str, path: str, value: object, message: str
) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text(text)
    with pytest.raises(turnout.ConfigError) as info:
        load_faults(faults)
    assert (info.value.path, info.value.value, str(info.value)) == (path, value, message)


def test_scripted_faults_are_checked_the_same_way(http: httpx.Client, fake: FakeGateways) -> None:
    with pytest.raises(turnout.ConfigError) as info:
        fake.script("meshapi", None, {"eror": "rate_limited"})
    assert str(info.value) == "script[1].eror: unknown key; did you mean 'error'?"
    with pytest.raises(turnout.ConfigError) as info:
        fake.script("meshapi", {"html": 200})
    assert str(info.value) == "script[0].html: must be an HTTP error status (400-599) (got 200)"
    answer = http.post(fake.root + "/_faults/meshapi/script", json=[{"retry_after": -1, "error": "x"}])
    assert answer.status_code == 400
    assert answer.json()["detail"] == "script[0].retry_after: must be a number of seconds (>= 0) (got -1)"
    assert fake.pending("meshapi") == 0


def test_a_null_field_of_a_scripted_fault_keeps_its_default() -> None:
    fault = fault_from_mapping({"error": "rate_limited", "retry_after": None, "malformed": None})
    assert fault == Fault(error="rate_limited")


def test_the_base_path_is_what_the_emulator_says(http: httpx.Client) -> None:
    from turnout_litellm.emulator import LiteLLMEmulator
    from turnout_meshapi.emulator import MeshAPIEmulator

    class Elsewhere(MeshAPIEmulator):
        base_path = "/gateway/v2"

    assert LiteLLMEmulator.base_path == "/api"  # self-hosted: no default base URL says it
    assert MeshAPIEmulator.base_path is None  # the provider's default base URL says it
    with FakeGateways(emulators={"meshapi": Elsewhere(), "litellm": LiteLLMEmulator()}) as fake:
        assert fake.base_url("meshapi") == fake.root + "/meshapi/gateway/v2"
        assert fake.base_url("litellm") == fake.root + "/litellm/api"
        url = fake.base_url("meshapi") + "/v1/chat/completions"
        assert http.post(url, json=CHAT, headers=AUTH).json()["choices"][0]["message"]["content"]


def test_the_context_manager_starts_and_stops_a_server_on_a_free_port() -> None:
    with FakeGateways(emulators={}) as fake:
        root = fake.root
        assert httpx.get(root + "/_faults").json() == {"seed": None, "providers": {}}
    with pytest.raises(httpx.ConnectError):
        httpx.get(root + "/_faults")


# -- the testing kit's fixture (turnout[testing], pytest11) ----------------------------


def test_the_fake_gateways_fixture_serves_every_installed_emulator(fake_gateways: FakeGateways) -> None:
    assert set(PROVIDERS) <= set(fake_gateways.providers)
    fake_gateways.script("meshapi", Fault(error="rate_limited", retry_after=0.01))
    deployment = turnout.Deployment(
        "mesh",
        "meshapi",
        "openai/gpt-4o-mini",
        api_key=KEYS["meshapi"],
        base_url=fake_gateways.base_url("meshapi"),
    )
    with turnout.Router([deployment]) as router:
        response = router.chat([{"role": "user", "content": "hi"}])
    assert [a.error.kind if a.error else None for a in response.attempts] == ["rate_limited", None]
    assert fake_gateways.requests("meshapi") == 2


def test_the_fake_gateways_fixture_is_reset_for_each_test(fake_gateways: FakeGateways) -> None:
    # The test above (run first, as pytest runs a module in order) left two requests.
    assert fake_gateways.requests("meshapi") == 0
    assert fake_gateways.pending("meshapi") == 0
