"""Event weights and event-time decay, shared by the trainer and the stream processor.

One definition so that the matrix the trainer factorises and the live profile the stream
processor folds in weigh the same event the same way.

Weights (``event_weight``)
    ``view`` 1, ``click`` 2, ``add_to_cart`` 3, ``purchase`` 5, ``remove_from_cart`` -3 (it
    cancels one ``add_to_cart`` of the same item), ``rating`` ``5 * clip(value, 0, 5) / 5``, i.e.
    the star value itself: a 5-star rating weighs like a purchase, a 1-star rating like a view.
    A ``rating`` without a value weighs like a view. A purchase weighs 5 whatever its quantity
    (wholesale quantities would otherwise swamp everything). Unknown event types weigh 0.

Decay
    A weight ``w`` observed at event time ``t`` is worth ``w * 0.5 ** ((t_ref - t) / half_life)``
    at reference event time ``t_ref``. ``t_ref`` is always an *event* time (the end of the data
    window for the trainer, the newest event of the user for the processor), never the wall
    clock, so replaying an old log gives the same numbers as receiving it live. Events newer than
    ``t_ref`` are not amplified (age is clipped at 0). ``half_life_days=None`` disables decay.

Per (user, item) the decayed weights are summed; cells whose net weight is <= 0 (for example an
add_to_cart cancelled by a remove_from_cart) carry no interaction. ALS turns the net weight ``w``
into the confidence ``c = 1 + alpha * w`` (see ``streamrec_shared.factors.confidence``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from streamrec_shared.events import EVENT_TYPES, EventType

SECONDS_PER_DAY = 86_400.0

VIEW_WEIGHT = 1.0
CLICK_WEIGHT = 2.0
ADD_TO_CART_WEIGHT = 3.0
REMOVE_FROM_CART_WEIGHT = -ADD_TO_CART_WEIGHT
PURCHASE_WEIGHT = 5.0
RATING_MAX = 5.0

EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "view": VIEW_WEIGHT,
        "click": CLICK_WEIGHT,
        "add_to_cart": ADD_TO_CART_WEIGHT,
        "remove_from_cart": REMOVE_FROM_CART_WEIGHT,
        "purchase": PURCHASE_WEIGHT,
    }
)
"""Fixed weight per event type of ``streamrec_shared.events.EVENT_TYPES``; ``rating`` depends
on its value (see ``event_weight``)."""
VALUE_WEIGHTED: frozenset[EventType] = frozenset({"rating"})
"""Event types whose weight depends on the event's value."""

if set(EVENT_WEIGHTS) | VALUE_WEIGHTED != set(EVENT_TYPES):  # pragma: no cover (import-time)
    raise RuntimeError("every event type in events.EVENT_TYPES needs a weight here")


def rating_weight(value: float | None) -> float:
    """Weight of a rating: ``PURCHASE_WEIGHT * clip(value, 0, RATING_MAX) / RATING_MAX``.

    With the 1..5 star scale this is the star value itself. ``None`` or NaN weighs like a view.
    """
    if value is None or math.isnan(value):
        return VIEW_WEIGHT
    return PURCHASE_WEIGHT * min(max(float(value), 0.0), RATING_MAX) / RATING_MAX


def event_weight(event_type: str, value: float | None = None) -> float:
    """Weight of one event before decay (0.0 for an unknown event type)."""
    if event_type == "rating":
        return rating_weight(value)
    return EVENT_WEIGHTS.get(event_type, 0.0)


def event_weights(event_types: ArrayLike, values: ArrayLike | None = None) -> NDArray[np.float32]:
    """Vectorised ``event_weight``.

    Parameters
    ----------
    event_types : array_like (n,) of str
    values : array_like (n,) float, optional; NaN where an event carries no value.

    Returns
    -------
    ndarray (n,) float32 weights before decay.
    """
    types = np.asarray(event_types, dtype=np.str_)
    out = np.zeros(types.shape[0], dtype=np.float32)
    for name, weight in EVENT_WEIGHTS.items():
        out[types == name] = weight
    is_rating = types == "rating"
    if np.any(is_rating):
        if values is None:
            out[is_rating] = VIEW_WEIGHT
        else:
            vals = np.asarray(values, dtype=np.float64)[is_rating]
            rated = PURCHASE_WEIGHT * np.clip(vals, 0.0, RATING_MAX) / RATING_MAX
            out[is_rating] = np.where(np.isnan(vals), VIEW_WEIGHT, rated)
    return out


def decay_factor(event_ts: float, reference_ts: float, half_life_days: float | None) -> float:
    """``0.5 ** (max(reference_ts - event_ts, 0) / half_life)``; 1.0 without a half-life.

    Both times are unix seconds of *event* time; ``half_life_days`` None disables decay.
    """
    if half_life_days is None:
        return 1.0
    if half_life_days <= 0:
        raise ValueError("half_life_days must be > 0 or None")
    age_days = max(reference_ts - event_ts, 0.0) / SECONDS_PER_DAY
    return float(0.5 ** (age_days / half_life_days))


def decay_factors(
    event_ts: ArrayLike, reference_ts: float, half_life_days: float | None
) -> NDArray[np.float64]:
    """Vectorised ``decay_factor``: ndarray (n,) float64 in (0, 1] for event times (n,) seconds."""
    ts = np.asarray(event_ts, dtype=np.float64)
    if half_life_days is None:
        return np.ones(ts.shape[0], dtype=np.float64)
    if half_life_days <= 0:
        raise ValueError("half_life_days must be > 0 or None")
    age_days = np.maximum(reference_ts - ts, 0.0) / SECONDS_PER_DAY
    return np.asarray(np.exp2(-age_days / half_life_days), dtype=np.float64)


def decayed_event_weights(
    event_types: ArrayLike,
    values: ArrayLike | None,
    event_ts: ArrayLike,
    reference_ts: float,
    half_life_days: float | None,
) -> NDArray[np.float32]:
    """Weights of events (n,) decayed to ``reference_ts``: ndarray (n,) float32."""
    base = event_weights(event_types, values).astype(np.float64)
    return (base * decay_factors(event_ts, reference_ts, half_life_days)).astype(np.float32)


def accumulate(
    total: float,
    total_ts: float,
    weight: float,
    event_ts: float,
    half_life_days: float | None,
) -> tuple[float, float]:
    """Add one event to a running decayed sum; returns ``(new_total, new_total_ts)``.

    ``total`` is the decayed sum valued at event time ``total_ts``. The result is valued at
    ``max(total_ts, event_ts)``: an in-order event first decays the old total to its own time,
    a late (out-of-order) event is decayed to ``total_ts`` before being added. The order in which
    events arrive therefore does not change the result (up to float rounding).
    """
    if event_ts >= total_ts:
        return total * decay_factor(total_ts, event_ts, half_life_days) + weight, event_ts
    return total + weight * decay_factor(event_ts, total_ts, half_life_days), total_ts


def value_at(total: float, total_ts: float, at_ts: float, half_life_days: float | None) -> float:
    """A decayed sum valued at ``total_ts`` read at the later event time ``at_ts``."""
    return total * decay_factor(total_ts, at_ts, half_life_days)
