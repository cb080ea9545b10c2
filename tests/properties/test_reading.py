"""The bounded readers (`turnout._reading`): the same events and bytes however the
network splits them, and never more held than the cap."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

import turnout
from turnout._reading import _PIECE, Event, Inflater, SSEDecoder

from .strategies import SETTINGS

# -- server-sent events ------------------------------------------------------------------

FIELD_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=20)
LINES = st.lists(
    st.one_of(
        st.builds(lambda v: f"data:{v}", FIELD_TEXT),
        st.builds(lambda v: f"data: {v}", FIELD_TEXT),
        st.builds(lambda v: f"event: {v}", FIELD_TEXT),
        st.builds(lambda v: f"id: {v}", FIELD_TEXT),
        st.builds(lambda v: f"retry: {v}", st.one_of(st.integers(0, 10**6).map(str), FIELD_TEXT)),
        st.builds(lambda v: f":{v}", FIELD_TEXT),
        st.just(""),
        st.just("data"),
        FIELD_TEXT,
    ),
    max_size=30,
)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """An event stream: lines with any of the three line endings, UTF-8, sometimes a BOM,
    sometimes a stray invalid byte."""
    lines = draw(LINES)
    text = "".join(line + draw(ENDINGS) for line in lines)
    raw = text.encode()
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    if raw and draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\xff" + raw[at:]
    return raw


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """`data` in pieces at `cuts` (empty pieces included: a read may return nothing)."""
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[start:cut]
        start = cut
    yield data[start:]


def decode(pieces: Iterator[bytes], limit: int = 1 << 20) -> list[Event]:
    decoder = SSEDecoder(limit)
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


@SETTINGS
@given(data=streams(), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_events_are_the_same_however_the_bytes_are_split(data: bytes, cuts: list[int]) -> None:
    assert decode(split(data, cuts)) == decode(iter([data]))


@SETTINGS
@given(data=streams(), cuts=st.lists(st.integers(0, 10**6), max_size=12), limit=st.integers(1, 64))
def test_the_decoder_never_holds_more_than_its_cap(data: bytes, cuts: list[int], limit: int) -> None:
    decoder = SSEDecoder(limit)
    code = None
    try:
        for piece in split(data, cuts):
            for event in decoder.feed(piece):
                assert len(event.data) <= limit
            # What it holds between reads: the line so far and the event's data so far.
            assert decoder._line_size + decoder._size <= limit
        decoder.close()
    except turnout.ResponseParseError as error:
        code = error.code
    assert code in (None, "too_large")


# -- inflating -------------------------------------------------------------------------------

ENCODINGS = st.sampled_from(["gzip", "deflate", "deflate-raw"])


def compress(data: bytes, encoding: str, level: int) -> bytes:
    wbits = {"gzip": 31, "deflate": 15, "deflate-raw": -15}[encoding]
    packer = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def inflate(pieces: Iterator[bytes], encoding: str) -> list[bytes]:
    inflater = Inflater(encoding.removesuffix("-raw"))
    out = [piece for raw in pieces for piece in inflater.feed(raw)]
    return out + list(inflater.flush())


@SETTINGS
@given(
    data=st.one_of(st.binary(max_size=2000), st.integers(1, 400_000).map(lambda n: b"\0" * n)),
    encoding=ENCODINGS,
    level=st.integers(0, 9),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
)
def test_inflating_gives_back_the_bytes_in_bounded_pieces(
    data: bytes, encoding: str, level: int, cuts: list[int]
) -> None:
    pieces = inflate(split(compress(data, encoding, level), cuts), encoding)
    assert b"".join(pieces) == data
    assert all(0 < len(piece) <= _PIECE for piece in pieces)


@SETTINGS
@given(
    garbage=st.binary(max_size=300),
    encoding=st.sampled_from(["gzip", "deflate", "x-gzip", "gzip, deflate", "br", "identity", ""]),
)
def test_a_body_that_is_not_validly_encoded_is_a_parse_error(garbage: bytes, encoding: str) -> None:
    try:
        pieces = inflate(iter([garbage]), encoding)
    except turnout.ResponseParseError:
        return
    assert all(len(piece) <= max(_PIECE, len(garbage)) for piece in pieces)
