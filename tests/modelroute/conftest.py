from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import turnout
from turnout import ChatResponse, Deployment, HTTPResponse
from turnout.emulation import Fault, FaultScript, FaultSource, mock_transport
from turnout_modelroute.emulator import ModelRouteEmulator
from turnout_modelroute.provider import fake_key

HOST = "modelroute.test"
BASE = f"https://{HOST}"
KEY = fake_key("turnout-modelroute-tests")
# Retries without real waiting (the documented policy waits up to 30 s).
FAST = turnout.RetryPolicy(max_retries=3, base=0.001, cap=0.001, jitter="none")
MESSAGES = [{"role": "user", "content": "hi"}]


def deployment(name: str = "mr", model: str = "model-a", **kw: Any) -> Deployment:
    """A modelroute deployment on the emulator's host, polling every millisecond."""
    options = {"poll_interval": 0.001, **kw.pop("options", {})}
    kw.setdefault("api_key", KEY)
    kw.setdefault("base_url", BASE)
    kw.setdefault("retry_policy", FAST)
    return Deployment(name, "modelroute", model, options=options, **kw)


def response(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> HTTPResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HTTPResponse(status, {"content-type": "application/json", **(headers or {})}, raw)


def execution(status: str, execution_id: str = "exe_1", **extra: Any) -> dict[str, Any]:
    return {"id": execution_id, "status": status, **extra}


def on(path_suffix: str, method: str, faults: Sequence[Fault | None]) -> FaultScript:
    """Faults for the requests to one endpoint, in order; everything else unfaulted."""
    return FaultScript(*faults, match=lambda r: r.method == method and r.path.endswith(path_suffix))


class Harness:
    """One call through `turnout.Router` or `turnout.AsyncRouter` over the emulator."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def chat(
        self,
        emulator: ModelRouteEmulator,
        *,
        deployments: Sequence[Deployment] | None = None,
        faults: FaultSource = None,
        messages: Sequence[Mapping[str, Any]] = MESSAGES,
        **kw: Any,
    ) -> ChatResponse:
        chosen = list(deployments or [deployment()])
        transport = mock_transport({HOST: emulator}, faults)
        if self.mode == "sync":
            with turnout.Router(chosen, transport=transport) as router:
                return router.chat(messages, **kw)
        async with turnout.AsyncRouter(chosen, transport=transport) as arouter:
            return await arouter.chat(messages, **kw)


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


@pytest.fixture
def emulator() -> ModelRouteEmulator:
    return ModelRouteEmulator()
