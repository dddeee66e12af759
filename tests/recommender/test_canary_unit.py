"""The consistent canary assignment of a gradual rollout."""

from __future__ import annotations

from streamrec_recommender.runtime.model_handle import in_canary


def test_canary_assignment_is_consistent_and_close_to_the_share() -> None:
    users = [f"user{i}" for i in range(20_000)]
    inside = [u for u in users if in_canary(u, 7, 0.1)]
    assert 0.09 < len(inside) / len(users) < 0.11
    assert inside == [u for u in users if in_canary(u, 7, 0.1)]  # the same users every time
    # a larger share keeps everyone already inside; another version draws other users
    assert set(inside) <= {u for u in users if in_canary(u, 7, 0.3)}
    assert set(inside) != {u for u in users if in_canary(u, 8, 0.1)}


def test_rollout_labels_are_reported_as_rollouts_not_experiments() -> None:
    from streamrec_recommender import online

    counts = [
        (online.field("imp", "als", "light", "rollout7", "canary"), 100),
        (online.field("hit", "als", "light", "rollout7", "canary"), 30),
        (online.field("imp", "als", "light", "rollout7", "control"), 900),
        (online.field("hit", "als", "light", "rollout7", "control"), 90),
    ]
    body = online.aggregate(counts, {})
    assert body["experiments"] == {}
    variants = body["rollouts"]["rollout7"]["variants"]
    assert variants["control"]["control"] is True
    assert variants["canary"]["significance"]["better"] is True
