"""A user's last few accepted events, written by ingest before its 202 (read-your-writes).

The stream processor owns profiles and applies an event some tens of milliseconds after ingest
acknowledged it; a recommendation asked in between would not see the click. So ingest also
pushes each event to ``sr:re:<user_id>``, a Redis LIST capped at ``MAX_EVENTS`` entries, most
recent first, expiring ``TTL_S`` after the user's last event (LPUSH + LTRIM + EXPIRE in one
pipelined round trip, plus a DEL of the user's result cache). The recommender reads the list in
the same round trip as the profile and merges the products the profile does not hold yet; the
list also keeps the session's order, which the profile (heaviest items first) does not.

Entry: ``<unix seconds>\\t<event type>\\t<product id>`` (UTF-8; the product id last, so a tab
inside it survives). Only the event types in ``INTERACTIONS`` are pushed.

Pure: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

from streamrec_shared.profile import PREFIX

MAX_EVENTS = 20
"""Entries kept per user (LTRIM 0 MAX_EVENTS-1)."""
TTL_S = 1800
"""The list expires this long after the user's last event: a session's inactivity gap."""
INTERACTIONS = frozenset({"view", "click", "add_to_cart", "purchase", "rating"})
"""Event types that make a product part of the user's session (not remove_from_cart)."""


class RecentEvent(NamedTuple):
    product_id: str
    event_type: str
    ts: float
    """Unix seconds of event time."""


def recent_events_key(user_id: str) -> str:
    """``sr:re:<user_id>``: the user's last accepted events, most recent first."""
    return f"{PREFIX}re:{user_id}"


def encode(product_id: str, event_type: str, ts: float) -> bytes:
    return f"{ts:.3f}\t{event_type}\t{product_id}".encode()


def decode(raw: bytes | str) -> RecentEvent | None:
    """One list entry, None when it is not one."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split("\t", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    try:
        ts = float(parts[0])
    except ValueError:
        return None
    return RecentEvent(parts[2], parts[1], ts)


def decode_all(raw: list[bytes] | None) -> tuple[RecentEvent, ...]:
    """A ``LRANGE`` answer, most recent first, unreadable entries left out."""
    if not raw:
        return ()
    found = (decode(r) for r in raw)
    return tuple(e for e in found if e is not None)
