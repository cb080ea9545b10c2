"""The server's settings: the `[server]` table of the router's own TOML file.

    [server]
    api_keys = ["env:TURNOUT_SERVER_KEY"]   # who may call; "env:NAME" reads the environment
    max_body = 4194304                      # bytes of one request body (default 4 MiB)
    grace_period = 30.0                     # seconds in-flight calls get on shutdown

Checked once, before a worker starts: a key that is empty or names an unset
variable is a ConfigError naming `server.api_keys[i]` (never the value), and
a server with no key at all refuses to start unless told `--no-auth`.
"""

from __future__ import annotations

import os

from attrs import frozen

from turnout._config import ServerConfig, load_config, resolve_secret
from turnout._errors import ConfigError

from .auth import Keys

__all__ = ["Settings"]


@frozen
class Settings:
    """What one worker needs besides its router: the configuration file (each worker
    builds its own router from it), the keys, the body cap and the grace period."""

    config: str
    keys: Keys
    max_body: int
    grace_period: float

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, no_auth: bool = False, grace_period: float | None = None
    ) -> Settings:
        server = load_config(path).server or ServerConfig()
        secrets = []
        for i, value in enumerate(server.api_keys):
            where = f"server.api_keys[{i}]"
            secret = resolve_secret(value, where)
            if not secret.reveal().strip():
                raise ConfigError("an API key cannot be empty", path=where, show_value=False)
            secrets.append(secret)
        if not secrets and not no_auth:
            raise ConfigError(
                'no API keys: set api_keys = ["env:TURNOUT_SERVER_KEY"] under [server] '
                "(or start with --no-auth to let every request in)",
                path="server.api_keys",
            )
        if grace_period is not None and grace_period < 0:
            raise ConfigError("must be zero or more seconds", path="--grace-period", value=grace_period)
        return cls(
            os.fspath(path),
            Keys(secrets, open=no_auth),
            server.max_body,
            server.grace_period if grace_period is None else grace_period,
        )
