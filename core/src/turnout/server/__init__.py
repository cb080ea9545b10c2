"""`turnout serve`: an OpenAI-compatible HTTP server in front of one `AsyncRouter`, so
an OpenAI SDK in any language gets turnout's retries, fallbacks and errors.

    pip install "turnout[server]"
    turnout serve -c turnout.toml --host 127.0.0.1 --port 4000

or, under an ASGI server of your own, `create_app("turnout.toml")`. The pieces:
`app` (the Starlette application and its small endpoints), `state` (what the
endpoints share: the router, keys, metrics), `chat` (the chat endpoint),
`streaming` (SSE), `shapes` (OpenAI's wire shapes), `errors` (the OpenAI error
envelope), `auth` (API keys), `metrics` (Prometheus), `gate` (graceful
shutdown), `settings` (the `[server]` table), `wire` (ASGI by hand), `running`
(uvicorn, one process or several). Not imported by `import turnout`.
"""

from __future__ import annotations

from .app import ServerApp, create_app
from .settings import Settings

__all__ = ["ServerApp", "Settings", "create_app"]
