"""`turnout.emulation.FaultScript`: the one scripted-fault source every test folder uses."""

from __future__ import annotations

import httpx

from turnout.emulation import EmulatedRequest, Fault, FaultScript, mock_transport

from .acme import AcmeEmulator

OOPS = Fault(error="oops")
SLOW = Fault(error="slow_down", retry_after=1)


def request(method: str = "POST", path: str = "/v1/chat", host: str = "a.test") -> EmulatedRequest:
    return EmulatedRequest(method, path, {"host": host}, host=host)


def test_faults_come_in_order_then_none() -> None:
    script = FaultScript(OOPS, None, SLOW)
    assert script.pending == 3
    assert [script(request()) for _ in range(5)] == [OOPS, None, SLOW, None, None]
    assert script.pending == 0
    assert len(script.requests) == 5


def test_an_empty_script_never_faults_but_records() -> None:
    script = FaultScript()
    assert script(request(path="/x")) is None
    assert [r.path for r in script.requests] == ["/x"]


def test_only_matching_requests_use_up_the_script() -> None:
    script = FaultScript(OOPS, SLOW, match=lambda r: r.method == "GET")
    answers = [script(request(method)) for method in ("POST", "GET", "POST", "GET", "GET")]
    assert answers == [None, OOPS, None, SLOW, None]
    assert [r.method for r in script.requests] == ["POST", "GET", "POST", "GET", "GET"]


def test_one_script_per_key() -> None:
    script = FaultScript.by(lambda r: r.host, {"a.test": [OOPS, None, OOPS], "b.test": [SLOW]})
    hosts = ["a.test", "b.test", "c.test", "b.test", "a.test", "a.test", "a.test"]
    answers = [script(request(host=host)) for host in hosts]
    assert answers == [OOPS, SLOW, None, None, None, OOPS, None]
    assert [r.host for r in script.requests] == hosts
    assert script.pending == 0


def test_it_drives_mock_transport() -> None:
    script = FaultScript(Fault(error="overloaded"))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(transport=mock_transport({"a.test": AcmeEmulator()}, script)) as client:
        first = client.post("https://a.test/v1/chat/completions", json=body)
        second = client.post("https://a.test/v1/chat/completions", json=body)
    assert (first.status_code, second.status_code) == (503, 200)
    assert first.json()["error"]["code"] == "overloaded"
    assert [r.host for r in script.requests] == ["a.test", "a.test"]
