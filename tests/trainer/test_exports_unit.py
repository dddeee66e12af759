"""Exports: JSON and signed pickle round trips, refusals, the restricted unpickler, convert.

No Postgres here (``test_exports_pg.py`` covers the archive); imports go through a fake archive
that dedupes on event_id like the real one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.events import UserEvent
from streamrec_trainer import cli
from streamrec_trainer.exports import (
    MAGIC,
    ExportError,
    RecommendationSnapshot,
    ScoredItem,
    SignatureError,
    convert_to_json,
    detect_format,
    import_interactions,
    read_export,
    read_interactions,
    read_snapshots,
    restricted_loads,
    signing_key,
    snapshots_from_bundle,
    write_export,
)
from streamrec_trainer.settings import ExportSettings, get_settings

from ..bundles import tiny_bundle

KEY = b"k" * 40
OTHER_KEY = b"o" * 40
EXPORTED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def events() -> list[UserEvent]:
    t0 = datetime(2011, 1, 4, 10, 0, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    return [
        UserEvent(
            event_id="e1",
            user_id="17850",
            product_id="85123A",
            event_type="purchase",
            timestamp=t0,
            received_at=t0 + timedelta(seconds=1),
            value=6.0,
            price=2.55,
            session_id="s1",
            rec_id="r1",
            context={"page": "home", "pos": 3, "tags": ["a", "b"], "ok": True, "x": None},
        ),
        UserEvent(
            event_id="e2",
            user_id="u2",
            product_id="p2",
            event_type="view",
            timestamp=datetime(2011, 1, 4, 12, 0, tzinfo=paris),  # normalised to UTC
            received_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        UserEvent(
            event_id="e3",
            user_id="u2",
            product_id="p3",
            event_type="rating",
            timestamp=t0 + timedelta(days=1),
            received_at=t0 + timedelta(days=1),
            value=4.0,
        ),
    ]


def bundle() -> ModelBundle:
    return tiny_bundle(
        version=12,
        item_ids=["p1", "p2", "p3", "p4"],
        user_ids=["alice", "bob"],
        topn_users=["alice", "bob"],
        topn_items=[[3, 1, 0], [2, -1, -1]],
        topn_scores=[[0.9, 0.5, 0.25], [0.7, 0.0, 0.0]],
    )


def snapshots() -> list[RecommendationSnapshot]:
    return list(snapshots_from_bundle(bundle()))


def signed(body: bytes, key: bytes = KEY) -> bytes:
    return MAGIC + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"\n" + body


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["json", "pickle"])
def test_interactions_round_trip(tmp_path: Path, fmt: Any) -> None:
    out = tmp_path / f"events.{fmt}"
    n = write_export(
        out, fmt, "interactions", events(), key=KEY, meta={"since": None}, exported_at=EXPORTED_AT
    )
    assert n == 3
    assert detect_format(out) == fmt
    header, records = read_interactions(out, key=KEY)
    assert header.streamrec_export == "interactions"
    assert header.schema_version == 1
    assert header.exported_at == EXPORTED_AT
    assert header.meta == {"since": None}
    got = list(records)
    assert got == events()
    assert got[1].timestamp == datetime(2011, 1, 4, 11, 0, tzinfo=UTC)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


@pytest.mark.parametrize("fmt", ["json", "pickle"])
def test_snapshots_round_trip(tmp_path: Path, fmt: Any) -> None:
    out = tmp_path / "snaps"
    assert write_export(out, fmt, "snapshots", snapshots(), key=KEY) == 2
    header, got = read_snapshots(out, key=KEY)
    assert header.streamrec_export == "snapshots"
    assert got == snapshots()


def test_snapshots_from_bundle_maps_items_and_drops_padding() -> None:
    alice, bob = snapshots_from_bundle(bundle(), k=2)
    assert alice.user_id == "alice"
    assert alice.model_version == 12
    assert alice.created_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert [i.product_id for i in alice.items] == ["p4", "p2"]  # k=2 of 3
    assert [i.score for i in alice.items] == pytest.approx([0.9, 0.5])
    assert bob.items == [ScoredItem(product_id="p3", score=float(np.float32(0.7)))]  # -1 dropped
    no_topn = ModelBundle(
        version=1, created_at=EXPORTED_AT, data_window=bundle().data_window, als=bundle().als
    )
    assert list(snapshots_from_bundle(no_topn)) == []


def test_json_layout_is_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    write_export(out, "json", "interactions", events()[:1], key=None, exported_at=EXPORTED_AT)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        '{"exported_at":"2026-03-01T12:00:00+00:00","meta":{},"schema_version":1,'
        '"streamrec_export":"interactions"}'
    )
    assert lines[1].startswith('{"context":{"ok":true,"page":"home","pos":3,"tags":["a","b"],')
    assert '"timestamp":"2011-01-04T10:00:00+00:00"' in lines[1]
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("kind", "records"), [("interactions", events()), ("snapshots", snapshots())]
)
def test_convert_pickle_to_json_equals_json_export(
    tmp_path: Path, kind: Any, records: Sequence[Any]
) -> None:
    meta = {"since": "2011-01-01T00:00:00+00:00", "until": None}
    direct = tmp_path / "direct.jsonl"
    pkl = tmp_path / "export.pkl"
    converted = tmp_path / "converted.jsonl"
    write_export(direct, "json", kind, records, key=None, meta=meta, exported_at=EXPORTED_AT)
    write_export(pkl, "pickle", kind, records, key=KEY, meta=meta, exported_at=EXPORTED_AT)
    assert convert_to_json(pkl, converted, key=KEY) == len(records)
    assert converted.read_bytes() == direct.read_bytes()


# ------------------------------------------------------------------------------- refusals


def test_tampered_pickle_refused(tmp_path: Path) -> None:
    out = tmp_path / "events.pkl"
    write_export(out, "pickle", "interactions", events(), key=KEY)
    data = out.read_bytes()
    body_at = data.index(b"\n", len(MAGIC)) + 1
    evil = data.replace(b"85123A", b"85123B")
    assert evil != data
    assert evil.index(b"85123B") > body_at
    out.write_bytes(evil)
    with pytest.raises(SignatureError, match="does not match"):
        read_interactions(out, key=KEY)

    sig = data[len(MAGIC) : body_at - 1]
    forged = sig[:-1] + (b"0" if sig[-1:] != b"0" else b"1")
    out.write_bytes(MAGIC + forged + b"\n" + data[body_at:])
    with pytest.raises(SignatureError, match="does not match"):
        read_interactions(out, key=KEY)

    out.write_bytes(MAGIC + b"abc\n" + data[body_at:])
    with pytest.raises(SignatureError, match="malformed"):
        read_interactions(out, key=KEY)


def test_wrong_key_refused(tmp_path: Path) -> None:
    out = tmp_path / "events.pkl"
    write_export(out, "pickle", "interactions", events(), key=KEY)
    with pytest.raises(SignatureError, match="does not match"):
        read_export(out, key=OTHER_KEY)


def test_missing_key_refused_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "events.pkl"
    with pytest.raises(SignatureError, match="no HMAC key"):
        write_export(out, "pickle", "interactions", events(), key=None)
    assert list(tmp_path.iterdir()) == []
    write_export(out, "pickle", "interactions", events(), key=KEY)
    with pytest.raises(SignatureError, match="no HMAC key"):
        read_interactions(out, key=None)
    with pytest.raises(SignatureError, match="no HMAC key"):
        convert_to_json(out, tmp_path / "x.jsonl", key=None)
    # JSON needs no key
    write_export(tmp_path / "e.jsonl", "json", "interactions", events(), key=None)
    assert len(list(read_interactions(tmp_path / "e.jsonl", key=None)[1])) == 3


def test_key_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert signing_key(ExportSettings()) is None
    assert signing_key(ExportSettings(hmac_key="x" * 32)) == b"x" * 32
    with pytest.raises(SignatureError, match="at least 32"):
        signing_key(ExportSettings(hmac_key="short"))
    with pytest.raises(SignatureError, match="at least 32"):
        write_export(Path("never"), "pickle", "interactions", [], key=b"short")
    monkeypatch.setenv("STREAMREC_EXPORTS__HMAC_KEY", "y" * 40)
    get_settings.cache_clear()
    try:
        assert signing_key(get_settings().exports) == b"y" * 40
    finally:
        get_settings.cache_clear()


def test_unsigned_pickle_refused(tmp_path: Path) -> None:
    out = tmp_path / "raw.pkl"
    out.write_bytes(pickle.dumps({"header": {}, "records": []}))
    with pytest.raises(SignatureError, match="unsigned pickle"):
        read_export(out, key=KEY)
    out.write_bytes(b"PK\x03\x04 not an export")
    with pytest.raises(ExportError, match="not a streamrec export"):
        read_export(out, key=KEY)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_even_when_signed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = pickle.dumps(
        {"header": {"streamrec_export": "interactions"}, "records": [_Exploit(marker)]}
    )
    out = tmp_path / "evil.pkl"
    out.write_bytes(signed(body))  # signed with the right key: only the allow-list stops it
    with pytest.raises(ExportError, match=r"(posix|os|nt)\.system is not allowed"):
        read_export(out, key=KEY)
    assert not marker.exists()
    for payload in (
        pickle.dumps(_Exploit(marker)),
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # protocol 0 GLOBAL + REDUCE
        pickle.dumps(Path("/etc/passwd")),
        pickle.dumps(np.arange(3)),
    ):
        with pytest.raises(ExportError, match="not allowed"):
            restricted_loads(payload)
    assert not marker.exists()
    ok = {"t": datetime(2011, 1, 1, tzinfo=UTC), "s": {1, 2}, "d": timedelta(1)}
    assert restricted_loads(pickle.dumps(ok)) == ok


def test_wrong_kind_version_and_bad_records_refused(tmp_path: Path) -> None:
    snaps = tmp_path / "snaps.jsonl"
    write_export(snaps, "json", "snapshots", snapshots(), key=None)
    with pytest.raises(ExportError, match="holds snapshots, not interactions"):
        read_interactions(snaps, key=None)

    future = tmp_path / "v2.jsonl"
    future.write_text(
        '{"streamrec_export":"interactions","schema_version":2,"exported_at":"2026-01-01T00:00Z"}\n'
    )
    with pytest.raises(ExportError, match="unsupported schema_version 2"):
        read_interactions(future, key=None)

    bad = tmp_path / "bad.jsonl"
    write_export(bad, "json", "interactions", events()[:2], key=None)
    lines = bad.read_text().splitlines()
    lines[2] = lines[2].replace('"view"', '"teleport"')
    bad.write_text("\n".join(lines) + "\n")
    _header, records = read_interactions(bad, key=None)
    assert next(records).event_id == "e1"
    with pytest.raises(ExportError, match=re.escape("(line 3): invalid record")):
        next(records)

    with pytest.raises(ExportError, match="takes UserEvent records"):
        write_export(tmp_path / "mixed", "json", "interactions", snapshots(), key=None)
    assert not (tmp_path / "mixed").exists()


def test_no_pickle_outside_exports() -> None:
    """Pickle is never read from anything a client can send: only exports.py touches it."""
    users = []
    for root in [REPO / "shared" / "src", *sorted((REPO / "services").glob("*/src"))]:
        for path in root.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if (
                re.search(
                    r"^\s*(import pickle|from pickle import|import dill|import cloudpickle)",
                    text,
                    re.M,
                )
                or "pickle.load" in text
            ):
                users.append(path.relative_to(REPO).as_posix())
    assert users == ["services/trainer/src/streamrec_trainer/exports.py"]


# ------------------------------------------------------------------------------ importing


class FakeArchive:
    """``archive_events`` semantics: one row per event_id, returns how many were new."""

    def __init__(self) -> None:
        self.rows: dict[str, UserEvent] = {}
        self.batches: list[int] = []

    async def __call__(self, pool: Any, batch: Sequence[UserEvent]) -> int:
        self.batches.append(len(batch))
        new = [e for e in batch if e.event_id not in self.rows]
        self.rows.update((e.event_id, e) for e in new)
        return len(new)


@pytest.mark.parametrize("fmt", ["json", "pickle"])
async def test_import_batches_and_dedupes(tmp_path: Path, fmt: Any) -> None:
    out = tmp_path / "events"
    write_export(out, fmt, "interactions", events(), key=KEY)
    archive = FakeArchive()
    first = await import_interactions(None, out, key=KEY, batch=2, archive=archive)
    assert (first.read, first.inserted, first.duplicates) == (3, 3, 0)
    assert archive.batches == [2, 1]
    again = await import_interactions(None, out, key=KEY, batch=2, archive=archive)
    assert (again.read, again.inserted, again.duplicates) == (3, 0, 3)
    assert list(archive.rows.values()) == events()


# ------------------------------------------------------------------------------------ CLI


def test_cli_snapshots_convert_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle().save(tmp_path / "artifacts" / "v12")
    artifact = (tmp_path / "artifacts" / "v12").as_uri()
    monkeypatch.setenv("STREAMREC_EXPORTS__HMAC_KEY", KEY.decode())
    get_settings.cache_clear()
    try:
        pkl, js, conv = tmp_path / "s.pkl", tmp_path / "s.jsonl", tmp_path / "conv.jsonl"
        argv = ["export", "snapshots", "--artifact", artifact, "--k", "2"]
        assert cli.main([*argv, "--format", "pickle", "--out", str(pkl)]) == 0
        assert cli.main([*argv, "--out", str(js)]) == 0
        assert "exported 2 recommendation snapshots of model 12" in capsys.readouterr().out
        assert cli.main(["convert", str(pkl), "--out", str(conv)]) == 0
        assert conv.read_text().splitlines()[1:] == js.read_text().splitlines()[1:]
        _, got = read_snapshots(conv, key=None)
        assert [len(s.items) for s in got] == [2, 1]

        monkeypatch.setenv("STREAMREC_EXPORTS__HMAC_KEY", OTHER_KEY.decode())
        get_settings.cache_clear()
        assert cli.main(["convert", str(pkl), "--out", str(tmp_path / "x.jsonl")]) == 1
        assert "signature does not match" in capsys.readouterr().err
        assert not (tmp_path / "x.jsonl").exists()

        monkeypatch.delenv("STREAMREC_EXPORTS__HMAC_KEY")
        get_settings.cache_clear()
        assert cli.main([*argv, "--format", "pickle", "--out", str(tmp_path / "y.pkl")]) == 1
        assert "no HMAC key" in capsys.readouterr().err

        with pytest.raises(SystemExit):
            cli.main(["convert", str(pkl), "--out", str(conv), "--bogus"])
        with pytest.raises(SystemExit):
            cli.main(["export", "interactions", "--out", "x", "--since", "yesterday"])
    finally:
        get_settings.cache_clear()


def test_cli_keeps_eval_and_the_export_commands() -> None:
    command: Any = typer.main.get_command(cli.app)
    assert {"eval", "load", "export", "import", "convert"} <= set(command.commands)
    assert set(command.commands["export"].commands) == {"interactions", "snapshots"}
