"""The examples of docs/chat.md run as written, against the fake gateways over loopback:
the tool-calling loop (sync, and async with a stream), an image, structured output,
per-call options and the unsupported_feature error, with what the page says they print."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import turnout
from turnout.fake import FakeGateways

from .conftest import KEYS, MODELS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "chat.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def block(starting: str) -> str:
    (found,) = [b for b in BLOCKS if b.lstrip().startswith(starting)]
    return found


def config(fake: FakeGateways) -> str:
    def one(name: str, provider: str, options: str = "") -> str:
        return (
            f'[[deployments]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{MODELS[provider]}"\n'
            f'api_key = "{KEYS[provider]}"\nbase_url = "{fake.base_url(provider)}"\n{options}\n'
        )

    return (
        "deadline = 20.0\n\n"
        + one("mume", "mume")
        + one("mesh", "meshapi")
        + one("mr", "modelroute", "options = { poll_interval = 0.01 }")
        + '[routes]\nchat = ["mume"]\nvision = ["mesh"]\nexecutions = ["mr"]\n'
    )


@pytest.fixture
def here(fake: FakeGateways, tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "turnout.toml").write_text(config(fake), encoding="utf-8")
    (tmp_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(previous)


def run(code: str, namespace: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own examples
    return out.getvalue()


def test_the_pages_examples_run_as_written(here: Path, fake: FakeGateways) -> None:
    assert len(BLOCKS) >= 6
    namespace: dict[str, Any] = {"trace_id": "trace-1"}
    # The tool-calling loop: one call asks for the tool, the next answers from its result.
    printed = run(block("import json"), namespace)
    result = '{"city": "What is the weather in Paris?", "temperature": 21, "unit": "c"}'
    assert printed == f"tool results: get_weather: {result}\n"
    history = namespace["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert fake.requests("mume") == 2

    # The same loop with AsyncRouter, streaming.
    run(block("async def ask"), namespace)

    async def ask() -> tuple[str, list[dict[str, Any]]]:
        messages = [{"role": "user", "content": "Weather in Oslo?"}]
        async with turnout.AsyncRouter.from_config("turnout.toml") as router:
            return await namespace["ask"](router, messages), messages

    with contextlib.redirect_stdout(io.StringIO()) as streamed:
        text, messages = asyncio.run(ask())
    assert text == 'tool results: get_weather: {"city": "Weather in Oslo?", "temperature": 21, "unit": "c"}'
    assert streamed.getvalue() == text
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]

    with turnout.Router.from_config("turnout.toml") as router:
        namespace["router"] = router
        # An image, as a data: URL.
        run(block("import base64"), namespace)
        assert namespace["resp"].content == "echo: What does this chart show? [image_url]"
        assert namespace["resp"].deployment == "mesh"
        # Structured output.
        namespace["messages"] = [{"role": "user", "content": "Lyon"}]
        run(block("schema = {"), namespace)
        assert namespace["weather"] == {"city": "Lyon", "temperature": 1.5}
        # Per-call options.
        run(block('resp = router.chat(\n    messages, model="chat",\n    timeout'), namespace)
        assert namespace["resp"].content == "echo: Lyon"
        # unsupported_feature, as the page says it prints.
        code = block("try:")
        printed = run(code, namespace)
        said = re.search(r"# (no deployment .*)\n", code)
        assert said is not None
        assert printed.splitlines() == [said.group(1), "mr tools"]
    assert fake.requests("modelroute") == 0
