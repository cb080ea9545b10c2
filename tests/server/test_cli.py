"""`turnout serve`'s mistakes: one line on stderr, exit code 2, before any worker starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli

DEPLOYMENT = '[[deployments]]\nname = "a"\nprovider = "meshapi"\nmodel = "m"\napi_key = "rsk_secret_key"\n'


@pytest.mark.parametrize(
    ("server", "args", "needle"),
    [
        (
            '[server]\napi_keys = ["env:TURNOUT_UNSET_FOR_SURE"]',
            (),
            "server.api_keys[0]: environment variable",
        ),
        ("", (), "server.api_keys: no API keys"),
        ('[server]\napi_keys = ["k"]', ("--port", "70000"), "--port 70000 is not a port number"),
        ('[server]\napi_keys = ["k"]', ("--workers", "0"), "--workers 0"),
    ],
)
def test_a_mistake_is_one_line_and_exit_code_2(
    tmp_path: Path, server: str, args: tuple[str, ...], needle: str
) -> None:
    path = tmp_path / "turnout.toml"
    path.write_text(f"{DEPLOYMENT}\n{server}\n")
    result = run_cli("serve", "-c", str(path), *args, timeout=30)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "rsk_secret_key" not in result.stderr


def test_a_port_in_use_is_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "turnout.toml"
    path.write_text(f'{DEPLOYMENT}\n[server]\napi_keys = ["k"]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "-c", str(path), "--port", str(port), timeout=30)
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr
