"""Rows 6-9 of issue 16: what cannot work is refused when the router is built.

Each case of `CONFIG_CASES` goes through `Router(...)` written in code (attrs
classes, no cattrs) and through `Router.from_config(mapping)`, for `Router`
and `AsyncRouter`: a `ConfigError` naming the path, one line, the key in none
of its str, repr, pickle or traceback. Then `turnout chat -c bad.toml`: exit
code 2, one line on stderr, no traceback, no key; and a gateway echoing the
key to `turnout chat` shows it nowhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import turnout

from .probe import ROOT, config_failures
from .rows import CONFIG_CASES, GOOD_KEY, ConfigCase
from .upstream import Hostile


@pytest.fixture(scope="module")
def acme() -> turnout.Plugins:
    from tests.core.acme import Acme

    found = turnout.Plugins(entry_points=False)
    found.add_provider(Acme())
    return found


@pytest.mark.parametrize("cls", [turnout.Router, turnout.AsyncRouter], ids=["sync", "async"])
@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: f"{c.issue}-{c.id}")
def test_construction_refuses_with_the_path_and_no_key(case: ConfigCase, cls: Any, acme: Any) -> None:
    _, problems = config_failures(case, cls, acme)
    assert problems == []


def test_a_range_error_names_the_class_field_in_code_and_the_whole_path_in_config() -> None:
    with pytest.raises(
        turnout.ConfigError, match=r"^BreakerConfig\.window: must be an integer >= 1 \(got 0\)$"
    ):
        turnout.BreakerConfig(window=0)
    config = {"deployments": [], "routes": {}, "retry": {"jitter_ratio": 2.0}}
    with pytest.raises(
        turnout.ConfigError, match=r"^retry\.jitter_ratio: must be a finite number in \[0, 1\]"
    ):
        turnout.Router.from_config(config)


def test_failure_rate_above_one_turns_the_rate_rule_off_and_is_allowed() -> None:
    assert turnout.BreakerConfig(failure_rate=1.5).failure_rate == 1.5


# -- the command line ---------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value)  # a JSON string or number is a TOML one


def _config_file(
    tmp_path: Path, *, key: Any, url: str, deadline: str = "3.0", top: str = "", tail: str = ""
) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'deadline = {deadline}\n{top}\n[[deployments]]\nname = "up"\nprovider = "mume"\nmodel = "m"\n'
        f"api_key = {_toml(key)}\nbase_url = {_toml(url)}\n{tail}\n",
        encoding="utf-8",
    )
    return path


def turnout_chat(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TURNOUT_DISABLE_PLUGINS": "", "COLUMNS": "80"}
    command = [sys.executable, "-m", "turnout", "--plain", "chat", "-c", str(config), "hi", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


CLI_CASES = [
    pytest.param({"key": "sk-hostile-cli-newline-0123456789\n"}, "deployments[0].api_key", id="key-newline"),
    pytest.param({"key": "sk-hostile-cli-ключ-0123456789"}, "deployments[0].api_key", id="key-non-ascii"),
    pytest.param({"url": "http://[::1/v1"}, "deployments[0].base_url", id="url-unclosed-bracket"),
    pytest.param({"url": "http://127.0.0.1:99999/v1"}, "deployments[0].base_url", id="url-bad-port"),
    pytest.param({"url": "http://e.com/" + "a" * 70_000}, "deployments[0].base_url", id="url-70kB"),
    pytest.param({"top": "timeout = nan"}, "timeout", id="timeout-nan"),
    pytest.param({"deadline": "0"}, "deadline", id="deadline-zero"),
    pytest.param({"tail": "[breaker]\nwindow = 0"}, "breaker.window", id="breaker-window-zero"),
    pytest.param({"tail": "[budget]\nratio = -1.0"}, "budget.ratio", id="budget-ratio-negative"),
]


@pytest.mark.parametrize(("change", "path"), CLI_CASES)
def test_turnout_chat_with_a_bad_config_exits_2_with_one_line(
    tmp_path: Path, change: dict[str, str], path: str
) -> None:
    settings = {"key": GOOD_KEY, "url": "http://127.0.0.1:9/v1", **change}
    done = turnout_chat(_config_file(tmp_path, **settings))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"turnout: error: {path}: ")
    assert "Traceback" not in done.stderr
    assert settings["key"].strip() not in done.stderr


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    server = Hostile().start()
    yield server
    server.close()


@pytest.mark.parametrize("scenario", ["echo-key", "echo-key-retried"])
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_turnout_chat_shows_no_key_a_gateway_echoes(
    tmp_path: Path, hostile: Hostile, scenario: str, stream: bool
) -> None:
    key = "sk-hostile-cli-echoed-0123456789abcdef"
    config = _config_file(tmp_path, key=key, url=hostile.url("cli", scenario))
    done = turnout_chat(config, *(["--stream"] if stream else []))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "***" in done.stdout + done.stderr  # the echo was there, masked
    assert key not in done.stdout + done.stderr
