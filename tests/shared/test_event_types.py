"""Event types are listed once (``events.EventType``); everything else follows that list: the
weights, the API's validation, and the packed profile's counters (format 2, which still reads
format 1 and profiles written before a type was appended)."""

from __future__ import annotations

import struct
import typing

import numpy as np
import pytest
from pydantic import ValidationError

from streamrec_shared import profile, weights
from streamrec_shared.events import EVENT_TYPES, EventIn, EventType
from streamrec_shared.profile import PackedProfile, decode_profile, decode_vector, encode_profile


def test_every_event_type_has_a_weight_and_passes_validation() -> None:
    assert typing.get_args(EventType) == EVENT_TYPES
    assert set(weights.EVENT_WEIGHTS) | weights.VALUE_WEIGHTED == set(EVENT_TYPES)
    for event_type in EVENT_TYPES:
        value = 3.0 if event_type in weights.VALUE_WEIGHTED else None
        EventIn(user_id="u", event_type=event_type, product_id="p", value=value)
        assert weights.event_weight(event_type, value) != 0.0
    with pytest.raises(ValidationError, match="event_type"):
        EventIn.model_validate({"user_id": "u", "event_type": "wishlist", "product_id": "p"})


def _profile() -> PackedProfile:
    return PackedProfile(
        rev=7,
        segment="light",
        model_version=3,
        partition=2,
        offset=41,
        first_ts=1.0e9,
        last_ts=1.1e9,
        counts=np.arange(1, len(EVENT_TYPES) + 1, dtype=np.uint32),
        seen=np.array([11, 12], dtype=np.uint64),
        item_codes=np.array([5, 9], dtype=np.uint32),
        item_weights=np.array([3.0, 1.0], dtype=np.float32),
        view_codes=np.array([9], dtype=np.uint32),
        purchase_codes=np.array([5], dtype=np.uint32),
        category_codes=np.array([1], dtype=np.uint32),
        category_weights=np.array([4.0], dtype=np.float32),
        vector=np.array([0.5, -0.5], dtype=np.float32),
    )


def _same(a: PackedProfile, b: PackedProfile) -> None:
    for name in ("rev", "segment", "model_version", "partition", "offset", "first_ts", "last_ts"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("counts", "seen", "item_codes", "item_weights", "view_codes", "purchase_codes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.vector, b.vector)


def test_format_2_round_trip_with_a_counter_per_event_type() -> None:
    p = _profile()
    raw = encode_profile(p)
    assert raw[0] == profile.PROFILE_MAGIC == 0xA2
    assert raw[profile.HEADER_BYTES - 4 * len(EVENT_TYPES) - 1] == len(EVENT_TYPES)
    _same(decode_profile(raw), p)
    assert decode_vector(raw) == (3, pytest.approx(p.vector))


def _arrays(raw: bytes) -> bytes:
    return raw[profile.HEADER_BYTES :]


def test_format_1_profiles_are_still_read() -> None:
    p = _profile()
    fields = struct.unpack_from("<BIBBHHHHHIhqddB", encode_profile(p))[1:-1]
    old = struct.pack("<BIBBHHHHHIhqdd6I", 0xA1, *fields, *p.counts.tolist())
    raw = old + _arrays(encode_profile(p))
    _same(decode_profile(raw), p)
    assert decode_vector(raw) is not None
    assert encode_profile(decode_profile(raw))[0] == 0xA2  # rewritten as format 2


def test_a_profile_from_before_an_appended_type_reads_zero_for_it() -> None:
    p = _profile()
    fields = struct.unpack_from("<BIBBHHHHHIhqddB", encode_profile(p))[:-1]
    fewer = len(EVENT_TYPES) - 1
    head = struct.pack("<BIBBHHHHHIhqddB", *fields, fewer)
    raw = head + struct.pack(f"<{fewer}I", *p.counts[:fewer].tolist()) + _arrays(encode_profile(p))
    counts = decode_profile(raw).counts
    assert counts.tolist() == [*p.counts[:fewer].tolist(), 0]


@pytest.mark.parametrize("raw", [b"", b"\xa2\x00", b"\x00" * 100, encode_profile(_profile())[:-1]])
def test_foreign_or_truncated_values_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="profile"):
        decode_profile(raw)
