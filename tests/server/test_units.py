"""The server's pure parts, in process: the envelope table, keys, settings, the wire
shapes, the drain gate; and `import turnout` not loading any of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import turnout
from tests.core.test_import import probe
from turnout import ChatChunk, ChatResponse, ErrorKind, ToolCall, ToolCallDelta, Usage
from turnout._errors import KIND_RULES, error_for
from turnout.server.auth import Keys
from turnout.server.errors import KIND_REPLIES, Scrubber, from_router
from turnout.server.gate import Gate
from turnout.server.settings import Settings
from turnout.server.shapes import BadInput, CallArgs, ChunkWriter, completion

DEPLOYMENT = '[[deployments]]\nname = "a"\nprovider = "meshapi"\nmodel = "m"\napi_key = "rsk_x"\n'


def test_import_turnout_loads_no_server() -> None:
    heavy = ("turnout.server", "starlette", "prometheus_client", "uvicorn")
    found = f"[m for m in {heavy!r} if m in sys.modules]"
    code = f"import json, sys, turnout; turnout.Router; print(json.dumps({found}))"
    assert probe(code) == []


# -- the envelope ------------------------------------------------------------------------


def test_every_kind_has_a_reply_and_client_kinds_keep_their_usual_status() -> None:
    assert set(ErrorKind) <= set(KIND_REPLIES)
    usual = {"authentication": 401, "permission_denied": 403, "insufficient_credits": 402, "not_found": 404}
    usual |= {"bad_request": 400, "validation": 422, "rate_limited": 429, "unavailable": 503}
    for kind, status in usual.items():
        assert KIND_REPLIES[kind].status == status
    # A kind the router may retry is a 5xx or 429; one it never retries is a 4xx.
    for kind, rule in KIND_RULES.items():
        status = KIND_REPLIES[kind].status
        assert (status >= 500 or status == 429) if rule.health_failure else 400 <= status < 500


def test_a_router_error_carries_its_wait_attempts_and_no_upstream_key() -> None:
    error = error_for(
        ErrorKind.RATE_LIMITED,
        "key rsk_upstream_secret is over its limit",
        retry_after=1.2,
        deployment="a",
        code="rate_limit_exceeded",
    )
    error.attempts = (turnout.Attempt("a", "meshapi", error, 0.01, decision="give_up", reason="429"),)
    reply = from_router(error, request_id="req_1", scrub=Scrubber(["rsk_upstream_secret", None]))
    headers = dict(reply.headers)
    assert reply.status == 429
    assert headers["retry-after"] == "2"
    assert headers["retry-after-ms"] == "1200"
    assert headers["x-should-retry"] == "false"
    body = json.loads(reply.body)["error"]
    assert body["code"] == "rate_limited"
    assert body["type"] == "rate_limit_error"
    assert "rsk_upstream_secret" not in reply.body.decode()
    assert body["turnout"]["attempts"] == [
        {"deployment": "a", "kind": "rate_limited", "decision": "give_up", "reason": "429"}
    ]
    assert reply.frame().startswith(b"data: {")
    assert reply.frame().endswith(b"\n\n")


def test_no_healthy_deployment_is_a_503_with_the_reasons() -> None:
    error = turnout.NoHealthyDeploymentError(
        "none", route="r", retry_after=9.5, reasons={"a": "breaker open"}
    )
    reply = from_router(error, request_id="req_1", scrub=Scrubber([]))
    assert reply.status == 503
    assert dict(reply.headers)["retry-after"] == "10"
    assert json.loads(reply.body)["error"]["turnout"]["reasons"] == {"a": "breaker open"}


DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def test_the_docs_table_of_codes_is_the_servers() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \| `(\w+)` \|$", DOCS.read_text(), re.MULTILINE)
    assert {code: (int(status), kind) for code, status, kind in rows} == {
        str(code): (reply.status, reply.type) for code, reply in KIND_REPLIES.items()
    }


def test_the_docs_configuration_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = re.search(r"```toml\n(deadline = 120.0.*?)```", DOCS.read_text(), re.DOTALL)
    assert block is not None
    for name in ("TURNOUT_SERVER_KEY", "MESHAPI_API_KEY", "MUME_API_KEY"):
        monkeypatch.setenv(name, f"sk-{name.lower()}")
    path = tmp_path / "turnout.toml"
    path.write_text(block.group(1))
    settings = Settings.load(path)
    assert (settings.max_body, settings.grace_period) == (4194304, 30.0)
    assert settings.keys.check(b"Bearer sk-turnout_server_key") is None


# -- keys and settings --------------------------------------------------------------------


def test_keys_accept_only_a_configured_bearer_key() -> None:
    keys = Keys([turnout.Secret("sk-one"), turnout.Secret("sk-two")])
    assert keys.check(b"Bearer sk-one") is None
    assert keys.check(b"bearer sk-two") is None
    assert keys.check(b"Bearer sk-one2") == "incorrect API key"
    assert keys.check(b"Basic c2stb25l") is not None
    assert keys.check(None) is not None
    assert "sk-one" not in repr(keys)
    assert Keys([], open=True).check(None) is None
    with pytest.raises(ValueError, match="no API keys"):
        Keys([])


def write(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "turnout.toml"
    path.write_text(f"{DEPLOYMENT}\n[server]\n{server}\n")
    return path


@pytest.mark.parametrize(
    ("server", "needle"),
    [
        ('api_keys = ["env:TURNOUT_NOT_SET_ANYWHERE"]', "server.api_keys[0]: environment variable"),
        ('api_keys = ["sk-a", " "]', "server.api_keys[1]: an API key cannot be empty"),
        ("api_keys = []", "server.api_keys: no API keys"),
        ('api_keys = ["sk-a"]\nmax_body = 0', "server.max_body: must be a positive number of bytes"),
        ('api_keys = ["sk-a"]\ngrace_period = -1.0', "server.grace_period"),
        ('api_keys = ["sk-a"]\napi_key = "x"', "did you mean 'api_keys'?"),
    ],
)
def test_a_bad_server_table_is_a_config_error_naming_the_path(
    tmp_path: Path, server: str, needle: str
) -> None:
    with pytest.raises(turnout.ConfigError, match=None) as caught:
        Settings.load(write(tmp_path, server))
    assert needle in str(caught.value)


def test_settings_read_the_environment_and_the_router_ignores_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_UNIT_KEY", "sk-from-env")
    path = write(tmp_path, 'api_keys = ["env:TURNOUT_UNIT_KEY"]\nmax_body = 1024\ngrace_period = 2.5')
    settings = Settings.load(path)
    assert (settings.max_body, settings.grace_period) == (1024, 2.5)
    assert settings.keys.check(b"Bearer sk-from-env") is None
    assert Settings.load(path, grace_period=0.0).grace_period == 0.0
    assert Settings.load(write(tmp_path, ""), no_auth=True).keys.open
    with turnout.Router.from_config(path) as router:
        assert list(router.deployments) == ["a"]


# -- shapes --------------------------------------------------------------------------------


def test_a_body_becomes_a_call_with_every_parameter() -> None:
    args = CallArgs.parse(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
            "metadata": {"a": 1},
            "timeout": 5,
        }
    )
    assert (args.model, args.stream, args.include_usage) == ("chat", True, True)
    assert args.params == {"stream_options": {"include_usage": True}, "temperature": 0}
    assert args.extra_body == {"metadata": {"a": 1}, "timeout": 5}
    for bad, param in [
        ({"model": 3}, "model"),
        ({"n": 2}, "n"),
        ({"stream": True, "logprobs": True}, "logprobs"),
    ]:
        with pytest.raises(BadInput) as caught:
            CallArgs.parse(bad)
        assert caught.value.param == param


def test_a_response_becomes_a_chat_completion() -> None:
    response = ChatResponse(
        "",
        "tool_calls",
        Usage(10, 4, 14, cached_tokens=2, reasoning_tokens=1),
        model="m-1",
        request_id="chatcmpl-x",
        tool_calls=(ToolCall("call_1", "f", '{"a":1}'),),
        message={"role": "assistant", "content": None, "annotations": []},
        raw={"choices": [{"logprobs": {"content": []}}], "system_fingerprint": "fp"},
    )
    body = completion(response, fallback_id="chatcmpl-fallback", model="chat", created=7)
    assert body["id"] == "chatcmpl-x"
    assert body["model"] == "m-1"
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "annotations": [],
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    assert choice["logprobs"] == {"content": []}
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}
    assert body["system_fingerprint"] == "fp"


def test_chunks_become_events_of_one_id_with_the_role_first() -> None:
    writer = ChunkWriter(fallback_id="chatcmpl-f", model="chat", created=7, include_usage=True)
    events = [
        writer.event(ChatChunk("", tool_calls=(ToolCallDelta(0, "call_1", "f", ""),), request_id="r1")),
        writer.event(ChatChunk("", tool_calls=(ToolCallDelta(0, arguments='{"a"'),), request_id="r1")),
        writer.event(ChatChunk("", usage=Usage(1, 2, 3))),
        writer.event(ChatChunk("", finish_reason="tool_calls")),
    ]
    assert events[2] is None  # usage alone waits for the usage chunk
    parsed = [json.loads(e[6:]) for e in events if e is not None]
    assert {p["id"] for p in parsed} == {"r1"}
    assert parsed[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"arguments": "", "name": "f"}}
        ],
    }
    assert parsed[1]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]
    }
    assert parsed[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert all(p["usage"] is None for p in parsed)
    last = json.loads(writer.usage_event(Usage(1, 2, 3))[6:])
    assert (last["choices"], last["usage"]["total_tokens"]) == ([], 3)


# -- the drain gate ---------------------------------------------------------------------------


async def test_the_gate_stops_when_nothing_is_in_flight_or_the_grace_period_is_over() -> None:
    now = [100.0]
    gate = Gate(5.0, clock=lambda: now[0])
    assert not gate.may_stop()
    gate.inflight = 1
    gate.drain()
    assert gate.draining
    assert not gate.may_stop()
    now[0] = 104.0
    assert not gate.may_stop()
    now[0] = 105.0
    assert gate.may_stop()
    assert gate.expired.done()
    idle = Gate(5.0)
    idle.drain()
    assert idle.may_stop()
    assert not idle.expired.done()
