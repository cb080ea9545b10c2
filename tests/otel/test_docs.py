"""docs/observing.md: its tables cover every name the observer sets (they are generated
from turnout_otel.names, and what the spans and metrics carry is checked against that
table), and its logging and console examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.core.test_docs_tables import gen_tables
from turnout_otel import OpenTelemetryObserver
from turnout_otel.names import METRICS, SPAN_ATTRIBUTES

from .conftest import Telemetry
from .test_answers import told

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "observing.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, re.DOTALL)


def block(starting: str) -> str:
    (found,) = [b for b in BLOCKS if b.startswith(starting)]
    return found


def test_the_page_includes_the_generated_tables() -> None:
    module = gen_tables()
    attributes = module.otel_attributes_table()
    assert [row.split("|")[1].strip(" `") for row in attributes.splitlines()[2:]] == [
        a.name for a in SPAN_ATTRIBUTES
    ]
    assert [row.split("|")[1].strip(" `") for row in module.otel_metrics_table().splitlines()[2:]] == [
        m.name for m in METRICS
    ]
    assert "| `rate_limited` | `RateLimitError` |" in module.otel_errors_table()
    for name in ("otel-attributes.md", "otel-metrics.md", "otel-errors.md"):
        assert f'--8<-- "{name}"' in PAGE


def test_every_attribute_the_observer_sets_is_in_the_table(telemetry: Telemetry) -> None:
    told(OpenTelemetryObserver(capture_content=True))  # an answer, a server, parameters, content
    metrics = telemetry.metrics()
    spans = telemetry.spans()
    documented = {a.name: a.span for a in SPAN_ATTRIBUTES}
    for span in spans:
        where = "call" if span.name.startswith("turnout.chat") else "attempt"
        for name in span.attributes or {}:
            assert documented.get(name) in (where, "both"), f"{name} on the {where} span"
    declared = {m.name: set(m.attributes) for m in METRICS}
    for name, metric in metrics.items():
        for point in metric.data.data_points:
            assert set(point.attributes or {}) <= declared[name], name
            assert metric.unit == next(m.unit for m in METRICS if m.name == name)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


ONE_CALL = """
import asyncio
from tests.core.calls import Calls
from tests.otel.conftest import retried_then_fell_back
import turnout
from tests.core.acme import Acme

plugins = turnout.Plugins(entry_points=False)
plugins.add_provider(Acme())
asyncio.run(retried_then_fell_back(Calls("sync", plugins)))
"""


def test_the_logging_example_prints_the_records_attributes() -> None:
    done = run(block("import logging") + ONE_CALL)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(
        re.search(r" INFO turnout\.router call=\S+ deployment=a kind=rate_limited retrying on a: 429", line)
        for line in lines
    ), lines
    assert any("deployment=a kind=unavailable falling back from a: 1 retries used" in line for line in lines)


def test_the_console_example_prints_the_spans() -> None:
    code = block(
        "from opentelemetry import metrics, trace\nfrom opentelemetry.sdk.metrics import MeterProvider"
    )
    done = run(code + ONE_CALL + textwrap.dedent("tracer_provider.shutdown()\n"))
    assert done.returncode == 0, done.stderr
    assert '"name": "turnout.chat default"' in done.stdout
    assert done.stdout.count('"name": "chat model-a"') == 2
    assert done.stdout.count('"name": "chat model-b"') == 1
    assert '"kind": "SpanKind.CLIENT"' in done.stdout
