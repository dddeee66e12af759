"""Rec ids, counter aggregation and the significance test."""

from __future__ import annotations

import math

import pytest

from streamrec_recommender import online
from streamrec_recommender.online import RecTag
from streamrec_recommender.serving.policy import Experiment, Variant
from streamrec_shared import feedback


def test_rec_id_round_trip_and_length() -> None:
    tag = RecTag(1_700_000_000.123, "itemknn", "light", "a" * 32, "treatment")
    rec_id = online.new_rec_id(tag)
    assert len(rec_id) <= 64
    back = online.parse_rec_id(rec_id)
    assert back is not None
    assert back.algorithm == "itemknn"
    assert back.segment == "light"
    assert back.experiment == "a" * 32
    assert back.variant == "treatment"
    assert back.served_at == pytest.approx(tag.served_at, abs=1e-3)
    plain = online.parse_rec_id(online.new_rec_id(RecTag(5.0, "als", "new")))
    assert plain is not None
    assert plain.experiment is None
    assert online.parse_rec_id("not-a-rec-id") is None
    assert online.parse_rec_id("rzz.qq.1234") is None


def test_two_proportion_z_matches_a_known_value() -> None:
    z, p = online.two_proportion_z(100, 1000, 150, 1000)
    assert z == pytest.approx(3.38, abs=0.01)
    assert p == pytest.approx(math.erfc(3.3806 / math.sqrt(2)), rel=1e-2)
    assert online.two_proportion_z(0, 0, 1, 1) == (0.0, 1.0)
    assert online.two_proportion_z(0, 10, 0, 10) == (0.0, 1.0)


def test_aggregate_reports_rates_and_significance_vs_control() -> None:
    exp = Experiment(
        "ab", "running", (Variant("control", "als", 0.5), Variant("treat", "itemknn", 0.5))
    )
    counts = [
        (online.field("imp", "als", "new", "ab", "control"), 1000),
        (online.field("hit", "als", "new", "ab", "control"), 50),
        (online.field("clk", "als", "new", "ab", "control"), 60),
        (online.field("imp", "itemknn", "new", "ab", "treat"), 1000),
        (online.field("hit", "itemknn", "new", "ab", "treat"), 120),
        (online.field("clk", "itemknn", "new", "ab", "treat"), 150),
        (online.field("conv", "itemknn", "new", "ab", "treat"), 10),
        (online.field("imp", "popular", "new", None, None), 500),
        ("garbage", 3),
    ]
    body = online.aggregate(counts, {"ab": exp})
    assert body["total"]["impressions"] == 2500
    assert body["algorithms"]["itemknn"]["ctr"] == pytest.approx(0.15)
    assert body["algorithms"]["itemknn"]["conversion_rate"] == pytest.approx(0.01)
    variants = body["experiments"]["ab"]["variants"]
    assert variants["control"]["control"] is True
    sig = variants["treat"]["significance"]
    assert sig["better"] is True
    assert sig["p_value"] < 0.001
    assert sig["lift"] == pytest.approx(1.4)


def test_arm_stats_by_segment() -> None:
    stats = online.arm_stats(
        [
            (online.field("imp", "als", "heavy", None, None), 10),
            (online.field("hit", "als", "heavy", None, None), 3),
            (online.field("clk", "als", "heavy", None, None), 9),
        ]
    )
    assert stats["heavy"]["als"].impressions == 10
    assert stats["heavy"]["als"].hits == 3


def test_the_processor_decodes_every_rec_id_the_recommender_makes() -> None:
    """The processor attributes with ``feedback.ALGORITHM_CODES``: it must know every code."""
    for algorithm in online.ALGORITHM_CODES:
        rec_id = online.new_rec_id(RecTag(1_700_000_000.0, algorithm, "heavy", "exp", "b"))
        tag = feedback.parse_rec_id(rec_id, feedback.ALGORITHM_CODES)
        assert tag is not None
        assert (tag.algorithm, tag.segment, tag.variant) == (algorithm, "heavy", "b")
