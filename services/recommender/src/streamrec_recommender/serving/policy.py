"""Which algorithm answers an ``algorithm=auto`` request: experiments first, else a bandit.

Pure: no I/O. The caller passes the running experiments (from Postgres, cached) and the live
per-segment click statistics (from the online counters in Redis, refreshed in the background).

Experiments
    A running experiment splits users deterministically: ``u = H(experiment, user) in [0, 1)``
    (the first 8 bytes of blake2b, so every pod and every restart agrees), first against the
    experiment's ``traffic`` share, then against the cumulative variant weights. The first
    variant is the control. Several running experiments are tried in name order; a user is in
    at most one (the first that enrols them).

Bandit
    Thompson sampling per user segment over the arms (algorithms): each arm's click-through
    probability has a Beta(1 + hits, 1 + impressions - hits) posterior from the recent window;
    a request draws one sample per arm and takes the largest, so traffic moves towards the
    arm that performs while uncertain arms keep being explored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec_shared.algorithms import REGISTRY

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
"""Experiment and variant names: short, lowercase (they travel inside rec ids)."""


def unit_hash(*parts: str) -> float:
    """Deterministic uniform number in [0, 1) from the parts (blake2b, 8 bytes)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Variant:
    name: str
    algorithm: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """An A/B(/n) test of algorithms. ``variants[0]`` is the control."""

    name: str
    status: str
    variants: tuple[Variant, ...]
    traffic: float = 1.0
    description: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def control(self) -> Variant:
        return self.variants[0]

    def variant_index(self, name: str) -> int | None:
        for i, v in enumerate(self.variants):
            if v.name == name:
                return i
        return None

    def assign(self, user_id: str) -> Variant | None:
        """The user's variant, or None when the user is outside the experiment's traffic."""
        if not self.variants:
            return None
        if self.traffic < 1.0 and unit_hash(self.name, "traffic", user_id) >= self.traffic:
            return None
        total = sum(max(v.weight, 0.0) for v in self.variants)
        if total <= 0:
            return None
        u = unit_hash(self.name, user_id) * total
        acc = 0.0
        for v in self.variants:
            acc += max(v.weight, 0.0)
            if u < acc:
                return v
        return self.variants[-1]


def validate_experiment(exp: Experiment) -> list[str]:
    """Problems with an experiment definition (empty when valid)."""
    problems: list[str] = []
    if not NAME_PATTERN.match(exp.name):
        problems.append("name: lowercase letters, digits, '-' or '_', at most 32 characters")
    if exp.status not in ("draft", "running", "stopped"):
        problems.append("status: one of draft, running, stopped")
    if not 2 <= len(exp.variants) <= 10:
        problems.append("variants: between 2 and 10 variants (the first is the control)")
    seen: set[str] = set()
    for i, v in enumerate(exp.variants):
        if not NAME_PATTERN.match(v.name):
            problems.append(f"variants[{i}].name: lowercase letters, digits, '-' or '_'")
        if v.name in seen:
            problems.append(f"variants[{i}].name: duplicate variant name {v.name!r}")
        seen.add(v.name)
        if v.algorithm not in REGISTRY.served:
            problems.append(f"variants[{i}].algorithm: one of {', '.join(REGISTRY.served)}")
        if not v.weight >= 0:
            problems.append(f"variants[{i}].weight: must be >= 0")
    if exp.variants and sum(max(v.weight, 0.0) for v in exp.variants) <= 0:
        problems.append("variants: weights must not all be 0")
    if not 0.0 < exp.traffic <= 1.0:
        problems.append("traffic: a share in (0, 1]")
    return problems


def assign(experiments: Sequence[Experiment], user_id: str) -> tuple[Experiment, Variant] | None:
    """The first running experiment (by name) that enrols the user, with the user's variant."""
    for exp in sorted(experiments, key=lambda e: e.name):
        if not exp.running:
            continue
        variant = exp.assign(user_id)
        if variant is not None:
            return exp, variant
    return None


@dataclass(frozen=True)
class ArmStats:
    """Recent feedback of one arm in one segment: impressions and hits (clicked responses)."""

    impressions: int = 0
    hits: int = 0


class ThompsonBandit:
    """Thompson sampling over ``arms`` with Beta(prior_a + hits, prior_b + misses) posteriors."""

    def __init__(self, arms: Sequence[str], *, prior_a: float = 1.0, prior_b: float = 1.0) -> None:
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = tuple(arms)
        self.prior_a = prior_a
        self.prior_b = prior_b

    def choose(
        self,
        stats: Mapping[str, ArmStats],
        rng: np.random.Generator,
        *,
        available: Sequence[str] | None = None,
    ) -> str:
        """Draw from each arm's posterior and return the arm with the largest draw.

        stats: arm -> ArmStats for the user's segment (missing arms have no data yet).
        available: arms the current model can serve (default: all).
        """
        arms = [a for a in self.arms if available is None or a in available] or list(self.arms)
        best, best_draw = arms[0], -1.0
        for arm in arms:
            s = stats.get(arm)
            impressions = max(s.impressions, 0) if s is not None else 0
            hits = min(max(s.hits, 0), impressions) if s is not None else 0
            # one scalar draw per arm: the same draws as rng.beta over arrays of the
            # parameters (in arm order), at a quarter of the cost for a handful of arms
            draw = float(rng.beta(self.prior_a + hits, self.prior_b + impressions - hits))
            if draw > best_draw:  # the first of equal draws, as argmax
                best, best_draw = arm, draw
        return best

    def win_probabilities(
        self, stats: Mapping[str, ArmStats], rng: np.random.Generator, *, draws: int = 2000
    ) -> dict[str, float]:
        """Monte-Carlo probability that each arm is the best one (for the metrics endpoint)."""
        arms = list(self.arms)
        a = np.array([self.prior_a + stats.get(x, ArmStats()).hits for x in arms], dtype=float)
        b = np.array(
            [
                self.prior_b
                + max(stats.get(x, ArmStats()).impressions - stats.get(x, ArmStats()).hits, 0)
                for x in arms
            ],
            dtype=float,
        )
        samples = rng.beta(a[:, None], b[:, None], size=(len(arms), draws))
        wins = np.bincount(np.argmax(samples, axis=0), minlength=len(arms))
        return {arm: float(wins[i]) / draws for i, arm in enumerate(arms)}
