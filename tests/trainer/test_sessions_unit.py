"""Sessions and the next-item protocol; the sknn trainer module."""

from __future__ import annotations

import json

import numpy as np

from streamrec_shared import session_knn
from streamrec_trainer import sessions
from streamrec_trainer.dataset import Interactions
from streamrec_trainer.models.sknn import SknnParams, fit_sknn


def _log() -> Interactions:
    """Two users; u1 clicks a, b, c then (2 h later) c, d; u2 clicks b, b, c, remove_from_cart d."""
    rows = [
        ("u1", "a", "view", 0), ("u1", "b", "view", 60), ("u1", "c", "click", 120),
        ("u1", "c", "view", 7320), ("u1", "d", "view", 7380),
        ("u2", "b", "view", 10), ("u2", "b", "click", 20), ("u2", "c", "view", 30),
        ("u2", "d", "remove_from_cart", 40),
    ]  # fmt: skip
    return Interactions(
        user_ids=[r[0] for r in rows], item_ids=[r[1] for r in rows],
        event_types=[r[2] for r in rows], values=[np.nan] * len(rows),
        timestamps=[float(r[3]) for r in rows],
    )  # fmt: skip


def test_sessions_split_at_gaps_and_collapse_repeats() -> None:
    log = _log()
    found = sessions.sessionize(log, gap_s=1800)
    vocab = log.item_vocab.tolist()
    got = [[vocab[i] for i in found.session(s).tolist()] for s in range(len(found))]
    assert got == [["a", "b", "c"], ["b", "c"], ["c", "d"]]  # by start; u2: b once, no removal
    assert found.start.tolist() == [0.0, 10.0, 7320.0]
    train, test = sessions.split(found, 7000.0)
    assert (len(train), len(test)) == (2, 1)


def test_next_item_protocol_counts_every_next_click_per_segment() -> None:
    # 4 items; training sessions always go 0 -> 1 -> 2 -> 3
    train = sessions.from_rows(
        np.repeat(np.arange(50), 4), np.tile(np.arange(4), 50), np.arange(200, dtype=np.float64)
    )
    test = sessions.from_rows(np.zeros(4, np.int64), np.arange(4), np.arange(4.0) + 1e6)
    report = sessions.next_item_report(train, test, 4, k=2)
    assert report["protocol"]["n_cases"] == 3
    sknn = report["sknn"]
    assert sknn["hr@2"] == 1.0
    assert sknn["mrr@2"] == 1.0  # the item after the latest one leads
    assert sknn["segments"]["new"]["n"] == 3.0
    assert set(report) == {"sknn", "session_itemknn", "last_itemknn", "popularity", "protocol"}


def test_fit_ships_the_index_and_its_own_next_item_metrics() -> None:
    n = 40
    rows_u, rows_i, rows_t = [], [], []
    for s in range(200):  # one session per user a day apart, clicks a minute apart
        start = s * 3600.0
        for j in range(4):
            rows_u.append(f"u{s}")
            rows_i.append(f"p{(s + j) % n:03d}")
            rows_t.append(start + 60.0 * j)
    log = Interactions(rows_u, rows_i, ["view"] * len(rows_u), [np.nan] * len(rows_u), rows_t)
    item_ids = np.asarray(sorted(set(rows_i)), dtype=np.str_)
    model = fit_sknn(log, item_ids, SknnParams(test_days=1.0, eval_sessions=50))
    assert model.index.n_items == n
    assert model.next_item["sknn"]["n"] > 0
    assert model.next_item["sknn"]["hr@20"] >= model.next_item["popularity"]["hr@20"]
    from streamrec_trainer.models import sknn as module

    shipped = module._bundle(model, None)  # type: ignore[arg-type]
    assert json.loads(str(shipped["next_item"]))["protocol"]["k"] == 20
    assert session_knn.SessionIndex.scoring(shipped) == (model.k, model.sequence_decay)
    scores = model.score(np.array([0]), _row(n, [5, 6]))
    assert scores.shape == (1, n)
    ranked = [i for i in np.argsort(-scores[0], kind="stable").tolist() if i not in (5, 6)]
    assert set(ranked[:2]) == {4, 7}  # the neighbours of 5 and 6 in the sessions


def _row(n: int, items: list[int]) -> object:
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(len(items), np.float32), ([0] * len(items), items)), (1, n))
