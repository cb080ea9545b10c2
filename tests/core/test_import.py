"""`import turnout` stays light: no httpx, pluggy, cattrs, plugins or CLI until used."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import turnout
heavy = ("httpx", "pluggy", "cattrs", "httpx_sse", "turnout.cli", "turnout._router", "turnout._plugins",
         "importlib.metadata", "rich", "uvicorn")
loaded = sorted(m for m in heavy if m in sys.modules)
plugins = sorted(m for m in sys.modules if m.startswith("turnout_"))
print(json.dumps({"loaded": loaded, "plugins": plugins, "error": turnout.RateLimitError.__name__}))
"""


def probe(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_turnout_loads_no_io_plugins_or_cli():
    result = probe(PROBE)
    assert result == {"loaded": [], "plugins": [], "error": "RateLimitError"}


def test_the_router_loads_httpx_only_when_asked_for():
    result = probe(
        "import json, sys, turnout; turnout.Router; print(json.dumps({'httpx': 'httpx' in sys.modules}))"
    )
    assert result == {"httpx": True}


def test_every_public_name_resolves():
    code = (
        "import json, turnout; "
        "print(json.dumps([n for n in turnout.__all__ if getattr(turnout, n, None) is None]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
