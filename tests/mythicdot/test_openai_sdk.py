"""MythicDot is an OpenAI-style API: the OpenAI SDK must read the emulator's answers too.

A cross-check of the emulator's wire format against an independent client.
"""

from __future__ import annotations

import httpx
import pytest

from turnout.emulation import Fault, FaultScript, mock_transport
from turnout_mythicdot.emulator import MythicDotEmulator

from .helpers import BASE_URL, HOST, KEY

openai = pytest.importorskip("openai")

HI = [{"role": "user", "content": "hello sdk"}]


def client(faults: FaultScript | None = None) -> object:
    transport = mock_transport({HOST: MythicDotEmulator()}, faults)
    return openai.OpenAI(
        api_key=KEY, base_url=BASE_URL, max_retries=0, http_client=httpx.Client(transport=transport)
    )


def test_completion_and_stream() -> None:
    sdk = client()
    completion = sdk.chat.completions.create(model="mythic-4", messages=HI)  # type: ignore[attr-defined]
    assert completion.choices[0].message.content == "echo: hello sdk"
    assert completion.choices[0].finish_reason == "stop"
    stream = sdk.chat.completions.create(model="mythic-4", messages=HI, stream=True)  # type: ignore[attr-defined]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "echo: hello sdk"


@pytest.mark.parametrize(
    ("code", "exception", "param"),
    [
        ("rate_limit_exceeded", "RateLimitError", None),
        ("revoked_api_key", "AuthenticationError", None),
        ("model_not_in_plan", "PermissionDeniedError", "model"),
        ("max_tokens_exceeded", "BadRequestError", "max_tokens"),
        ("model_not_found", "NotFoundError", "model"),
        ("overloaded", "InternalServerError", None),
    ],
)
def test_errors_read_by_the_sdk(code: str, exception: str, param: str | None) -> None:
    sdk = client(FaultScript(Fault(error=code, retry_after=0.01)))
    with pytest.raises(getattr(openai, exception)) as info:
        sdk.chat.completions.create(model="mythic-4", messages=HI)  # type: ignore[attr-defined]
    assert info.value.code == code
    assert info.value.param == param
    assert info.value.request_id == "req_mythicdot_000001"
