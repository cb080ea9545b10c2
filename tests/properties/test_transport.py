"""The router's own transport reads response headers as httpx does (`header_dict`), so
skipping `httpx.Response` changes nothing a caller or a flow sees."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from turnout._transport import header_dict

from .strategies import SETTINGS

# Header names as h11 lets them through (tokens, any case, a few repeated), values any
# bytes but the line breaks: ASCII, UTF-8 and Latin-1 ones alike.
NAMES = st.sampled_from([b"X-Dup", b"x-dup", b"Content-Type", b"set-cookie", b"X-Request-Id", b"a", b"B-2"])
VALUES = st.one_of(
    st.binary(max_size=12).map(lambda b: bytes(c for c in b if c not in b"\r\n\0")),
    st.text(max_size=8).map(lambda t: t.replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")),
)


@SETTINGS
@given(st.lists(st.tuples(NAMES, VALUES), max_size=10))
def test_headers_read_as_httpx_reads_them(raw: list[tuple[bytes, bytes]]) -> None:
    assert header_dict(raw) == dict(httpx.Headers(raw).items())
