"""Interaction logs made up for the trainer's unit tests."""

from __future__ import annotations

import numpy as np

from streamrec_trainer.dataset import Interactions

DAY = 86_400.0
T0 = 1_700_000_000.0


def clustered_log(seed: int = 0) -> Interactions:
    """Two taste groups over 40 days: users 0..29 buy items 0..14, users 30..59 items 15..29."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        lo = 0 if u < 30 else 15
        for _ in range(25):
            rows.append((f"u{u:02d}", f"i{lo + int(rng.integers(0, 15)):02d}", "purchase"))
    n = len(rows)
    users, items, types = (np.asarray(col) for col in zip(*rows, strict=True))
    return Interactions(users, items, types, np.full(n, np.nan), T0 + rng.uniform(0, 40 * DAY, n))
