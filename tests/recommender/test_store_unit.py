"""Reading catalog values without a full JSON parse where possible."""

from __future__ import annotations

import pytest

from streamrec_recommender.adapters.redis_state import category_of
from streamrec_shared.profile import CatalogState, encode_catalog_state


@pytest.mark.parametrize("category", ["books", 'a "q" b', "ü x", "back\\slash", ""])
def test_category_of_matches_the_codec(category: str) -> None:
    raw = encode_catalog_state(CatalogState(True, False, category, 1.5, 2.0))
    assert category_of(raw) == category
    assert category_of(raw.decode()) == category


def test_category_of_garbage_is_none() -> None:
    assert category_of(b"not json") is None
    assert category_of(b'{"a": 1}') is None
