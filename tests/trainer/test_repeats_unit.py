"""Repeat consumption measured on synthetic logs with and without repeats, and the rule."""

from __future__ import annotations

import numpy as np

from streamrec_trainer.dataset import Interactions
from streamrec_trainer.repeats import measure, seen_rule

DAY = 86_400.0
T0 = 1_700_000_000.0


def _log(repeat_p: float, seed: int = 0) -> Interactions:
    """40 users x 30 purchases (and a view before each) over 30 days; each purchase is one of
    the user's earlier items with probability ``repeat_p``, else an item new to the user."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, float]] = []
    for u in range(40):
        had: list[int] = []
        for t in np.sort(rng.uniform(0, 30 * DAY, 30)).tolist():
            if had and rng.random() < repeat_p:
                item = had[int(rng.integers(len(had)))]
            else:
                item = int(rng.choice([i for i in range(400) if i not in had]))
                had.append(item)
            rows.append((f"u{u}", f"i{item}", "purchase", T0 + t))
    users, items, types, ts = (np.asarray(c) for c in zip(*rows, strict=True))
    return Interactions(users, items, types, np.full(len(rows), np.nan), ts.astype(float))


def test_a_shop_without_repeats_excludes_seen_items() -> None:
    m = measure(_log(0.0), 0.2)
    assert m["repeat_share"] == 0.0
    assert m["holdout_seen_share"] == 0.0
    assert m["repeat_by_type"]["purchase"]["events"] > 0
    assert m["seen_hit_rate"] == 0.0
    assert m["novel_hit_rate"] > 0
    rule = seen_rule(m)
    assert rule["mode"] == "exclude"
    assert rule["basis"] == "holdout_seen_share"
    assert m["repurchase_share"] == 0.0
    assert rule["purchased"]["mode"] == "exclude"


def test_a_shop_with_repeats_keeps_them() -> None:
    m = measure(_log(0.6, seed=1), 0.2)
    assert m["repeat_share"] > 0.4
    assert m["holdout_seen_share"] > 0.4
    assert m["lift"] > 1.0  # an item the user had is far likelier to come back than a new one
    rule = seen_rule(m)
    assert rule["mode"] == "keep"
    assert m["repurchase_share"] > 0.4  # every event here is a purchase
    assert rule["purchased"]["mode"] == "keep"


def test_a_few_repeats_downweight_seen_items() -> None:
    m = measure(_log(0.15, seed=2), 0.2)
    assert 0.05 < m["holdout_seen_share"] < 0.3
    rule = seen_rule(m, exclude_below=0.05, keep_above=0.3)
    assert rule["mode"] == "downweight"
    assert 0 < rule["factor"] < 1
    assert rule["measured"] is m


def test_too_small_a_holdout_falls_back_to_the_training_repeats() -> None:
    m = measure(_log(0.0), 0.2)
    rule = seen_rule(m, min_events=10**6)
    assert rule["basis"] == "repeat_share"
    assert rule["mode"] == "exclude"


def test_views_before_a_purchase_are_not_repurchases() -> None:
    log = _log(0.0, seed=3)
    n = len(log)
    # every purchase preceded by a view of the same item a minute earlier
    both = Interactions(
        np.concatenate([log.user_ids, log.user_ids]),
        np.concatenate([log.item_ids, log.item_ids]),
        np.concatenate([np.full(n, "view"), log.event_types]),
        np.full(2 * n, np.nan),
        np.concatenate([log.timestamps - 60.0, log.timestamps]),
    )
    m = measure(both, 0.2)
    rule = seen_rule(m)
    assert m["repeat_share"] > 0.4  # in the training part the purchase repeats the view
    # but nobody comes back to an item later: the holdout decides
    assert m["holdout_seen_share"] < 0.05
    assert rule["mode"] == "exclude"
    assert m["repurchase_share"] == 0.0
    assert rule["purchased"]["mode"] == "exclude"  # but nothing is bought twice
