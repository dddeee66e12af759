"""Event weights, decay, matrices, splits and loaders (synthetic data only)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamrec_shared import weights as ew
from streamrec_trainer.dataset import (
    Catalog,
    Interactions,
    build_matrix,
    catalog_from_records,
    index_of,
    load,
    load_events_jsonl,
    load_online_retail,
    parse_timestamp,
    recent_users,
    temporal_split,
)

DAY = 86_400.0
T0 = 1_300_000_000.0


def _log(rows: list[tuple[str, str, str, float | None, float]]) -> Interactions:
    return Interactions.from_records(
        {"user_id": u, "item_id": i, "event_type": e, "value": v, "ts": t} for u, i, e, v, t in rows
    )


# --- weights -----------------------------------------------------------------------------------


def test_event_weights_table() -> None:
    assert ew.event_weight("view") == 1.0
    assert ew.event_weight("click") == 2.0
    assert ew.event_weight("add_to_cart") == 3.0
    assert ew.event_weight("remove_from_cart") == -3.0
    assert ew.event_weight("purchase") == 5.0
    assert ew.event_weight("rating", 5) == 5.0
    assert ew.event_weight("rating", 1) == 1.0
    assert ew.event_weight("rating", 9) == 5.0
    assert ew.event_weight("rating", None) == ew.VIEW_WEIGHT
    assert ew.event_weight("unknown") == 0.0
    vec = ew.event_weights(
        ["view", "rating", "purchase", "rating", "nope"], [math.nan, 3.0, 2.0, math.nan, 1.0]
    )
    np.testing.assert_array_equal(vec, np.array([1, 3, 5, 1, 0], dtype=np.float32))


def test_decay_uses_event_time_and_half_life() -> None:
    assert ew.decay_factor(T0 - 10 * DAY, T0, 10.0) == pytest.approx(0.5)
    assert ew.decay_factor(T0 - 20 * DAY, T0, 10.0) == pytest.approx(0.25)
    assert ew.decay_factor(T0 + DAY, T0, 10.0) == 1.0  # newer than the reference: not amplified
    assert ew.decay_factor(T0 - 1e6, T0, None) == 1.0
    np.testing.assert_allclose(
        ew.decay_factors([T0, T0 - 5 * DAY], T0, 5.0), [1.0, 0.5], rtol=1e-12
    )
    with pytest.raises(ValueError, match="half_life"):
        ew.decay_factor(T0, T0, 0.0)


def test_accumulate_is_order_independent() -> None:
    events = [(5.0, T0), (3.0, T0 + 2 * DAY), (1.0, T0 + 7 * DAY), (-3.0, T0 + 3 * DAY)]
    results = []
    for order in (events, events[::-1], [events[2], events[0], events[3], events[1]]):
        total, ts = 0.0, -math.inf
        for w, t in order:
            total, ts = ew.accumulate(total, ts, w, t, 4.0)
        results.append(ew.value_at(total, ts, T0 + 10 * DAY, 4.0))
    expected = sum(w * 0.5 ** ((T0 + 10 * DAY - t) / DAY / 4.0) for w, t in events)
    np.testing.assert_allclose(results, expected, rtol=1e-12)


# --- matrices ----------------------------------------------------------------------------------


def test_build_matrix_weights_cancellation_and_decay() -> None:
    log = _log(
        [
            ("u1", "a", "view", None, T0),
            ("u1", "a", "click", None, T0),
            ("u1", "b", "add_to_cart", None, T0),
            ("u1", "b", "remove_from_cart", None, T0),
            ("u2", "a", "purchase", 3.0, T0 - 10 * DAY),
            ("u2", "c", "rating", 4.0, T0),
        ]
    )
    m = build_matrix(log)
    assert m.matrix.dtype == np.float32
    assert m.user_ids.tolist() == ["u1", "u2"]
    assert m.item_ids.tolist() == ["a", "b", "c"]
    dense = m.matrix.toarray()
    np.testing.assert_allclose(dense, [[3.0, 0.0, 0.0], [5.0, 0.0, 4.0]])
    assert m.matrix.nnz == 3  # the cancelled cart is not stored
    decayed = build_matrix(log, half_life_days=10.0).matrix.toarray()
    assert decayed[1, 0] == pytest.approx(2.5)  # a purchase one half-life before the newest event
    assert m.reference_ts == T0
    np.testing.assert_allclose(m.last_ts, [T0, T0])


def test_remove_after_add_later_drops_the_cell() -> None:
    log = _log(
        [
            ("u", "x", "add_to_cart", None, T0 - DAY),
            ("u", "x", "remove_from_cart", None, T0),
            ("u", "y", "view", None, T0),
        ]
    )
    m = build_matrix(log, half_life_days=30.0)
    assert m.matrix.toarray().tolist() == [[0.0, 1.0]]


def test_build_matrix_with_given_ids() -> None:
    log = _log([("u1", "a", "view", None, T0), ("u9", "z", "view", None, T0)])
    m = build_matrix(log, user_ids=["u0", "u1"], item_ids=["a", "b"])
    assert m.shape == (2, 2)
    assert m.matrix.toarray().tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert np.isnan(m.last_ts[0])
    assert m.user_index["u1"] == 1
    assert m.item_index["b"] == 1
    assert index_of(np.array(["c", "a", "b"]), ["a", "q", "b"]).tolist() == [1, -1, 2]


def test_temporal_split_by_time_span() -> None:
    stamps = [T0, T0 + 1, T0 + 2, T0 + 8, T0 + 10]
    log = _log([(f"u{k}", "i", "view", None, t) for k, t in enumerate(stamps)])
    train, test, cutoff = temporal_split(log, 0.2)
    assert cutoff == T0 + 8
    assert len(train) + len(test) == len(log)
    assert train.timestamps.max() < cutoff <= test.timestamps.min()
    assert test.user_ids.tolist() == ["u3", "u4"]
    with pytest.raises(ValueError, match="test_fraction"):
        temporal_split(log, 1.0)


def test_recent_users() -> None:
    log = _log(
        [
            ("old", "a", "view", None, T0 - 40 * DAY),
            ("new", "a", "view", None, T0),
            ("mid", "a", "view", None, T0 - 5 * DAY),
        ]
    )
    m = build_matrix(log)
    rows = recent_users(m, days=30)
    assert [m.user_ids[r] for r in rows] == ["new", "mid"]
    assert len(recent_users(m, days=30, limit=1)) == 1


def test_parse_timestamp() -> None:
    assert parse_timestamp(1_600_000_000) == 1_600_000_000.0
    assert parse_timestamp("2020-09-13T12:26:40Z") == 1_600_000_000.0
    assert parse_timestamp("2020-09-13T14:26:40+02:00") == 1_600_000_000.0
    assert parse_timestamp("2020-09-13 12:26:40") == 1_600_000_000.0  # naive = UTC
    with pytest.raises(TypeError):
        parse_timestamp(True)


# --- catalogue and loaders ---------------------------------------------------------------------


def test_catalog_from_records_and_reindex() -> None:
    cat = catalog_from_records(
        [
            {"product_id": "p1", "category": "mugs", "price": 3.5, "name": "Red mug"},
            {"product_id": 7, "price": None, "description": "thing", "attributes": {"c": "red"}},
            {"product_id": "p1", "category": "cups", "price": 4.0, "name": "Red cup"},
        ]
    )
    assert cat.product_ids.tolist() == ["7", "p1"]
    assert cat.categories.tolist() == ["", "cups"]
    assert cat.texts.tolist() == ["thing", "Red cup"]
    assert math.isnan(cat.prices[0])
    assert cat.prices[1] == 4.0
    assert cat.attributes[0] == {"c": "red"}
    re = cat.reindex(["p1", "zz"])
    assert re.categories.tolist() == ["cups", ""]
    assert math.isnan(re.prices[1])
    assert re.attributes[1] == {}
    assert len(Catalog.empty().reindex(["a"])) == 1


def test_load_events_jsonl(tmp_path: Path) -> None:
    lines = [
        {
            "event_id": "e1",
            "user_id": 42,
            "event_type": "view",
            "product_id": "p1",
            "timestamp": 1_600_000_000,
            "price": 2.0,
        },
        {
            "event_id": "e1",
            "user_id": 42,
            "event_type": "view",
            "product_id": "p1",
            "timestamp": 1_600_000_000,
        },
        {
            "event_id": "e2",
            "user_id": "u2",
            "event_type": "rating",
            "product_id": 9,
            "timestamp": "2020-09-13T12:26:41Z",
            "value": 4,
            "price": 3.0,
            "context": {"a": 1},
        },
        {
            "event_id": "e3",
            "user_id": "u2",
            "event_type": "teleport",
            "product_id": "p1",
            "timestamp": 1,
        },
        {"user_id": "u3", "event_type": "purchase", "product_id": "p1"},
    ]
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for obj in lines:
            fh.write(json.dumps(obj) + "\n")
        fh.write("not json\n\n")
    data = load(path, "events")
    log = data.interactions
    assert len(log) == 2  # duplicate event_id, unknown type, missing timestamp, bad line skipped
    assert log.user_ids.tolist() == ["42", "u2"]
    assert log.item_ids.tolist() == ["p1", "9"]
    assert log.timestamps.tolist() == [1_600_000_000.0, 1_600_000_001.0]
    assert math.isnan(log.values[0])
    assert log.values[1] == 4.0
    assert data.catalog.product_ids.tolist() == ["9", "p1"]
    assert data.catalog.prices.tolist() == [3.0, 2.0]
    assert load_events_jsonl(path).interactions.event_types.tolist() == ["view", "rating"]


def test_load_online_retail(tmp_path: Path) -> None:
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    rows = [
        "536365,85123A,WHITE HEART HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
        "536366,85123A,WHITE HEART HOLDER,2,2010-12-02 09:00:00,2.75,13047.0,United Kingdom",
        "C536379,85123A,WHITE HEART HOLDER,-1,2010-12-02 10:00:00,2.55,17850.0,United Kingdom",
        "536380,22728,ALARM CLOCK,4,2010-12-02 11:00:00,3.75,,United Kingdom",
        "536381,22728,,-5,2010-12-02 12:00:00,0,,United Kingdom",
    ]
    path = tmp_path / "retail.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(header + "\n".join(rows) + "\n")
    data = load_online_retail(path)
    log = data.interactions
    assert log.user_ids.tolist() == ["17850", "17850", "13047"]
    assert log.item_ids.tolist() == ["85123A", "71053", "85123A"]
    assert set(log.event_types.tolist()) == {"purchase"}
    assert log.values.tolist() == [6.0, 6.0, 2.0]
    assert log.timestamps[0] == parse_timestamp("2010-12-01T08:26:00+00:00")
    cat = data.catalog
    assert cat.product_ids.tolist() == ["22728", "71053", "85123A"]
    assert cat.texts.tolist() == ["ALARM CLOCK", "WHITE METAL LANTERN", "WHITE HEART HOLDER"]
    assert cat.prices.tolist() == [3.75, 3.39, pytest.approx(2.65)]
    with pytest.raises(ValueError, match="unknown format"):
        load(path, "parquet")
