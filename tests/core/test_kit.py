"""The kit can fail: run as an adapter author runs it (pytest, in a subprocess, on a
module of `ProviderConformance` subclasses), it passes a sound gateway and reports
each deliberately broken one on the very check its bug breaks, and only there.

Also: `pytest --fixtures` lists `fake_gateways`, and `import turnout` loads no kit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# A sound OpenAI-compatible gateway, then one broken way per class. Written the way
# an adapter author writes them: public names only.
BROKEN = '''
import attrs
import turnout
from turnout import ChatResponse, CodeRule, ErrorKind, ErrorTable, OpenAICompatible, ProviderError
from turnout.emulation import EmulatedResponse, OpenAIEmulator
from turnout.testing import ProviderConformance

CODES = {
    "bad_key": CodeRule(ErrorKind.AUTHENTICATION, 401),
    "slow_down": CodeRule(ErrorKind.RATE_LIMITED, 429),
    "busy": CodeRule(ErrorKind.UNAVAILABLE, 503),
    "broken": CodeRule(ErrorKind.SERVER_ERROR, 500),
}


class Gateway(OpenAICompatible):
    name = "gw"
    default_base_url = "https://gw.test/v1"
    error_table = ErrorTable(codes=CODES)


class GatewayEmulator(OpenAIEmulator):
    provider = "gw"

    def render_error(self, error, *, retry_after=None, request_id=None):
        code = {rule.kind.value: code for code, rule in CODES.items()}.get(error, error)
        body = {"error": {"message": f"gw says {code}", "code": code}}
        headers = [("retry-after", f"{retry_after:g}")] if retry_after is not None else []
        return EmulatedResponse.json(CODES[code].status, body, headers)

    def error_names(self):
        return list(CODES)


class StrictDecoding(Gateway):
    """Trusts bodies to be UTF-8."""

    def normalize(self, *, status, headers=None, body=None):
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        return super().normalize(status=status, headers=headers, body=body)


class IgnoresRetryAfter(Gateway):
    """Drops the headers, and with them every wait the server asks for."""

    def normalize(self, *, status, headers=None, body=None):
        return super().normalize(status=status, headers=None, body=body)


class AnswersWithoutChoices(Gateway):
    """Takes any 200 for an answer."""

    def parse_completion(self, response):
        try:
            return super().parse_completion(response)
        except ProviderError:
            return ChatResponse(content="", finish_reason="stop", usage=turnout.Usage())


class SwallowsErrorFrames(Gateway):
    """Reads every event as a chunk."""

    def stream_error(self, payload, response):
        return None


class LeaksTheKey(Gateway):
    """Chains a debugging aid that holds the key onto every error."""

    def chat(self, deployment, request):
        try:
            return (yield from super().chat(deployment, request))
        except ProviderError as error:
            raise error from RuntimeError(f"sent with {deployment.key()}")


class DropsToolCalls(Gateway):
    """Declares tools but loses the calls."""

    def parse_completion(self, response):
        return attrs.evolve(super().parse_completion(response), tool_calls=())


class TestGateway(ProviderConformance):
    provider = Gateway()
    emulator = GatewayEmulator()


class TestStrictDecoding(TestGateway):
    provider = StrictDecoding()


class TestIgnoresRetryAfter(TestGateway):
    provider = IgnoresRetryAfter()


class TestAnswersWithoutChoices(TestGateway):
    provider = AnswersWithoutChoices()


class TestSwallowsErrorFrames(TestGateway):
    provider = SwallowsErrorFrames()


class TestLeaksTheKey(TestGateway):
    provider = LeaksTheKey()


class TestDropsToolCalls(TestGateway):
    provider = DropsToolCalls()
'''

# Each broken gateway: the checks that must fail, and words each failure must say.
EXPECTED = {
    "TestGateway": {},
    "TestStrictDecoding": {
        "test_every_status_with_hostile_bodies_and_headers": "non_utf8 no_headers: normalize raised Unicode",
        "test_hostile_responses_through_a_router": "raised UnicodeDecodeError",
    },
    "TestIgnoresRetryAfter": {
        "test_retry_after_in_all_its_forms": "429 seconds {'retry-after': '7'}: None s, not 7.0",
    },
    "TestAnswersWithoutChoices": {
        "test_hostile_responses_through_a_router": "200 json_list: the call succeeded",
        "test_error_envelopes_under_200": "slow_down under a 200: success",
    },
    "TestSwallowsErrorFrames": {
        "test_error_frames": "slow_down: stream_interrupted, but the frame says rate_limited",
    },
    "TestLeaksTheKey": {
        "test_key_hygiene": "the key is in the text of the RuntimeError in the chain",
    },
    "TestDropsToolCalls": {
        "test_tools": "the tool calls are [], not [('get_weather', {'city': 'Paris'})]",
    },
}


def run_pytest(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    """{class: {check: failure message or None}} from one pytest run of BROKEN."""
    where = tmp_path_factory.mktemp("kit")
    (where / "test_gateways.py").write_text(textwrap.dedent(BROKEN))
    report = where / "report.xml"
    result = run_pytest(where, "-q", f"--junitxml={report}", "test_gateways.py")
    assert report.exists(), result.stdout + result.stderr
    found: dict[str, dict[str, str | None]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 (pytest's own report)
        failure = case.find("failure")
        skipped = case.find("skipped")
        assert skipped is None, f"{case.get('classname')}::{case.get('name')} was skipped"
        cls = (case.get("classname") or "").rsplit(".", 1)[-1]
        found.setdefault(cls, {})[case.get("name") or ""] = (
            None if failure is None else (failure.get("message") or "") + (failure.text or "")
        )
    return found


@pytest.mark.parametrize("cls", sorted(EXPECTED))
def test_the_kit_reports_each_broken_provider_on_its_own_check(
    verdicts: dict[str, dict[str, str | None]], cls: str
) -> None:
    checks = verdicts[cls]
    assert len(checks) == len(verdicts["TestGateway"]) >= 11
    failed = {name: message for name, message in checks.items() if message is not None}
    assert set(failed) == set(EXPECTED[cls])
    for name, words in EXPECTED[cls].items():
        assert words in (failed[name] or ""), failed[name]


def test_pytest_lists_the_fake_gateways_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    result = run_pytest(tmp_path, "--fixtures", "test_nothing.py")
    assert result.returncode == 0, result.stderr
    assert "fake_gateways -- " in result.stdout
    assert "Every installed provider's emulator on one loopback HTTP server" in result.stdout


def test_import_turnout_loads_no_kit() -> None:
    code = (
        "import sys, turnout; turnout.Router; turnout.providers(); "
        "print(sorted(m for m in sys.modules if m.startswith(('turnout.testing', 'pytest', '_pytest'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
