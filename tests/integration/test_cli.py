"""The `turnout` command line, run as users run it: `python -m turnout ...` in a
subprocess, stdout a pipe (plain text), against the fake gateways over loopback."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from turnout.cli.output import Column, Output, RichOutput, layout, wrap_cell
from turnout.emulation import Fault
from turnout.fake import FakeGateways

from .conftest import PROVIDERS, config_toml, run_cli

ANSI = "\x1b["


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line on stderr (after the call's decisions, told live: indented)."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("  ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("turnout")
    return lines[0]


def decisions(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What `turnout chat` told on stderr as the router decided, attempt by attempt."""
    return [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]


def test_providers_lists_the_five_plugins() -> None:
    result = run_cli("providers")
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout
    for provider in PROVIDERS:
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [provider])
        assert f"turnout-{provider}" in line
        assert f"{provider} = turnout_{provider}" in line
        assert "0.1.0" in line


def test_providers_shows_who_supplied_each_normalizer_and_policy(tmp_path: Path) -> None:
    """An installed distribution (a real dist-info) that reads meshapi's errors its own
    way and ships a named policy: both are shown with their distribution."""
    (tmp_path / "turnout_proxy.py").write_text(
        "import turnout\n"
        "class Proxy:\n"
        "    def normalize(self, *, status, headers=None, body=None):\n"
        "        return turnout.error_for(turnout.ErrorKind.UNAVAILABLE, 'proxy', status=status)\n"
        "@turnout.hookimpl\n"
        "def turnout_register_normalizers(register):\n"
        "    register('meshapi', Proxy())\n"
        "@turnout.hookimpl\n"
        "def turnout_register_retry_policies(register):\n"
        "    register('patient', turnout.RetryPolicy(max_retries=6, base=1.0, cap=30.0))\n"
    )
    info = tmp_path / "turnout_proxy-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: turnout-proxy\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[turnout]\nproxy = turnout_proxy\n")
    result = run_cli("providers", env={"PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    mesh = next(line for line in lines if line.split()[:1] == ["meshapi"])
    assert mesh.split()[1:4] == ["turnout-meshapi", "0.1.0", "turnout-proxy"]
    mume = next(line for line in lines if line.split()[:1] == ["mume"])
    assert mume.split()[1:5] == ["turnout-mume", "0.1.0", "its", "own"]
    patient = next(line for line in lines if line.split()[:1] == ["patient"])
    assert patient.split()[1:4] == ["turnout-proxy", "2.0", "6"]
    assert "1 s x2, at most 30 s, full jitter" in patient


EXPLAIN = [
    (
        "meshapi",
        ["--status", "429", "-H", "Retry-After: 3", "--body", '{"error": {"code": "rate_limit_exceeded"}}'],
        "rate_limited",
    ),
    ("mume", ["--status", "401"], "authentication"),
    (
        "litellm",
        ["--status", "403", "--body", '{"detail": "Insufficient credits. Team has 0"}'],
        "insufficient_credits",
    ),
    (
        "mythicdot",
        [
            "--status",
            "400",
            "--body",
            '{"error": {"message": "too long", "code": "context_length_exceeded"}}',
        ],
        "context_length_exceeded",
    ),
    ("modelroute", ["--status", "503", "--body", '{"error": {"code": "MODEL_OVERLOADED"}}'], "unavailable"),
]


@pytest.mark.parametrize(("provider", "args", "kind"), EXPLAIN, ids=[e[0] for e in EXPLAIN])
def test_explain_prints_the_normalized_error(provider: str, args: list[str], kind: str) -> None:
    result = run_cli("explain", provider, *args)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if line[:1].strip())
    assert fields["kind"].strip() == kind
    assert fields["class"].strip().startswith("turnout.")
    assert "router" in fields


def test_explain_says_what_the_router_would_do() -> None:
    limited = run_cli("explain", "meshapi", "--status", "429", "-H", "Retry-After: 3")
    assert "retry_after: 3 s" in limited.stdout
    assert "retry on the same deployment after 3 s" in limited.stdout
    assert "fall back to the next deployment" in limited.stdout
    internal = run_cli(
        "explain", "modelroute", "--status", "500", "--body", '{"error": {"code": "INTERNAL_ERROR"}}'
    )
    assert "kind:" in internal.stdout
    assert "no retry on the same deployment" in internal.stdout
    missing = run_cli("explain", "mume", "--status", "404")
    assert "raise it" in missing.stdout


def test_explain_reads_a_raw_body_from_a_file(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    result = run_cli("explain", "litellm", "--status", "502", "--body", f"@{page}")
    assert result.returncode == 0, result.stderr
    assert "upstream_error" in result.stdout
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps({"detail": [{"type": "missing", "loc": ["body", "team_id"], "msg": "Field required"}]})
    )
    result = run_cli("explain", "litellm", "--status", "422", "--body", f"@{body}")
    assert "validation" in result.stdout
    assert "body.team_id: missing: Field required" in result.stdout


# -- chat ------------------------------------------------------------------------


@pytest.fixture
def config(fake: FakeGateways, tmp_path: Path) -> Path:
    path = tmp_path / "turnout.toml"
    routes = '\n[routes]\nchat = ["meshapi", "mume"]\nasync = ["modelroute"]\n'
    path.write_text(config_toml(fake, routes=routes))
    return path


def test_chat_answers_and_shows_the_attempts(fake: FakeGateways, config: Path) -> None:
    fake.script("meshapi", Fault(error="rate_limited", retry_after=0.1))
    result = run_cli("chat", "-c", str(config), "hello there")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "echo: hello there"
    attempts = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[1:4] for row in attempts] == [
        ["meshapi", "meshapi", "rate_limited"],
        ["meshapi", "meshapi", "ok"],
    ]
    assert "answered by meshapi (meshapi)" in result.stdout
    assert fake.requests("meshapi") == 2


def test_chat_through_a_named_route_and_modelroutes_executions(fake: FakeGateways, config: Path) -> None:
    result = run_cli("chat", "-c", str(config), "-m", "async", "poll me")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "echo: poll me"
    assert fake.requests("modelroute") >= 3  # submit, poll(s), result


def test_chat_streams(fake: FakeGateways, config: Path) -> None:
    fake.script("meshapi", Fault(drop_after=0))  # falls back to mume before the first chunk
    result = run_cli("chat", "-c", str(config), "--stream", "stream this please")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "echo: stream this please"
    assert "stream_interrupted" in result.stdout
    assert "answered by mume (mume)" in result.stdout


def test_chat_stream_cut_after_text_fails_with_exit_code_1(fake: FakeGateways, config: Path) -> None:
    fake.script("meshapi", Fault(drop_after=2))
    result = run_cli("chat", "-c", str(config), "--stream", "one two three")
    assert result.returncode == 1
    assert result.stdout.startswith("echo: one ")
    error = one_line_error(result)
    assert "stream_interrupted" in error
    [decided] = decisions(result)
    assert decided.endswith("-> give_up: a chunk already reached the caller")


def test_chat_that_fails_everywhere_exits_1(fake: FakeGateways, config: Path) -> None:
    fake.script("meshapi", Fault(error="authentication"))
    fake.script("mume", Fault(error="authentication"))
    result = run_cli("chat", "-c", str(config), "hi")
    assert result.returncode == 1
    assert "authentication" in one_line_error(result)
    assert result.stdout.count("authentication") == 2  # both attempts listed
    assert decisions(result) == [
        "meshapi (meshapi): 401 unauthorized authentication -> fallback: not retryable",
        "mume (mume): 401 invalid_api_key authentication -> give_up: not retryable",
    ]


# -- serve-fake ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_fake_serves_until_terminated(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text("[mume]\nerrors = { rate_limited = 1.0 }\nretry_after = 7\n")
    port = free_port()
    command = [sys.executable, "-m", "turnout", "serve-fake", "--port", str(port), "--faults", str(faults)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                state = httpx.get(root + "/_faults").json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert set(PROVIDERS) <= set(state["providers"])
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        mesh = httpx.post(
            root + "/meshapi/v1/chat/completions", json=chat, headers={"authorization": "Bearer k"}
        )
        assert mesh.json()["choices"][0]["message"]["content"] == "echo: hi"
        mume = httpx.post(
            root + "/mume/api/v1/chat/completions", json=chat, headers={"authorization": "Bearer k"}
        )
        assert mume.status_code == 429
        assert mume.headers["retry-after"] == "7"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/mume/api/v1" in out
    assert "/v1/chat/completions -> 429" in out
    assert "Traceback" not in err


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["explain", "nowhere", "--status", "500"], "unknown provider"),
        (["explain", "meshapi", "--status", "500", "--body", "{not json"], "not valid JSON"),
        (["explain", "meshapi", "--status", "500", "--body", "@/no/such/file"], "cannot read"),
        (["explain", "meshapi", "--header", "no-colon"], "K:V"),
        (["explain"], "required"),
        (["explain", "meshapi", "--status", "abc"], "invalid int"),
        (["chat", "-c", "/no/such/turnout.toml", "hi"], "cannot read the configuration file"),
        (["chat"], "required"),
        (["serve-fake", "--faults", "/no/such/faults.toml"], "cannot read the faults file"),
        (["serve-fake", "--port", "70000"], "port"),
        ([], "choose a command"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(args: list[str], needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in one_line_error(result)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("deployments = 3\n", "deployments"),
        ('[[deployments]]\nname = "a"\nprovider = "nowhere"\nmodel = "m"\n', "deployments[0].provider"),
        (
            '[[deployments]]\nname = "a"\nprovider = "meshapi"\nmodel = "m"\n'
            'api_key = "env:TURNOUT_NO_SUCH"\n',
            "TURNOUT_NO_SUCH",
        ),
        ("[[deployments]\n", "invalid TOML"),
    ],
)
def test_a_bad_config_is_exit_code_2(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "turnout.toml"
    path.write_text(text)
    result = run_cli("chat", "-c", str(path), "hi")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in one_line_error(result)


def test_an_unknown_route_is_exit_code_2(config: Path) -> None:
    result = run_cli("chat", "-c", str(config), "-m", "nowhere", "hi")
    assert result.returncode == 2
    assert "nowhere" in one_line_error(result)


# -- output at 80 columns --------------------------------------------------------

WIDE_COLUMNS = (
    Column("provider"),
    Column("entry point (turnout)", wrap=True),
    Column("module", wrap=True),
    Column("base_url", wrap=True),
    Column("n", justify="right"),
)
WIDE_ROWS = [
    [
        "modelroute",
        "modelroute = turnout_modelroute",
        "turnout_modelroute.provider",
        "http://127.0.0.1:8765/x/v1",
        "7",
    ],
    ["mume", "mume = turnout_mume", "turnout_mume.provider", "http://127.0.0.1:8765/mume/api/v1", "12"],
]


def squeezed(text: str) -> str:
    return re.sub(r"\s", "", text)


def test_a_table_too_wide_for_the_terminal_wraps_and_cuts_nothing() -> None:
    widths, cells = layout(WIDE_COLUMNS, WIDE_ROWS, 80)
    assert 2 + sum(widths) + 2 * (len(widths) - 1) <= 80
    for row, laid in zip(WIDE_ROWS, cells[1:], strict=True):
        for value, lines, width in zip(row, laid, widths, strict=True):
            assert all(len(line) <= width for line in lines)
            assert squeezed("".join(lines)) == squeezed(value)  # every character kept, in order
    # A long word breaks after a separator, not anywhere.
    assert wrap_cell("turnout_modelroute.provider", 20) == ["turnout_modelroute.", "provider"]
    assert wrap_cell("http://127.0.0.1:8765/mume/api/v1", 25) == ["http://127.0.0.1:8765/", "mume/api/v1"]

    plain = io.StringIO()
    Output(plain, width=80).table(WIDE_COLUMNS, WIDE_ROWS)
    from rich.console import Console

    rich = io.StringIO()
    RichOutput(Console(file=rich, width=80, color_system=None)).table(WIDE_COLUMNS, WIDE_ROWS)
    for text in (plain.getvalue(), rich.getvalue()):
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "…" not in text
        assert "..." not in text
        assert "mume/api/v1" in text  # the URL's end, on a line of its own


def test_in_a_pipe_a_row_stays_one_line_whatever_its_length() -> None:
    plain = io.StringIO()
    Output(plain).table(WIDE_COLUMNS, WIDE_ROWS)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3
    for row, line in zip(WIDE_ROWS, lines[1:], strict=True):
        assert line.split() == " ".join(row).split()
