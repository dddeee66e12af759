"""Online evaluation, pure parts: rec ids, counter layout, aggregation and significance.

Attribution model
    Every response gets a ``rec_id`` that describes itself: when it was served, which algorithm
    and user segment, and (if any) which experiment and variant, signed so that it cannot be
    made up or altered (``streamrec_shared.rec_ids``). An event carrying a valid ``rec_id``
    is feedback on that response without any lookup: a ``purchase`` counts as a conversion,
    any other event type as a click. A purchase *without* ``rec_id`` of an item recommended to
    the same user within the attribution window counts as a conversion of that response (the
    recorder keeps, per user, which rec id showed which product).

Counters (Redis, so every pod agrees; layout in ``streamrec_shared.feedback``)
    The recommender counts impressions (``impressions.py``); the stream processor counts clicks
    and conversions (its ``attribution.py``). CTR = clk / imp, hit rate = hit / imp,
    conversion rate = conv / imp.

Significance
    Each variant against the experiment's control: a two-sided two-proportion z-test on the hit
    rate (one Bernoulli trial per response, which CTR with repeated clicks is not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamrec_recommender.serving.policy import ArmStats, Experiment
from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.feedback import BUCKET_S as BUCKET_S
from streamrec_shared.feedback import KINDS as KINDS
from streamrec_shared.feedback import NONE, parse_field
from streamrec_shared.feedback import SEGMENT_CODES as SEGMENT_CODES
from streamrec_shared.feedback import RecTag as RecTag
from streamrec_shared.feedback import bucket_key as bucket_key
from streamrec_shared.feedback import field as field

ALGORITHM_CODES = REGISTRY.codes
"""Algorithm -> one-letter code in rec ids (``streamrec_shared.algorithms``; live view)."""


@dataclass
class Tally:
    impressions: int = 0
    clicks: int = 0
    hits: int = 0
    conversions: int = 0

    def add(self, kind: str, n: int) -> None:
        if kind == "imp":
            self.impressions += n
        elif kind == "clk":
            self.clicks += n
        elif kind == "hit":
            self.hits += n
        elif kind == "conv":
            self.conversions += n

    def report(self) -> dict[str, Any]:
        n = self.impressions
        return {
            "impressions": n,
            "clicks": self.clicks,
            "hits": self.hits,
            "conversions": self.conversions,
            "ctr": self.clicks / n if n else 0.0,
            "hit_rate": self.hits / n if n else 0.0,
            "conversion_rate": self.conversions / n if n else 0.0,
        }


def two_proportion_z(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> tuple[float, float]:
    """Two-sided two-proportion z-test of B against A: ``(z, p_value)``; (0, 1) if undefined.

    Pooled standard error; z > 0 means B's rate is higher than A's.
    """
    if trials_a <= 0 or trials_b <= 0:
        return 0.0, 1.0
    pa, pb = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / trials_a + 1.0 / trials_b))
    if se == 0.0:
        return 0.0, 1.0
    z = (pb - pa) / se
    return z, math.erfc(abs(z) / math.sqrt(2.0))


def aggregate(
    counts: Iterable[tuple[str, int]],
    experiments: Mapping[str, Experiment],
    *,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The ``/v1/metrics/online`` body from summed counter fields.

    counts: (field, count) pairs as stored (see module doc). experiments: by name, for the
    control variant and the order of variants.
    """
    total = Tally()
    by_algorithm: dict[str, Tally] = {}
    by_segment: dict[str, dict[str, Tally]] = {}
    by_variant: dict[str, dict[str, Tally]] = {}
    for name, n in counts:
        parsed = parse_field(name)
        if parsed is None:
            continue
        kind, algorithm, segment, exp, variant = parsed
        total.add(kind, n)
        by_algorithm.setdefault(algorithm, Tally()).add(kind, n)
        by_segment.setdefault(segment, {}).setdefault(algorithm, Tally()).add(kind, n)
        if exp != NONE and variant != NONE:
            by_variant.setdefault(exp, {}).setdefault(variant, Tally()).add(kind, n)
    out_experiments: dict[str, Any] = {}
    out_rollouts: dict[str, Any] = {}
    for exp_name, variants in sorted(by_variant.items()):
        known = experiments.get(exp_name)
        # a gradual rollout's label (rollout<version>, canary|control), not an experiment
        rollout = known is None and exp_name.startswith("rollout") and exp_name[7:].isdigit()
        if known is not None:
            control = known.control.name
        else:
            control = "control" if rollout and "control" in variants else sorted(variants)[0]
        order = [v.name for v in known.variants] if known is not None else sorted(variants)
        order += [v for v in sorted(variants) if v not in order]
        ctrl = variants.get(control, Tally())
        rows: dict[str, Any] = {}
        for vname in order:
            tally = variants.get(vname, Tally())
            row = tally.report()
            row["control"] = vname == control
            if vname != control:
                z, p = two_proportion_z(ctrl.hits, ctrl.impressions, tally.hits, tally.impressions)
                base = ctrl.hits / ctrl.impressions if ctrl.impressions else 0.0
                lift = (row["hit_rate"] - base) / base if base > 0 else None
                row["significance"] = {
                    "test": "two-proportion z-test on hit_rate vs control",
                    "control": control,
                    "z": z,
                    "p_value": p,
                    "lift": lift,
                    "significant": p < alpha,
                    "better": p < alpha and z > 0,
                }
            rows[vname] = row
        if rollout:
            out_rollouts[exp_name] = {"variants": rows}
            continue
        out_experiments[exp_name] = {
            "control": control,
            "status": known.status if known is not None else "unknown",
            "variants": rows,
        }
    return {
        "total": total.report(),
        "algorithms": {a: t.report() for a, t in sorted(by_algorithm.items())},
        "segments": {
            s: {a: t.report() for a, t in sorted(algs.items())}
            for s, algs in sorted(by_segment.items())
        },
        "experiments": out_experiments,
        "rollouts": out_rollouts,
    }


def arm_stats(counts: Iterable[tuple[str, int]]) -> dict[str, dict[str, ArmStats]]:
    """segment -> algorithm -> ArmStats (impressions, hits) from summed counter fields."""
    acc: dict[str, dict[str, list[int]]] = {}
    for name, n in counts:
        parsed = parse_field(name)
        if parsed is None or parsed.kind not in ("imp", "hit"):
            continue
        slot = acc.setdefault(parsed.segment, {}).setdefault(parsed.algorithm, [0, 0])
        slot[0 if parsed.kind == "imp" else 1] += n
    return {
        seg: {alg: ArmStats(impressions=v[0], hits=v[1]) for alg, v in algs.items()}
        for seg, algs in acc.items()
    }
