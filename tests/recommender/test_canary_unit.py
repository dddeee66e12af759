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
