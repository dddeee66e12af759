"""Repeat consumption, measured on the training window, and the seen-items rule it implies.

Some shops sell what people buy again (groceries, consumables), others what nobody buys twice
(furniture, the Online Retail protocol's novel items). Whether a recommender should show a user
what the user already had is a property of the data, so the trainer measures it and publishes a
rule with the model (``ModelBundle.extra["seen_rule"]``), which the recommender follows unless a
request says ``include_seen=true|false``.

Measured, per event type and pooled over the positive ones (weight > 0):

* ``repeat_share``: on the training part, the share of events whose item the user had already
  interacted with earlier (any event type);
* ``holdout_seen_share``: on the holdout (the last ``holdout_fraction`` of event time), the share
  of events of users with training history whose item the user had in training;
* ``seen_hit_rate`` / ``novel_hit_rate``: the chance that one (user, item) pair the user had in
  training comes back in the holdout, and that one pair the user did not have does (users with
  history who are active in the holdout), with their ratio ``lift``.

* ``repurchase_share`` / ``holdout_repurchase_share``: the same for purchases of items the
  user had bought before (buying again is what matters for bought items: a view before a
  purchase is the normal funnel, not a repeat).

The rule (pooled ``holdout_seen_share``, or ``repeat_share`` when the holdout has fewer than
``min_events`` such events): below ``exclude_below`` -> ``exclude`` (seen items are never
shown); at or above ``keep_above`` -> ``keep`` (ranked like any item); between -> ``downweight``
with ``factor = share / keep_above`` (seen items' scores are scaled down by it). Items the user
bought get their own rule (``purchased``) from the re-purchase shares, the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_shared.weights import EVENT_WEIGHTS
from streamrec_trainer.dataset import Interactions, temporal_split

MODES = ("exclude", "downweight", "keep")


def _keys(log: Interactions, n_items: int) -> NDArray[np.int64]:
    return log.user_codes.astype(np.int64) * n_items + log.item_codes.astype(np.int64)


def _positive_types(type_vocab: NDArray[np.str_]) -> NDArray[np.bool_]:
    """Per event type of the vocabulary: does it express interest (weight > 0; ratings too)."""
    return np.asarray([EVENT_WEIGHTS.get(str(t), 1.0) > 0 for t in type_vocab.tolist()])


def _share(flags: NDArray[np.bool_], types: NDArray[np.int16], vocab: NDArray[np.str_]) -> Any:
    out: dict[str, dict[str, float | int]] = {}
    for code, name in enumerate(vocab.tolist()):
        mask = types == code
        n = int(mask.sum())
        if n:
            out[str(name)] = {"events": n, "share": round(float(flags[mask].mean()), 4)}
    return out


def _purchases(
    log: Interactions, n_items: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_]] | None:
    """(user-item keys of the purchases in time order, whether the user had bought the item
    before), or None when the log has no purchase type."""
    code = np.flatnonzero(log.type_vocab == "purchase")
    if code.size == 0:
        return None
    rows = np.flatnonzero(log.type_codes == code[0])
    rows = rows[np.argsort(log.timestamps[rows], kind="stable")]
    keys = _keys(log, n_items)[rows]
    again = np.ones(keys.size, dtype=bool)
    _, first = np.unique(keys, return_index=True)
    again[first] = False
    return keys, again


def measure(interactions: Interactions, holdout_fraction: float) -> dict[str, Any]:
    """The repeat-consumption figures of the module docstring (JSON-able)."""
    log = interactions
    n = len(log)
    if n == 0:
        return {"events": 0}
    n_items = int(log.item_vocab.size)
    vocab = log.type_vocab
    # repeats in time order on the training part
    train, test, cutoff = (
        temporal_split(log, holdout_fraction) if n > 1 and holdout_fraction > 0 else (log, None, 0)
    )
    tk = _keys(train, n_items)
    order = np.lexsort((train.timestamps, tk))
    first = np.zeros(tk.size, dtype=bool)
    _, first_idx = np.unique(tk[order], return_index=True)
    first[order[first_idx]] = True
    repeat = ~first
    train_pos = _positive_types(vocab)[train.type_codes]
    result: dict[str, Any] = {
        "events": n,
        "repeat_share": round(float(repeat[train_pos].mean()), 4) if train_pos.any() else None,
        "repeat_by_type": _share(repeat, train.type_codes, vocab),
    }
    # re-purchases: purchases of an item the user had bought before (what a shop sells again)
    bought = _purchases(train, n_items)
    if bought is not None:
        keys, again = bought
        result["purchases"] = int(keys.size)
        result["repurchase_share"] = round(float(again.mean()), 4) if keys.size else None
    if test is None or len(test) == 0:
        return result
    known_users = np.unique(train.user_codes)
    has_history = np.isin(test.user_codes, known_users)
    t = test.select(has_history)
    train_pairs = np.unique(tk)
    seen = np.isin(_keys(t, n_items), train_pairs)
    test_pos = _positive_types(vocab)[t.type_codes]
    result["cutoff"] = float(cutoff)
    result["holdout_events"] = int(test_pos.sum())
    result["holdout_seen_share"] = (
        round(float(seen[test_pos].mean()), 4) if test_pos.any() else None
    )
    result["holdout_seen_by_type"] = _share(seen, t.type_codes, vocab)
    if bought is not None:
        test_bought = _purchases(t, n_items)
        if test_bought is not None and test_bought[0].size:
            again_in_test = np.isin(test_bought[0], bought[0])
            # only buyers with a purchase in training can buy again
            buyers = np.unique(bought[0] // n_items)
            mask = np.isin(test_bought[0] // n_items, buyers)
            result["holdout_purchases"] = int(mask.sum())
            result["holdout_repurchase_share"] = (
                round(float(again_in_test[mask].mean()), 4) if mask.any() else None
            )
    # per-pair chances, users with history who are active in the holdout
    active = np.unique(t.user_codes[test_pos])
    if active.size:
        pair_users = train_pairs // n_items
        had = int(np.isin(pair_users, active).sum())  # pairs those users had
        back = np.unique(_keys(t, n_items)[test_pos])
        back_seen = int(np.isin(back, train_pairs).sum())
        back_novel = int(back.size) - back_seen
        novel_pairs = int(active.size) * n_items - had
        seen_rate = back_seen / had if had else 0.0
        novel_rate = back_novel / novel_pairs if novel_pairs else 0.0
        result["seen_hit_rate"] = round(seen_rate, 6)
        result["novel_hit_rate"] = round(novel_rate, 6)
        result["lift"] = round(seen_rate / novel_rate, 3) if novel_rate > 0 else None
    return result


def _decide(
    measured: dict[str, Any],
    holdout: tuple[str, str],
    train: str,
    *,
    exclude_below: float,
    keep_above: float,
    min_events: int,
) -> dict[str, Any]:
    share_key, count_key = holdout
    share: float | None = None
    basis = share_key
    if (measured.get(count_key) or 0) >= min_events:
        share = measured.get(share_key)
    if share is None:
        share, basis = measured.get(train), train
    if share is None:
        mode, factor, basis = "exclude", 0.0, "no_data"
    elif share < exclude_below:
        mode, factor = "exclude", 0.0
    elif share >= keep_above:
        mode, factor = "keep", 1.0
    else:
        mode, factor = "downweight", round(max(0.05, min(1.0, share / keep_above)), 4)
    return {"mode": mode, "factor": factor, "share": share, "basis": basis}


def seen_rule(
    measured: dict[str, Any],
    *,
    exclude_below: float = 0.05,
    keep_above: float = 0.3,
    min_events: int = 20,
) -> dict[str, Any]:
    """The serving rule from ``measure``'s figures: {"mode", "factor", "share", "basis"} for
    items the user had (any event), ``purchased`` the same for items the user bought (from the
    re-purchase shares; no purchases measured: ``exclude``), thresholds and "measured" (see
    the module docstring)."""
    rule = _decide(
        measured, ("holdout_seen_share", "holdout_events"), "repeat_share",
        exclude_below=exclude_below, keep_above=keep_above, min_events=min_events,
    )  # fmt: skip
    rule["purchased"] = _decide(
        measured, ("holdout_repurchase_share", "holdout_purchases"), "repurchase_share",
        exclude_below=exclude_below, keep_above=keep_above, min_events=min_events,
    )  # fmt: skip
    return {
        **rule,
        "exclude_below": exclude_below,
        "keep_above": keep_above,
        "measured": measured,
    }
