"""Exports against a real Postgres (started for this module on 127.0.0.1, no other service).

Import goes through the archive's idempotent path: re-importing (JSON or pickle) adds nothing.
Export reads an event-time window of the archive; the CLI does the same with the service's
settings, and ``export snapshots`` finds the active model through the registry.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from streamrec_shared.events import UserEvent
from streamrec_trainer import cli
from streamrec_trainer.exports import (
    export_interactions,
    import_interactions,
    read_interactions,
    read_snapshots,
    write_export,
)
from streamrec_trainer.settings import get_settings

from ..bundles import tiny_bundle

pytestmark = pytest.mark.slow

KEY = b"k" * 40
T0 = datetime(2011, 1, 4, 10, 0, tzinfo=UTC)


def events(n: int = 6) -> list[UserEvent]:
    return [
        UserEvent(
            event_id=f"e{i}",
            user_id=f"u{i % 2}",
            product_id=f"p{i % 3}",
            event_type="purchase" if i % 2 else "view",
            timestamp=T0 + timedelta(hours=i),
            received_at=T0 + timedelta(hours=i, seconds=1),
            value=float(i) if i % 2 else None,
            price=2.55 if i % 2 else None,
            context={"i": i} if i == 1 else None,
        )
        for i in range(n)
    ]


async def test_import_is_idempotent_and_export_reads_a_window(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    as_json, as_pickle = tmp_path / "e.jsonl", tmp_path / "e.pkl"
    write_export(as_json, "json", "interactions", events(), key=None)
    write_export(as_pickle, "pickle", "interactions", events(), key=KEY)

    first = await import_interactions(pool, as_json, key=None, batch=4)
    assert (first.read, first.inserted) == (6, 6)
    again = await import_interactions(pool, as_pickle, key=KEY, batch=4)
    assert (again.read, again.inserted, again.duplicates) == (6, 0, 6)
    assert await pool.fetchval("SELECT count(*) FROM user_product_interactions") == 6

    out = tmp_path / "window.pkl"
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=4)
    n = await export_interactions(pool, out, "pickle", key=KEY, since=since, until=until)
    assert n == 3
    header, got = read_interactions(out, key=KEY)
    assert header.meta == {"since": since.isoformat(), "until": until.isoformat()}
    assert list(got) == events()[1:4]  # archived rows come back as the events they were

    everything = tmp_path / "all.jsonl"
    assert await export_interactions(pool, everything, "json", key=None) == 6
    assert list(read_interactions(everything, key=None)[1]) == events()


def test_cli_export_convert_import_and_snapshots(
    dsn: str,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMREC_POSTGRES__DSN", dsn)
    monkeypatch.setenv("STREAMREC_EXPORTS__HMAC_KEY", KEY.decode())
    monkeypatch.setenv("STREAMREC_ARTIFACTS__CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    try:
        seed = tmp_path / "seed.jsonl"
        write_export(seed, "json", "interactions", events(), key=None)
        assert cli.main(["import", "interactions", str(seed)]) == 0
        assert "imported 6 events" in capsys.readouterr().out

        pkl, js, conv = tmp_path / "x.pkl", tmp_path / "x.jsonl", tmp_path / "conv.jsonl"
        window = ["--since", "2011-01-04T11:00:00Z", "--until", "2011-01-04T14:00:00"]
        assert cli.main(["export", "interactions", "--format", "pickle", "--out", str(pkl)]) == 0
        assert cli.main(["export", "interactions", "--out", str(js), *window]) == 0
        assert "exported 3 interactions" in capsys.readouterr().out
        assert cli.main(["convert", str(pkl), "--out", str(conv)]) == 0
        converted = conv.read_text().splitlines()
        assert len(converted) == 7
        assert converted[2:5] == js.read_text().splitlines()[1:]  # same records, same bytes

        assert cli.main(["import", "interactions", str(pkl)]) == 0
        assert "0 new, 6 already archived" in capsys.readouterr().out

        assert cli.main(["export", "snapshots", "--out", str(tmp_path / "s.jsonl")]) == 1
        assert "no active model version" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


async def test_cli_snapshots_of_the_active_model(
    dsn: str, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tiny_bundle(
        version=3,
        item_ids=["p0", "p1"],
        user_ids=["u0"],
        topn_users=["u0"],
        topn_items=[[1, 0]],
        topn_scores=[[2.0, 1.0]],
        seed=1,
        created_at=T0,
    )
    bundle.save(tmp_path / "artifacts" / "v3")
    await pool.execute(
        "INSERT INTO model_versions (version, status, is_active, artifact_uri) "
        "VALUES (3, 'published', true, $1)",
        (tmp_path / "artifacts" / "v3").as_uri(),
    )
    monkeypatch.setenv("STREAMREC_POSTGRES__DSN", dsn)
    get_settings.cache_clear()
    out = tmp_path / "snaps.jsonl"
    try:
        # the CLI runs its own event loop: in a thread, away from the test's
        status = await asyncio.to_thread(cli.main, ["export", "snapshots", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert status == 0
    header, snaps = read_snapshots(out, key=None)
    assert header.meta["model_version"] == 3
    assert [(s.user_id, [i.product_id for i in s.items], s.model_version) for s in snaps] == [
        ("u0", ["p1", "p0"], 3)
    ]
    assert json.loads(out.read_text().splitlines()[1])["created_at"] == T0.isoformat()
