"""Shared constants and helpers for the Mume tests."""

from __future__ import annotations

import json
from typing import Any

import turnout
from turnout import ErrorKind
from turnout._normalize import kind_for_status
from turnout_mume.provider import MUME_CODES, Mume

KEY = "sk-mume-0123456789abcdef-secret"
BASE_URL = "https://mume.test/api/v1"
MODEL = "openai/gpt-4.1-mini"
HI = [{"role": "user", "content": "hello there"}]
MUME = Mume()

# Mume's own policy with the waits shrunk: the same decisions, no real sleeping.
FAST = turnout.RetryOverrides(base=0.001, cap=0.001)


def mume_deployment(name: str = "mume", **kw: Any) -> turnout.Deployment:
    kw.setdefault("api_key", KEY)
    kw.setdefault("base_url", BASE_URL)
    kw.setdefault("retry_policy", FAST)
    return turnout.Deployment(name, "mume", kw.pop("model", MODEL), **kw)


def normalize(status: int | None, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    return MUME.normalize(status=status, headers=headers or {}, body=body)


def envelope(
    message: Any = "something went wrong",
    *,
    type_: Any = None,
    code: Any = None,
    param: Any = None,
    **top: Any,
) -> bytes:
    """A Mume (OpenAI) error body."""
    return json.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}, **top}
    ).encode()


def documented_kind(name: str) -> ErrorKind:
    """What an emulator error name (a code, a status, a kind) means by Mume's table and
    turnout's status classes, independently of the emulator."""
    if name in MUME_CODES:
        return MUME_CODES[name].kind
    if name.isdigit():
        return kind_for_status(int(name))
    return ErrorKind(name)


def drain(stream: turnout.Stream, into: list[str]) -> None:
    """Read a stream to its end, keeping each delta (also when it raises)."""
    for chunk in stream:
        into.append(chunk.delta)


async def adrain(router: turnout.AsyncRouter, into: list[str], **kw: Any) -> turnout.AsyncStream:
    """Stream one call to its end, keeping each delta (also when it raises)."""
    async with router.stream(HI, **kw) as stream:
        async for chunk in stream:
            into.append(chunk.delta)
    return stream
