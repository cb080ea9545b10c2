"""`turnout serve` as a subprocess on loopback, for tests that drive it as users do.

`ServeProcess(config).start()` runs `python -m turnout serve -c CONFIG --port 0`,
reads the address it prints, and waits until `/healthz` answers (the router is
built). Its log goes to a file shown when a test fails.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import KEYS, MODELS, config_toml

__all__ = ["KEY", "OTHER_KEY", "ServeProcess", "deployment", "metric", "server_config"]

# The server's own keys: one from the environment, one written in the file.
KEY = "sk-serve-test-0123456789"
OTHER_KEY = "sk-serve-literal-key"
KEY_ENV = "TURNOUT_TEST_SERVER_KEY"


def server_config(fake: Any, providers: tuple[str, ...], routes: str, server: str = "") -> str:
    """A router configuration over the fake gateways, with a `[server]` table."""
    table = f'[server]\napi_keys = ["env:{KEY_ENV}", "{OTHER_KEY}"]\n{server}\n'
    return config_toml(fake, providers, routes) + "\n" + table


def deployment(fake: Any, name: str, provider: str) -> str:
    """One more deployment of a provider, under a name of its own."""
    return (
        f'[[deployments]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{MODELS[provider]}"\n'
        f'api_key = "{KEYS[provider]}"\nbase_url = "{fake.base_url(provider)}"\n'
        "retry = { base = 0.01, cap = 0.02 }\n"
    )


class ServeProcess:
    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.args = args
        self.env = {**os.environ, KEY_ENV: KEY, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen[str] | None = None
        self.root = ""

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def start(self, timeout: float = 30.0) -> ServeProcess:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "turnout", "serve", "-c", str(self.config), "--port", "0", *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=self.env,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        found = re.search(r"(http://[^/\s]+)/v1", line)
        if found is None:
            self.kill()
            raise RuntimeError(f"turnout serve did not start: {line!r}\n{self.log()}")
        self.root = found.group(1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.root}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.kill()
                raise RuntimeError(f"turnout serve is not answering\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after 30 s)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def metrics(self) -> str:
        return httpx.get(f"{self.root}/metrics", timeout=5.0).text

    def events(self, body: dict[str, Any], timeout: float = 30.0) -> tuple[int, list[str]]:
        """A stream asked for over plain HTTP: its status and the data of each SSE event."""
        with httpx.stream(
            "POST",
            f"{self.base_url}/chat/completions",
            json={**body, "stream": True},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=timeout,
        ) as response:
            return response.status_code, [
                line[6:] for line in response.iter_lines() if line.startswith("data: ")
            ]


_SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when absent), labels matching."""
    total = 0.0
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(3))
    return total
