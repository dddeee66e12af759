"""Training half-life sweep on the Online Retail protocol: NDCG@20 of every fitted algorithm (and
``hybrid``) per training half-life, on the trainer's holdout (the last 10% of the protocol's
training period) and on the protocol's test users, the users' histories decayed with one fixed
half-life (``--scoring``, as the trainer scores them). Hybrid's member weights are searched on
the holdout and reused on the test users, as the trainer ships them. The evidence behind
``streamrec_trainer.decay`` (README "Replay").

Run: ``uv run python tests/bench/half_life_sweep.py --grid 7,14,21,30,60,90,180,365,none``
(about 15 s per half-life on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from streamrec_trainer.dataset import Dataset, Interactions, load_online_retail, temporal_split
from streamrec_trainer.evaluate import Holdout, evaluate_users, make_holdout
from streamrec_trainer.models.fit import fit_all
from streamrec_trainer.models.hybrid import learn_weights
from streamrec_trainer.pipeline import train_params
from streamrec_trainer.settings import TrainingSettings

CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "online-retail"
CSV = CSV / "online_retail.csv.gz"


def _days(text: str) -> float | None:
    return None if text == "none" else float(text)


def score(
    data: Dataset,
    train: Interactions,
    holdout: Holdout,
    half_life: float | None,
    scoring: float | None,
    weights: dict[str, float] | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """NDCG@20 per algorithm fitted on ``train`` with ``half_life``; hybrid's weights searched
    on ``holdout`` when ``weights`` is None. Returns (figures, the weights used)."""
    params = dataclasses.replace(train_params(TrainingSettings()), half_life_days=half_life)
    fitted = fit_all(
        Dataset(train, data.catalog),
        params,
        reference_ts=holdout.cutoff,
        lists=False,
        exact_users=holdout.user_ids[holdout.users],
    )
    if weights is None:
        x = holdout.matrix(scoring).matrix
        users = holdout.users
        found = learn_weights(fitted.fusion_members(), users, x[users], holdout.targets, seed=42)
        weights = found["weights"]
    fitted = dataclasses.replace(fitted, hybrid_weights=weights)
    figures = {
        name: round(evaluate_users(scorer, holdout, half_life_days=scoring, k=20)[0]["ndcg@20"], 4)
        for name, scorer in fitted.scorers().items()
    }
    return figures, dict(weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="7,14,30,60,90,180,365,none")
    parser.add_argument("--scoring", default="90", help="users' history half-life (days|none)")
    args = parser.parse_args()
    scoring = _days(args.scoring)
    data = load_online_retail(CSV)
    train_part, test_part, cutoff = temporal_split(data.interactions, 0.2)
    test = make_holdout(train_part, test_part, cutoff, novel_only=True)
    inner, validation, inner_cutoff = temporal_split(train_part, 0.1)
    holdout = make_holdout(inner, validation, inner_cutoff, max_users=10_000, seed=42)
    out: dict[str, Any] = {
        "holdout_users": int(holdout.users.size),
        "test_users": int(test.users.size),
    }
    for text in args.grid.split(","):
        half_life = _days(text)
        on_holdout, weights = score(data, inner, holdout, half_life, scoring, None)
        on_test, _ = score(data, train_part, test, half_life, scoring, weights)
        out[text] = {"holdout": on_holdout, "test": on_test, "hybrid_weights": weights}
        print(text, json.dumps(out[text]), flush=True)


if __name__ == "__main__":
    main()
