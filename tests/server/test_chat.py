"""`turnout serve` driven by the official OpenAI SDK: the whole chat surface, plain and
streamed, fallback, errors in the envelope, keys, models, health and metrics.

One server for the module (routes `chat` = meshapi then mume, `solo` = mythicdot
alone; `limited` and `locked`, mythicdot deployments in no route, take a rate limit
and a wrong key, which set them aside), over the fake gateways of this process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.chat_tools import CLOCK, IMAGE, WEATHER
from tests.integration.chatkit import Wire
from tests.integration.conftest import KEYS, MODELS
from turnout._emulated_answers import REASONING_TOKENS, REFUSAL
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .serving import KEY, OTHER_KEY, ServeProcess, deployment, metric, server_config

PROVIDERS = ("meshapi", "mume", "mythicdot")
ROUTES = """
[routes]
chat = ["meshapi", "mume"]
solo = ["mythicdot"]
"""
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server(fake_server: FakeGateways, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    path = tmp_path_factory.mktemp("serve") / "turnout.toml"
    text = server_config(fake_server, PROVIDERS, ROUTES, "max_body = 65536")
    extra = deployment(fake_server, "limited", "mythicdot") + deployment(fake_server, "locked", "mythicdot")
    path.write_text(text + extra)
    process = ServeProcess(path).start()
    yield process
    assert process.stop() == 0, process.log()
    assert not any(key in process.log() for key in [*KEYS.values(), KEY, OTHER_KEY])


@pytest.fixture
def client(server: ServeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY) as sdk:
        yield sdk


# -- answers -------------------------------------------------------------------------


def test_a_chat_answers_in_openais_shape(client: openai.OpenAI, fake: FakeGateways) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    response = raw.parse()
    assert response.object == "chat.completion"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == "echo: hello there"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 3)
    assert response.usage.total_tokens == 8
    assert raw.headers["x-turnout-deployment"] == "meshapi"
    assert raw.headers["x-request-id"].startswith("req_")
    assert fake.counts()["meshapi"] == 1


def test_a_stream_sends_chunks_then_the_usage_then_done(server: ServeProcess, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 3)
    # Without include_usage, no usage at all; and the SSE ends with [DONE].
    _, events = server.events({"model": "chat", "messages": HELLO})
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in event for event in events)


def test_tools_plain_and_streamed_come_back_as_the_gateway_sent_them(client: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "Paris"}]
    plain = client.chat.completions.create(model="chat", messages=asked, tools=[WEATHER, CLOCK])
    message = plain.choices[0].message
    assert plain.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"tz": "Paris"}),
    ]
    # Streamed: assembled as the SDK users do it, from the pieces.
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model="chat", messages=asked, tools=[WEATHER, CLOCK], stream=True
    ):
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name if delta.function else None) or ""
            call["arguments"] += (delta.function.arguments if delta.function else None) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"tz": "Paris"}),
    ]
    assert all(c["id"].startswith("call_") for c in calls.values())
    # The tool results, sent back: the conversation goes on.
    history = [
        *asked,
        message.model_dump(exclude_none=True),
        *[{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in message.tool_calls],
    ]
    after = client.chat.completions.create(model="chat", messages=history, tools=[WEATHER, CLOCK])
    assert after.choices[0].message.content == "tool results: get_weather: sunny; get_time: sunny"


def test_content_parts_response_format_and_any_parameter_pass_through(
    client: openai.OpenAI, wire: Wire
) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]}]
    seen = client.chat.completions.create(model="solo", messages=parts)
    assert seen.choices[0].message.content == "echo: what is this? [image_url]"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    structured = client.chat.completions.create(
        model="solo",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        max_completion_tokens=50,
        reasoning_effort="low",
        metadata={"team": "blue"},
        extra_body={"deadline": "a gateway's own field"},
    )
    assert isinstance(json.loads(structured.choices[0].message.content or ""), dict)
    assert structured.usage is not None
    details = structured.usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens == REASONING_TOKENS
    sent = [json.loads(r.body) for r in wire.requests("mythicdot")][-1]
    assert sent["model"] == MODELS["mythicdot"]
    assert sent["reasoning_effort"] == "low"
    # Named like the router's own keywords, they are still the gateway's parameters.
    assert sent["metadata"] == {"team": "blue"}
    assert sent["deadline"] == "a gateway's own field"
    cut = client.chat.completions.create(model="solo", messages=HELLO, max_completion_tokens=1)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("echo: ", "length")
    refused = client.chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "refuse: x"}]
    )
    assert refused.choices[0].message.refusal == REFUSAL
    assert refused.choices[0].message.content is None


def test_a_failing_lead_falls_back_and_the_attempts_are_counted(
    server: ServeProcess, client: openai.OpenAI, fake: FakeGateways
) -> None:
    before = server.metrics()
    fake.script("meshapi", *[Fault(error="unavailable")] * 10)
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert raw.parse().choices[0].message.content == "echo: hello there"
    assert raw.headers["x-turnout-deployment"] == "mume"
    after = server.metrics()
    fell = metric(after, "turnout_attempts_total", deployment="meshapi", decision="fallback")
    assert fell - metric(before, "turnout_attempts_total", deployment="meshapi", decision="fallback") == 1
    done = metric(after, "turnout_attempts_total", deployment="mume", decision="done")
    assert done - metric(before, "turnout_attempts_total", deployment="mume", decision="done") == 1


# -- errors -------------------------------------------------------------------------


def test_a_gateway_error_is_the_envelope_with_its_kind_and_no_sdk_retry(
    server: ServeProcess, client: openai.OpenAI, fake: FakeGateways
) -> None:
    fake.script("mythicdot", *[Fault(error="unavailable", retry_after=0)] * 10)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="solo", messages=HELLO)
    error = caught.value
    assert error.status_code == 503
    assert error.code == "unavailable"
    assert error.type == "server_error"
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-request-id"].startswith("req_")
    body = error.body
    assert isinstance(body, dict)
    attempts = body["turnout"]["attempts"]
    assert attempts[-1]["decision"] == "give_up"
    # The SDK (max_retries=2) sent it once: the router had already retried.
    served = fake.counts()["mythicdot"]
    assert served == len(attempts)
    assert served > 1


def test_a_callers_mistake_is_a_400_and_sent_nowhere(client: openai.OpenAI, fake: FakeGateways) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=[])
    assert caught.value.code == "bad_request"
    assert "messages" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=HELLO, n=2)
    assert caught.value.param == "n"
    assert fake.counts()["meshapi"] == 0
    # The gateway's own 400 (a tool_choice naming no declared tool) comes back as it
    # said, status and kind, sent once.
    choice = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="solo", messages=HELLO, tools=[WEATHER], tool_choice=choice)
    assert caught.value.code == "bad_request"
    assert fake.counts()["mythicdot"] == 1


def test_an_unknown_model_is_a_404_naming_the_known_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert "chat, solo, meshapi, mume, mythicdot, limited, locked" in caught.value.message


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"model": "chat", "messages": HELLO, "stream": "yes"}).encode(), 400, "stream"),
        (b'{"model": "chat", "messages": [], "pad": "' + b"x" * 70_000 + b'"}', 413, "larger"),
    ],
)
def test_a_malformed_or_oversized_body_is_refused_in_the_envelope(
    server: ServeProcess, body: bytes, status: int, needle: str
) -> None:
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("key", [None, "sk-wrong", KEY + "x", KEY[:-1], KEY.upper()])
def test_a_missing_or_wrong_key_is_a_401(server: ServeProcess, key: str | None, fake: FakeGateways) -> None:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    for path in ("/chat/completions", "/models"):
        method = "POST" if path == "/chat/completions" else "GET"
        response = httpx.request(
            method, f"{server.base_url}{path}", json={"model": "chat", "messages": HELLO}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication"
        assert response.headers["x-should-retry"] == "false"
    with (
        openai.OpenAI(base_url=server.base_url, api_key=key or "none") as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.chat.completions.create(model="chat", messages=HELLO)
    assert fake.counts()["meshapi"] == 0


def test_both_configured_keys_are_accepted(server: ServeProcess) -> None:
    for key in (KEY, OTHER_KEY):
        with openai.OpenAI(base_url=server.base_url, api_key=key) as sdk:
            assert sdk.chat.completions.create(model="chat", messages=HELLO).choices[0].message.content


def test_upstream_keys_never_leave_the_server(server: ServeProcess, fake: FakeGateways) -> None:
    # A gateway that rejects its key echoes it; the answer, the models, the health and
    # the metrics never carry any upstream key.
    # (On `locked`: a wrong key sets it aside for ten minutes.)
    fake.script("mythicdot", Fault(error="authentication"))
    answers = [
        httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "locked", "messages": HELLO},
            headers={"authorization": f"Bearer {KEY}"},
        ).text,
        httpx.get(f"{server.base_url}/models", headers={"authorization": f"Bearer {KEY}"}).text,
        httpx.get(f"{server.root}/readyz").text,
        server.metrics(),
    ]
    assert '"authentication"' in answers[0]
    for text in answers:
        for secret in KEYS.values():
            assert secret not in text


# -- streams that fail ------------------------------------------------------------------


def test_a_stream_failing_before_its_first_chunk_is_a_real_http_error(
    client: openai.OpenAI, fake: FakeGateways
) -> None:
    # (On `limited`, which no other test uses: it cools down for the two minutes.)
    fake.script("mythicdot", *[Fault(error="rate_limited", retry_after=120)] * 3)
    with pytest.raises(openai.RateLimitError) as caught:
        list(client.chat.completions.create(model="limited", messages=HELLO, stream=True))
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limited"
    headers = caught.value.response.headers
    assert headers["retry-after"] == "120"
    assert headers["retry-after-ms"] == "120000"
    assert headers["x-should-retry"] == "false"
    assert fake.counts()["mythicdot"] == 1


def test_a_stream_failing_after_its_first_chunk_ends_with_one_error_frame(
    server: ServeProcess, client: openai.OpenAI, fake: FakeGateways
) -> None:
    fake.script("meshapi", Fault(drop_after=2))
    received: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model="chat", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as caught:
        read()
    assert "".join(received) == "echo: hello "
    assert caught.value.code == "stream_interrupted"
    # On the wire: the chunks, one error frame, and no [DONE].
    fake.script("meshapi", Fault(stream_error="upstream_error", stream_error_after=1))
    status, events = server.events({"model": "chat", "messages": HELLO})
    assert status == 200
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_error"
    assert [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]] == ["echo: "]


def abandoned(server: ServeProcess, stream: str) -> float:
    return metric(server.metrics(), "turnout_calls_total", route="mume", stream=stream, outcome="abandoned")


def wait_abandoned(server: ServeProcess, stream: str, before: float) -> str:
    """The metrics once the server has counted the call abandoned (it notices, closes the
    router's call, and the deployment's place is given back)."""
    for _ in range(100):
        if abandoned(server, stream) > before:
            break
        time.sleep(0.05)
    return server.metrics()


def test_a_client_that_leaves_mid_stream_abandons_the_call(server: ServeProcess, fake: FakeGateways) -> None:
    fake.set_faults("mume", {"chunk_delay": 0.3})
    before = abandoned(server, "true")
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json={"model": "mume", "messages": [{"role": "user", "content": "a b c d e f g"}], "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    ) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    text = wait_abandoned(server, "true", before)
    assert abandoned(server, "true") == before + 1
    assert metric(text, "turnout_deployment_inflight", deployment="mume") == 0


def test_a_client_that_leaves_before_the_answer_abandons_the_call(
    server: ServeProcess, fake: FakeGateways
) -> None:
    fake.script("mume", Fault(latency=3.0))
    before = abandoned(server, "false")
    left = metric(server.metrics(), "turnout_attempts_total", deployment="mume", decision="abandoned")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "mume", "messages": HELLO},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
    text = wait_abandoned(server, "false", before)
    assert (
        metric(text, "turnout_calls_total", route="mume", stream="false", outcome="abandoned") == before + 1
    )
    # Its attempt too, as the router's observer reported it.
    assert metric(text, "turnout_attempts_total", deployment="mume", decision="abandoned") == left + 1
    assert metric(text, "turnout_deployment_inflight", deployment="mume") == 0


# -- models, health, metrics --------------------------------------------------------------


def test_models_lists_the_routes_then_the_deployments(client: openai.OpenAI) -> None:
    models = client.models.list()
    names = ["chat", "solo", "meshapi", "mume", "mythicdot", "limited", "locked"]
    assert [m.id for m in models.data] == names
    assert [m.owned_by for m in models.data][2:] == [*PROVIDERS, "mythicdot", "mythicdot"]
    assert client.models.retrieve("solo").id == "solo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_and_readiness(server: ServeProcess) -> None:
    assert httpx.get(f"{server.root}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.root}/readyz")
    assert ready.status_code == 200
    assert ready.json()["routes"]["chat"] == {"ready": True, "available": ["meshapi", "mume"]}


def test_unknown_paths_and_methods_answer_in_the_envelope(server: ServeProcess) -> None:
    missing = httpx.get(f"{server.base_url}/embeddings")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{server.base_url}/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_300_concurrent_calls_all_answer(server: ServeProcess, fake: FakeGateways) -> None:
    before = server.metrics()

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY) as sdk:
            calls = [
                sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(300)
            ]
            answers = await asyncio.gather(*calls)
        return [a.choices[0].message.content or "" for a in answers]

    assert asyncio.run(main()) == [f"echo: n{i}" for i in range(300)]
    after = server.metrics()
    ok = {"route": "chat", "stream": "false", "outcome": "ok"}
    assert metric(after, "turnout_calls_total", **ok) - metric(before, "turnout_calls_total", **ok) == 300
    assert fake.counts()["meshapi"] == 300
    assert metric(after, "turnout_server_inflight") == 0


def test_metrics_count_calls_errors_breakers_and_latency(server: ServeProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="solo", messages=HELLO)
    list(client.chat.completions.create(model="chat", messages=HELLO, stream=True))
    httpx.get(f"{server.base_url}/models")  # no key
    text = server.metrics()
    assert metric(text, "turnout_calls_total", route="solo", outcome="ok") >= 1
    assert metric(text, "turnout_errors_total", kind="authentication", source="server") >= 1
    assert metric(text, "turnout_breaker_state", deployment="meshapi", state="closed") == 1
    assert metric(text, "turnout_breaker_state", deployment="meshapi", state="open") == 0
    assert metric(text, "turnout_deployment_available", deployment="mume") == 1
    assert metric(text, "turnout_call_duration_seconds_count", route="solo", stream="false") >= 1
    assert metric(text, "turnout_attempt_duration_seconds_count", deployment="mythicdot") >= 1
    assert metric(text, "turnout_time_to_first_chunk_seconds_count", route="chat") >= 1
    assert metric(text, "turnout_tokens_total", route="solo", type="prompt") >= 5
    assert metric(text, "turnout_server_requests_total", endpoint="chat", status="200") >= 1
