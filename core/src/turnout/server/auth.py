"""Who may call the server: `Authorization: Bearer <key>` against `[server] api_keys`.

Keys are compared in constant time: each configured key's SHA-256 digest against
the given one's with `hmac.compare_digest` (equal lengths, so not even the
length leaks), and every key is compared whatever the earlier ones gave.
The keys themselves are kept only as digests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from turnout._models import Secret

__all__ = ["Keys"]

_BEARER = b"bearer "


class Keys:
    """The server's API keys; `open=True` (`--no-auth`) lets every request in."""

    def __init__(self, keys: Iterable[Secret], *, open: bool = False) -> None:
        self._digests = tuple(hashlib.sha256(key.reveal().encode()).digest() for key in keys)
        self.open = open
        if not self._digests and not open:
            raise ValueError("no API keys: every request would be refused")

    def __repr__(self) -> str:
        return f"Keys({len(self._digests)} keys{', open' if self.open else ''})"

    def check(self, authorization: bytes | None) -> str | None:
        """None when the request may go on, else why not (for the 401's message)."""
        if self.open:
            return None
        if not authorization:
            return "no API key: send the header Authorization: Bearer <key>"
        if authorization[:7].lower() != _BEARER:
            return "the Authorization header must be Bearer <key>"
        given = hashlib.sha256(authorization[7:].strip()).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(given, digest)
        return None if found else "incorrect API key"
