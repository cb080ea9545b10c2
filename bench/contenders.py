"""The contenders: one chat call and one streamed call, written as each library's user writes them.

Every contender sends the same request (one user message, model
`bench-model`) to the same loopback upstream, reads the answer's text and
hands it back, so the harness can check that each one really did the work.
A stream's deltas are collected and joined, as a caller printing or storing
them would. Libraries are imported inside the constructors: a peer that is
not installed makes its contender fail with ImportError, which the harness
reports as a skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from loopback import CONTENT, STREAM_TEXT, TOOLS_TEXT

MODEL = "bench-model"
API_KEY = "sk-bench"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Say hello."}]
PAYLOAD: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
STREAM_PAYLOAD: dict[str, Any] = {**PAYLOAD, "stream": True}
EXPECTED = {False: CONTENT, True: STREAM_TEXT}
EXPECTED_TOOLS = TOOLS_TEXT
# The tools a tool-call stream declares (the upstream calls two of them).
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {key: {"type": "string"} for key in keys}},
        },
    }
    for name, keys in (("get_weather", ("city", "unit", "days")), ("get_time", ("timezone", "format")))
]
TOOLS_PAYLOAD: dict[str, Any] = {**STREAM_PAYLOAD, "tools": TOOLS}


def tools_text(calls: list[tuple[str, str, str]]) -> str:
    """What a tool-call stream hands back: every call, assembled (loopback.TOOLS_TEXT)."""
    return ";".join(f"{call_id}:{name}({arguments})" for call_id, name, arguments in calls)


def _httpx_limits() -> Any:
    import httpx

    # The pool turnout's routers use, so that at concurrency 50 no contender
    # pays for opening connections the others keep alive.
    return httpx.Limits(max_connections=200, max_keepalive_connections=50)


class Contender:
    """A library set up against the upstream. Subclasses implement what they support."""

    label: str = ""
    sync = True
    asynchronous = True
    streams = True
    # Whether it runs the tool-call stream cells (`stream_tools`).
    tools = False

    def versions(self) -> dict[str, str]:
        return {}

    def chat(self) -> str:
        raise NotImplementedError

    def stream(self) -> str:
        raise NotImplementedError

    async def achat(self) -> str:
        raise NotImplementedError

    async def astream(self) -> str:
        raise NotImplementedError

    def stream_tools(self) -> str:
        """A stream of tool calls, read to its end; every call assembled (`tools_text`)."""
        raise NotImplementedError

    async def astream_tools(self) -> str:
        raise NotImplementedError

    def check(self, *, stream: bool, asynchronous: bool) -> str:
        """Anything worth reporting about how the last call went (empty: nothing)."""
        return ""

    def close(self) -> None:
        """Release the sync client."""

    async def aclose(self) -> None:
        """Release the async client (called inside the worker's event loop)."""


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


# -- raw httpx: the floor ------------------------------------------------------


class RawHttpx(Contender):
    """`httpx.Client.post` + `.json()`; streams through httpx-sse, one `json.loads` per event.
    Tool calls are assembled by hand from their pieces, by index, as such a caller must."""

    label = "httpx (raw)"
    tools = True

    def __init__(self, base_url: str, transport: str = "httpx") -> None:
        import httpx

        self.url = f"{base_url}/v1/chat/completions"
        headers = {"authorization": f"Bearer {API_KEY}"}
        self.transport = transport
        self.client = httpx.Client(headers=headers, limits=_httpx_limits())
        self.aclient = httpx.AsyncClient(
            headers=headers, limits=_httpx_limits(), transport=_async_transport(transport)
        )
        if transport != "httpx":
            self.label = f"httpx (raw) + {transport}"
            self.sync = False

    def versions(self) -> dict[str, str]:
        found = {"httpx": _version("httpx"), "httpx-sse": _version("httpx-sse")}
        if self.transport != "httpx":
            found.update({"httpx-aiohttp": _version("httpx-aiohttp"), "aiohttp": _version("aiohttp")})
        return found

    @staticmethod
    def _content(response: Any) -> str:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        content: str = response.json()["choices"][0]["message"]["content"]
        return content

    @staticmethod
    def _delta(data: str) -> str:
        delta: str = json.loads(data)["choices"][0]["delta"].get("content") or ""
        return delta

    def chat(self) -> str:
        return self._content(self.client.post(self.url, json=PAYLOAD))

    async def achat(self) -> str:
        return self._content(await self.aclient.post(self.url, json=PAYLOAD))

    def stream(self) -> str:
        from httpx_sse import connect_sse

        parts: list[str] = []
        with connect_sse(self.client, "POST", self.url, json=STREAM_PAYLOAD) as source:
            for event in source.iter_sse():
                if event.data != "[DONE]":  # read on to the end: the connection goes back to the pool
                    parts.append(self._delta(event.data))
        return "".join(parts)

    async def astream(self) -> str:
        from httpx_sse import aconnect_sse

        parts: list[str] = []
        async with aconnect_sse(self.aclient, "POST", self.url, json=STREAM_PAYLOAD) as source:
            async for event in source.aiter_sse():
                if event.data != "[DONE]":
                    parts.append(self._delta(event.data))
        return "".join(parts)

    @staticmethod
    def _tool_pieces(data: str, calls: dict[int, list[Any]]) -> None:
        """Add one event's tool-call pieces to `calls` (index -> [id, name, argument pieces])."""
        delta = json.loads(data)["choices"][0]["delta"]
        for piece in delta.get("tool_calls") or ():
            call = calls.get(piece["index"])
            if call is None:
                call = calls[piece["index"]] = [piece.get("id"), piece["function"].get("name"), []]
            call[2].append(piece["function"].get("arguments") or "")

    @staticmethod
    def _tools(calls: dict[int, list[Any]]) -> str:
        return tools_text([(c[0], c[1], "".join(c[2])) for _, c in sorted(calls.items())])

    def stream_tools(self) -> str:
        from httpx_sse import connect_sse

        calls: dict[int, list[Any]] = {}
        with connect_sse(self.client, "POST", self.url, json=TOOLS_PAYLOAD) as source:
            for event in source.iter_sse():
                if event.data != "[DONE]":
                    self._tool_pieces(event.data, calls)
        return self._tools(calls)

    async def astream_tools(self) -> str:
        from httpx_sse import aconnect_sse

        calls: dict[int, list[Any]] = {}
        async with aconnect_sse(self.aclient, "POST", self.url, json=TOOLS_PAYLOAD) as source:
            async for event in source.aiter_sse():
                if event.data != "[DONE]":
                    self._tool_pieces(event.data, calls)
        return self._tools(calls)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.aclient.aclose()


def _async_transport(name: str) -> Any:
    """`httpx`: the library's own default; `aiohttp`: httpx-aiohttp's transport; `httpcore`:
    httpx's `AsyncHTTPTransport` (httpcore's pool), given to a router whose default differs."""
    if name == "httpx":
        return None
    if name == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=_httpx_limits())
    if name == "httpcore":
        import httpx

        return httpx.AsyncHTTPTransport(limits=_httpx_limits())
    raise ValueError(f"unknown transport {name!r}")


# How a contender on another transport than its library's default is labelled.
_TRANSPORT_LABELS = {"aiohttp": " + aiohttp", "httpcore": " on httpx's pool"}


# -- turnout -------------------------------------------------------------------


def loopback_plugins() -> Any:
    """A private plugin set holding only the bench's OpenAI-compatible provider, so the
    bench needs no gateway plugin (and finds none by accident)."""
    import turnout

    class Loopback(turnout.OpenAICompatible):
        name = "loopback"
        default_base_url = "http://127.0.0.1"

    plugins = turnout.Plugins(entry_points=False)
    plugins.add_provider(Loopback())
    return plugins


def _keep_trying() -> dict[str, Any]:
    """Router options under which the failing deployment is tried on every call.

    With the defaults, the breaker sets a deployment that keeps failing aside
    (and the retry budget stops paying for fallbacks), so after a few calls the
    failure would cost nothing at all: what is measured here is the fallback
    itself. Older cores without a breaker take no such options.
    """
    import importlib

    import turnout

    def find(name: str, module: str) -> Any:
        found = getattr(turnout, name, None)
        if found is None:
            try:
                found = getattr(importlib.import_module(module), name, None)
            except ImportError:
                return None
        return found

    options: dict[str, Any] = {}
    breaker = find("BreakerConfig", "turnout._health")
    if breaker is not None:
        options["breaker"] = breaker(consecutive_failures=2**31, failure_rate=2.0, min_calls=2**31)
    budget = find("RetryBudget", "turnout._state")
    if budget is not None:
        options["budget"] = budget(ratio=1.0, burst=1_000_000.0)
    return options


class Turnout(Contender):
    """`turnout.Router` / `AsyncRouter`; with `fallback`, a first deployment that answers
    503 at once (no retry) before the working one. A tool-call stream is iterated to its
    end and its calls read from `stream.response.tool_calls`, as its docs tell users."""

    tools = True

    def __init__(self, base_url: str, *, fallback: bool = False, transport: str = "httpx") -> None:
        import turnout

        self.fallback = fallback
        self.transport = transport
        primary = turnout.Deployment(
            name="primary", provider="loopback", model=MODEL, api_key=API_KEY, base_url=f"{base_url}/v1"
        )
        deployments = [primary]
        if fallback:
            failing = turnout.Deployment(
                name="failing",
                provider="loopback",
                model=MODEL,
                api_key=API_KEY,
                base_url=f"{base_url}/fail/v1",
                retry_policy=turnout.RetryPolicy(max_retries=0),
            )
            deployments = [failing, primary]
        plugins = loopback_plugins()
        options = _keep_trying() if fallback else {}
        self.router = turnout.Router(deployments, plugins=plugins, **options)
        self.arouter = turnout.AsyncRouter(
            deployments, plugins=plugins, transport=_async_transport(transport), **options
        )
        self.label = "turnout, 503 → fallback" if fallback else "turnout"
        if transport != "httpx":
            self.label += _TRANSPORT_LABELS[transport]
            self.sync = False
        self.last_attempts: tuple[Any, ...] = ()

    def versions(self) -> dict[str, str]:
        return {"turnout": _version("turnout")}

    def chat(self) -> str:
        response = self.router.chat(MESSAGES)
        self.last_attempts = response.attempts
        return response.content

    async def achat(self) -> str:
        response = await self.arouter.chat(MESSAGES)
        self.last_attempts = response.attempts
        return response.content

    def stream(self) -> str:
        parts: list[str] = []
        with self.router.stream(MESSAGES) as stream:
            for chunk in stream:
                parts.append(chunk.delta)
        self.last_attempts = stream.attempts
        return "".join(parts)

    async def astream(self) -> str:
        parts: list[str] = []
        async with self.arouter.stream(MESSAGES) as stream:
            async for chunk in stream:
                parts.append(chunk.delta)
        self.last_attempts = stream.attempts
        return "".join(parts)

    @staticmethod
    def _tools(response: Any) -> str:
        return tools_text([(c.id, c.name, c.arguments) for c in response.tool_calls])

    def stream_tools(self) -> str:
        with self.router.stream(MESSAGES, tools=TOOLS) as stream:
            for _chunk in stream:
                pass
        self.last_attempts = stream.attempts
        return self._tools(stream.response)

    async def astream_tools(self) -> str:
        async with self.arouter.stream(MESSAGES, tools=TOOLS) as stream:
            async for _chunk in stream:
                pass
        self.last_attempts = stream.attempts
        return self._tools(stream.response)

    def check(self, *, stream: bool, asynchronous: bool) -> str:
        kinds = [a.error.kind.value if a.error is not None else "ok" for a in self.last_attempts]
        wanted = ["unavailable", "ok"] if self.fallback else ["ok"]
        if kinds != wanted:
            return f"attempts were {kinds}, expected {wanted}"
        return ""

    def close(self) -> None:
        self.router.close()

    async def aclose(self) -> None:
        await self.arouter.aclose()


# -- the official openai SDK ---------------------------------------------------


class OpenAISDK(Contender):
    """`openai.OpenAI(...).chat.completions.create(...)`, `max_retries=0`."""

    label = "openai SDK"

    def __init__(self, base_url: str) -> None:
        import openai

        # Typed as Any: the peers' own types change from release to release.
        self.client: Any = openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0)
        self.aclient: Any = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0)

    def versions(self) -> dict[str, str]:
        return {"openai": _version("openai"), "pydantic": _version("pydantic")}

    def chat(self) -> str:
        response = self.client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return response.choices[0].message.content or ""

    async def achat(self) -> str:
        response = await self.aclient.chat.completions.create(model=MODEL, messages=MESSAGES)
        return response.choices[0].message.content or ""

    def stream(self) -> str:
        parts: list[str] = []
        with self.client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
            for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)

    async def astream(self) -> str:
        parts: list[str] = []
        stream = await self.aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async with stream:
            async for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.aclient.close()


# -- litellm.Router ------------------------------------------------------------


class LiteLLMRouter(Contender):
    """`litellm.Router` over two `openai/...` deployments of one model group, no retries."""

    label = "litellm.Router"

    def __init__(self, base_url: str) -> None:
        # Never fetch the model cost map from the network: use the copy litellm ships.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        params = {"model": f"openai/{MODEL}", "api_base": f"{base_url}/v1", "api_key": API_KEY}
        model_list: list[dict[str, Any]] = [
            {"model_name": "bench", "litellm_params": dict(params), "model_info": {"id": f"bench-{i}"}}
            for i in (1, 2)
        ]
        self.router: Any = litellm.Router(model_list=model_list, num_retries=0)  # type: ignore[attr-defined]

    def versions(self) -> dict[str, str]:
        return {"litellm": _version("litellm")}

    async def aclose(self) -> None:
        import litellm

        close = getattr(litellm, "close_litellm_async_clients", None)
        if close is not None:
            await close()

    def chat(self) -> str:
        response = self.router.completion(model="bench", messages=MESSAGES)
        return response.choices[0].message.content or ""

    async def achat(self) -> str:
        response = await self.router.acompletion(model="bench", messages=MESSAGES)
        return response.choices[0].message.content or ""

    def stream(self) -> str:
        parts: list[str] = []
        for chunk in self.router.completion(model="bench", messages=MESSAGES, stream=True):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)

    async def astream(self) -> str:
        parts: list[str] = []
        response = await self.router.acompletion(model="bench", messages=MESSAGES, stream=True)
        async for chunk in response:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)


# -- the registry ----------------------------------------------------------------

Factory = Callable[[str], Contender]

CONTENDERS: dict[str, Factory] = {
    "httpx": RawHttpx,
    "httpx-aiohttp": lambda base: RawHttpx(base, transport="aiohttp"),
    "turnout": Turnout,
    "turnout-aiohttp": lambda base: Turnout(base, transport="aiohttp"),
    # AsyncRouter on httpx's AsyncHTTPTransport: its default transport before issue 21.
    "turnout-httpcore": lambda base: Turnout(base, transport="httpcore"),
    "turnout-fallback": lambda base: Turnout(base, fallback=True),
    "openai": OpenAISDK,
    "litellm": LiteLLMRouter,
}
