"""`turnout demo` as a pipe sees it: plain text, every scenario, exit code 0."""

from __future__ import annotations

from .conftest import run_cli

SCENARIOS = (
    "Rate limit, then success",
    "Authentication failure, fallback to another provider",
    "ModelRoute asynchronous execution",
    "A stream that falls back before its first chunk",
    "A stream interrupted after its first chunk",
    "A breaker opening under a failing provider",
)


def test_the_demo_plays_every_scenario_in_plain_text() -> None:
    result = run_cli("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b" not in out
    for title in SCENARIOS:
        assert title in out
    assert "UNEXPECTED" not in out
    assert "All 6 scenarios went as designed" in out
    for provider in ("meshapi", "mume", "litellm", "mythicdot", "modelroute"):
        assert provider in out
    # What each scenario is about, as a reader sees it.
    assert "rate_limited" in out
    assert "authentication" in out
    assert "POST /v1/executions" in out
    assert "partial_text='echo: " in out
    assert "router.health()" in out
    assert "Traceback" not in result.stderr
