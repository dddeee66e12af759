"""``KnownProducts``: the catalog's ids of one ingest worker (loaded, extended, refreshed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from streamrec_ingest.catalog_db import CatalogDb
from streamrec_ingest.known_products import KnownProducts
from streamrec_shared.errors import RetryableError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeCatalog:
    """What ``catalog_product_ids`` reads: (product_id, updated_at) rows; ``down`` fails."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, datetime]] = []
        self.asked: list[datetime] = []
        self.down = False
        self.connected = True

    async def catalog_product_ids(self, since: datetime) -> tuple[list[str], datetime | None]:
        self.asked.append(since)
        if self.down:
            raise RetryableError("database unavailable", retry_after=1.0)
        rows = [(p, t) for p, t in self.rows if t >= since]
        return [p for p, _ in rows], max((t for _, t in rows), default=None)


def _known(store: FakeCatalog) -> KnownProducts:
    return KnownProducts(cast(CatalogDb, cast(Any, store)), refresh_s=30)


async def test_unknown_until_loaded_then_by_set_membership() -> None:
    store = FakeCatalog()
    store.rows = [("p1", T0), ("p2", T0 + timedelta(seconds=1))]
    known = _known(store)
    assert known.unknown(["p1", "x"]) is None  # not loaded: cannot say
    store.down = True
    assert await known.refresh() is False
    assert known.ids is None
    store.down = False
    assert await known.refresh() is True
    assert known.unknown(["x", "p1", "x", "y", "p2"]) == ["x", "y"]
    known.add(["x"])  # this worker's catalog write
    assert known.unknown(["x", "y"]) == ["y"]


async def test_refresh_asks_only_for_what_changed_with_a_margin() -> None:
    store = FakeCatalog()
    store.rows = [("p1", T0)]
    known = _known(store)
    await known.refresh()
    store.rows.append(("p9", T0 - timedelta(minutes=1)))  # another worker, committed late
    await known.refresh()
    assert store.asked[1] == T0 - timedelta(minutes=5)
    assert known.unknown(["p1", "p9"]) == []
