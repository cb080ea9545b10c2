"""Keys kept out of what the HTTP libraries log.

turnout never logs a key, and errors mask a key a gateway echoes. But httpcore
logs every response head at DEBUG (`receive_response_headers.complete
return_value=(b'HTTP/1.1', 401, ..., [(b'x-request-id', b'<the key>')])`) and
httpx logs each status line at INFO: a gateway that echoes the key in a
header or its reason phrase would put it in the application's logs. So a
filter on those loggers (their names are part of httpx's documented logging)
masks every key a router holds, as `***`, the way `turnout._errors.redact`
does in errors. Keys are registered when a router binds its deployments and
forgotten once the binding is garbage collected.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter

from ._errors import MIN_SECRET, redact

__all__ = ["HTTP_LOGGERS", "hide_in_logs"]

HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _KeyMask(logging.Filter):
    """Masks every registered key in a record's message (as text, and as the repr of
    bytes, which is how httpcore shows headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.keys: Counter[str] = Counter()
        self.released: list[str] = []
        # The keys as they may appear: as text, and inside the repr of bytes.
        self.forms: tuple[str, ...] = ()
        self.installed = False

    def filter(self, record: logging.LogRecord) -> bool:
        forms = self.forms
        if not forms:
            return True
        text = record.getMessage()
        masked = text
        for form in forms:
            masked = redact(masked, form)
        if masked != text:
            record.msg, record.args = masked, ()
        return True

    def add(self, key: str) -> None:
        with self.lock:
            self.keys[key] += 1
            self._refresh()
            if not self.installed:
                for name in HTTP_LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self.installed = True

    def release(self, key: str) -> None:
        """Called by the garbage collector, at any point of any thread (inside `add`
        too): it only notes the key, which the next `add` forgets."""
        self.released.append(key)

    def _refresh(self) -> None:
        while self.released:
            key = self.released.pop()
            self.keys[key] -= 1
            if self.keys[key] <= 0:
                del self.keys[key]
        forms = set(self.keys)
        forms.update(repr(key.encode())[2:-1] for key in self.keys)
        self.forms = tuple(sorted(forms, key=len, reverse=True))


_MASK = _KeyMask()


def hide_in_logs(key: str | None, owner: object) -> None:
    """Mask `key` in the HTTP libraries' log records for as long as `owner` lives."""
    if key is None or len(key) < MIN_SECRET:
        return
    _MASK.add(key)
    weakref.finalize(owner, _MASK.release, key)
