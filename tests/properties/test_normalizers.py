"""Every installed provider's normalizer, on any status, headers and body: never raises,
always the class of its kind, bounded text, bounded hints, picklable."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import turnout
from turnout import HTTPResponse
from turnout._errors import KIND_CLASSES
from turnout._normalize import MESSAGE_LIMIT

from .strategies import BODIES, HEADERS, OBJECTS, PROVIDERS, SETTINGS, STATUSES

NAMES = sorted(PROVIDERS)


def check_error(error: Any, provider: str) -> None:
    assert type(error) is KIND_CLASSES[error.kind]
    assert error.provider == provider
    assert isinstance(error.message, str)
    assert len(error.message) <= MESSAGE_LIMIT
    assert error.code is None or (isinstance(error.code, str) and len(error.code) <= 200)
    assert isinstance(error.retryable, bool)
    assert error.retry_after is None or 0.0 <= error.retry_after <= turnout.MAX_HINT
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own error, pickled here
    assert (type(copy), copy.kind, copy.message) == (type(error), error.kind, error.message)
    assert copy.status == error.status
    assert str(error)
    assert repr(error)


@SETTINGS
@given(name=st.sampled_from(NAMES), status=STATUSES, headers=HEADERS, body=BODIES)
def test_every_normalizer_answers_any_response_with_its_kinds_class(
    name: str, status: int | None, headers: dict[str, str], body: Any
) -> None:
    error = PROVIDERS[name].normalize(status=status, headers=headers, body=body)
    check_error(error, name)


@SETTINGS
@given(name=st.sampled_from(NAMES), headers=HEADERS, payload=OBJECTS)
def test_every_stream_error_frame_is_none_or_a_normalized_error(
    name: str, headers: dict[str, str], payload: Any
) -> None:
    provider = PROVIDERS[name]
    stream_error = getattr(provider, "stream_error", None)
    if stream_error is None:
        return
    error = stream_error(payload, HTTPResponse(200, headers))
    if error is not None:
        check_error(error, name)
