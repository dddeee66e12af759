"""Evaluation protocol and metrics, and the offline eval runner (synthetic logs only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec_trainer.cli import main as streamrec
from streamrec_trainer.dataset import Interactions
from streamrec_trainer.evaluate import evaluate, make_holdout, rank_metrics, temporal_holdout
from streamrec_trainer.offline import run_eval

DAY = 86_400.0
T0 = 1_300_000_000.0


def _log(rows: list[tuple[str, str, float]]) -> Interactions:
    return Interactions.from_records(
        {"user_id": u, "item_id": i, "event_type": "purchase", "ts": t} for u, i, t in rows
    )


def test_rank_metrics_by_hand() -> None:
    ranked = np.array([[0, 1, 2, 3], [4, 5, -1, -1]], dtype=np.int32)
    targets = sp.csr_matrix((np.ones(3, dtype=np.float32), ([0, 0, 1], [1, 3, 9])), shape=(2, 10))
    m = rank_metrics(ranked, targets, n_items=10, ks=(2, 4))
    ndcg2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    ndcg4 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    expected = {
        "hr@2": 0.5,
        "precision@2": 0.25,
        "recall@2": 0.25,
        "ndcg@2": ndcg2 / 2,
        "map@2": 0.125,
        "coverage@2": 0.4,
        "hr@4": 0.5,
        "precision@4": 0.25,
        "recall@4": 0.5,
        "ndcg@4": ndcg4 / 2,
        "map@4": 0.25,
        "coverage@4": 0.6,
    }
    assert m == pytest.approx(expected)


def _holdout_log() -> tuple[Interactions, Interactions, float]:
    train = _log(
        [("u1", "a", T0), ("u1", "b", T0), ("u2", "a", T0), ("u4", "a", T0), ("u5", "c", T0)]
    )
    cutoff = T0 + DAY
    test = _log(
        [
            ("u1", "b", cutoff),  # repeat: not a novel target
            ("u1", "c", cutoff),
            ("u1", "z", cutoff),  # unknown item: cannot be ranked, not a target
            ("u2", "b", cutoff),
            ("u3", "a", cutoff),  # no training history: skipped
            ("u4", "a", cutoff),  # only a repeat: no novel target, skipped
        ]
    )
    return train, test, cutoff


def test_make_holdout_novel_items_only() -> None:
    train, test, cutoff = _holdout_log()
    h = make_holdout(train, test, cutoff)
    assert h.item_ids.tolist() == ["a", "b", "c"]
    assert [h.user_ids[u] for u in h.users] == ["u1", "u2"]
    assert h.targets.toarray().tolist() == [[0, 0, 1], [0, 1, 0]]
    assert (h.n_test_users, h.n_skipped_no_history, h.n_skipped_no_targets) == (4, 1, 1)
    assert h.summary()["n_evaluated_users"] == 2


def test_make_holdout_all_items() -> None:
    train, test, cutoff = _holdout_log()
    h = make_holdout(train, test, cutoff, novel_only=False)
    assert [h.user_ids[u] for u in h.users] == ["u1", "u2", "u4"]
    assert h.targets.toarray().tolist() == [[0, 1, 1], [0, 1, 0], [1, 0, 0]]


class _Fixed:
    """A scorer returning fixed per-item scores for everyone."""

    name = "fixed"

    def __init__(self, scores: list[float]) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.scores, (users.shape[0], 1))


def test_evaluate_excludes_seen_items_from_the_ranking() -> None:
    train, test, cutoff = _holdout_log()
    h = make_holdout(train, test, cutoff)
    # Item "a" scores best but both evaluated users bought it in training: it must be skipped.
    m = evaluate(_Fixed([9.0, 2.0, 1.0]), h, ks=(1, 2))
    # u1 (seen a, b): ranking [c] -> hit at 1; u2 (seen a): ranking [b, c] -> hit at 1.
    assert m["hr@1"] == 1.0
    assert m["ndcg@1"] == 1.0
    assert m["coverage@1"] == pytest.approx(2 / 3)
    assert m["n_users"] == 2.0
    # Without novel-only, "a" is ranked first for everyone.
    h_all = make_holdout(train, test, cutoff, novel_only=False)
    m_all = evaluate(_Fixed([9.0, 2.0, 1.0]), h_all, ks=(1,))
    assert m_all["hr@1"] == pytest.approx(1 / 3)


def _synthetic_events(path: Path, seed: int, test_seed: int | None = None) -> None:
    """Two taste clusters over 100 days; ``test_seed`` re-draws only the last 20 days."""
    lines = []
    for part, rng in (
        ("train", np.random.default_rng(seed)),
        ("test", np.random.default_rng(seed + 1000 if test_seed is None else test_seed)),
    ):
        for n in range(500 if part == "train" else 150):
            user = int(rng.integers(0, 60))
            group = user // 30
            item = (
                int(rng.integers(0, 12)) + 12 * group
                if rng.random() < 0.85
                else int(rng.integers(0, 24))
            )
            day = rng.uniform(0, 79.9) if part == "train" else rng.uniform(80.1, 100)
            lines.append(
                {
                    "event_id": f"{part}{n}",
                    "user_id": f"u{user}",
                    "event_type": "purchase" if rng.random() < 0.5 else "view",
                    "product_id": f"p{item}",
                    "timestamp": T0 + day * DAY,
                }
            )
        lines.append(
            {
                "event_id": f"{part}-edge",
                "user_id": "u0",
                "event_type": "view",
                "product_id": "p0",
                "timestamp": T0 + (0 if part == "train" else 100) * DAY,
            }
        )
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")


SMALL_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular_baseline": [{"half_life_days": None, "cap": 5.0}],
    "popular": [{"half_life_days": None, "cap": 5.0}, {"half_life_days": 10.0, "cap": None}],
    "itemknn_bm25": [
        {"half_life_days": None, "k": 5, "binary": True},
        {"half_life_days": 30.0, "k": 20, "binary": False},
    ],
    "itemknn_cosine": [{"half_life_days": None, "k": 10, "binary": True}],
    "als": [
        {"half_life_days": None, "factors": 4, "regularization": 0.1, "alpha": 1.0},
        {"half_life_days": None, "factors": 8, "regularization": 1.0, "alpha": 0.2},
    ],
    "ease": [{"half_life_days": None, "l2": 10.0, "binary": True}],
    "content": [{"half_life_days": None}],
    "content_to_als": [{"l2": 1.0}],
    "sknn": [{"k": 20, "sample": 50}],
}


def test_temporal_holdout_on_synthetic_log(tmp_path: Path) -> None:
    _synthetic_events(tmp_path / "ev.jsonl", seed=1)
    from streamrec_trainer.dataset import load

    h = temporal_holdout(load(tmp_path / "ev.jsonl", "events").interactions)
    assert h.cutoff == pytest.approx(T0 + 80 * DAY)
    assert h.users.size > 10


def test_run_eval_writes_reports_and_never_selects_on_test(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _synthetic_events(a, seed=1)
    _synthetic_events(b, seed=1, test_seed=99)  # same train/validation period, other test period
    report_a = run_eval(
        a, "events", tmp_path / "a.md", grids=SMALL_GRIDS, threads=1, progress=False
    )
    report_b = run_eval(b, "events", None, grids=SMALL_GRIDS, threads=1, progress=False)
    names = [r.algorithm for r in report_a.results]
    assert names == list(SMALL_GRIDS)
    for ra, rb in zip(report_a.results, report_b.results, strict=True):
        assert ra.params == rb.params  # chosen on validation only
        assert ra.validation == rb.validation
        assert len(ra.grid) == len(SMALL_GRIDS[ra.algorithm])
    assert any(
        ra.test != rb.test for ra, rb in zip(report_a.results, report_b.results, strict=True)
    )
    md = (tmp_path / "a.md").read_text(encoding="utf-8")
    assert "| als |" in md
    assert "HR@20" in md
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert data["test_holdout"]["n_evaluated_users"] > 0
    assert data["reference"] == {}
    als = next(r for r in report_a.results if r.algorithm == "als")
    ease = next(r for r in report_a.results if r.algorithm == "ease")
    pop = next(r for r in report_a.results if r.algorithm == "popular_baseline")
    # Cluster structure is learnable: personalised models beat popularity on this log.
    assert max(als.test["ndcg@20"], ease.test["ndcg@20"]) > pop.test["ndcg@20"]


def test_streamrec_eval_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ev.jsonl"
    _synthetic_events(path, seed=2)
    out = tmp_path / "r.md"
    code = streamrec(
        [
            "eval",
            str(path),
            "--format",
            "events",
            "--out",
            str(out),
            "--algorithms",
            "popular_baseline",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    assert out.exists()
    assert out.with_suffix(".json").exists()
    assert "popular_baseline" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown algorithms"):
        run_eval(path, "events", None, algorithms=["nope"], progress=False)
