"""Rec ids, counter aggregation and the significance test."""

from __future__ import annotations

import math

import pytest

from streamrec_recommender import online
from streamrec_recommender.online import RecTag
from streamrec_recommender.serving.policy import Experiment, Variant
from streamrec_shared import feedback, rec_ids
from streamrec_shared.rec_ids import RecIds

KEY = b"k" * 32
REC_IDS = RecIds(KEY, online.ALGORITHM_CODES)


def test_rec_id_round_trip_and_length() -> None:
    tag = RecTag(1_700_000_000.123, "itemknn", "light", "a" * 26, "treatment")
    rec_id = REC_IDS.new(tag)
    assert len(rec_id) <= 64
    back = REC_IDS.parse(rec_id)
    assert back is not None
    assert back.algorithm == "itemknn"
    assert back.segment == "light"
    assert back.experiment == "a" * 26
    assert back.variant == "treatment"
    assert back.served_at == pytest.approx(tag.served_at, abs=1e-3)
    plain = REC_IDS.parse(REC_IDS.new(RecTag(5.0, "als", "new")))
    assert plain is not None
    assert plain.experiment is None
    assert REC_IDS.parse("not-a-rec-id") is None
    assert REC_IDS.parse("rzz.qq.1234") is None
    # too long with its experiment: signed without it
    long = REC_IDS.parse(REC_IDS.new(RecTag(5.0, "als", "new", "a" * 40, "treatment")))
    assert long is not None
    assert long.experiment is None


def test_a_forged_or_altered_rec_id_does_not_verify() -> None:
    rec_id = REC_IDS.new(RecTag(1_700_000_000.0, "als", "light", "exp", "ctl"))
    assert REC_IDS.parse(rec_id) is not None
    assert rec_ids.describe(rec_id, online.ALGORITHM_CODES) == REC_IDS.parse(rec_id)
    altered = [
        rec_id.replace(".exp.ctl", ".exp.treat"),  # another variant
        rec_id.replace(".al", ".pl", 1),  # another algorithm
        "r" + rec_id[2:],  # another time
        rec_id[:-1] + ("x" if rec_id[-1] != "x" else "y"),
    ]
    head, rest = rec_id.split(".", 2)[:2], rec_id.split(".", 2)[2]
    altered.append(".".join([*head, rest[:6] + "A" * 8 + rest[14:]]))  # a made-up tag
    for bad in altered:
        assert REC_IDS.parse(bad) is None, bad
    other_key = RecIds(b"o" * 32, online.ALGORITHM_CODES)
    assert other_key.parse(rec_id) is None
    assert other_key.parse(other_key.new(RecTag(1.0, "als", "new"))) is not None


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


def test_a_counter_field_reads_back_as_written() -> None:
    """``parse_field`` is ``field``'s inverse (as Redis returns it: str or bytes); a field of
    another layout is None, which every reader skips."""
    written = feedback.field("hit", "als", "heavy", "rollout7", "canary")
    expected = feedback.Field("hit", "als", "heavy", "rollout7", "canary")
    assert feedback.parse_field(written) == expected
    assert feedback.parse_field(written.encode()) == expected
    assert feedback.parse_field(feedback.field("imp", "als", "new", None, None)) == (
        feedback.Field("imp", "als", "new", feedback.NONE, feedback.NONE)
    )
    assert feedback.parse_field("garbage") is None
    assert feedback.parse_field("a|b|c|d|e|f") is None


def test_the_processor_decodes_every_rec_id_the_recommender_makes() -> None:
    """The processor attributes with ``feedback.ALGORITHM_CODES``: it must know every code."""
    for algorithm in online.ALGORITHM_CODES:
        rec_id = REC_IDS.new(RecTag(1_700_000_000.0, algorithm, "heavy", "exp", "b"))
        tag = RecIds(KEY, feedback.ALGORITHM_CODES).parse(rec_id)
        assert tag is not None
        assert (tag.algorithm, tag.segment, tag.variant) == (algorithm, "heavy", "b")
