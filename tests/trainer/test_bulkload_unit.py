"""``streamrec load`` without a broker: readers, deterministic event ids, the dry run."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamrec_trainer import cli
from streamrec_trainer.bulkload import (
    LoadStats,
    check_prefix,
    default_prefix,
    guess_format,
    load_file,
    read_events_jsonl,
    read_online_retail,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def test_event_lines_keep_or_derive_ids_and_skip_invalid() -> None:
    lines = [
        json.dumps({"event_id": "own-1", "user_id": 7, "event_type": "view",
                    "product_id": "p1", "timestamp": "2011-01-04T10:00:00Z"}),
        "",
        json.dumps({"user_id": "u2", "event_type": "rating", "value": 4, "product_id": "p2",
                    "timestamp": 1294135200, "kind": "event", "shop": "x"}),
        json.dumps({"user_id": "u3", "event_type": "rating", "product_id": "p2",
                    "timestamp": 1294135200}),  # a rating needs a value
        json.dumps({"user_id": "u3", "event_type": "view", "product_id": "p2"}),  # no time
        "[1, 2]",
        "{broken",
        # issue 17 finding 2: history is in the past (5 minutes of clock skew allowed)
        json.dumps({"user_id": "u4", "event_type": "view", "product_id": "p2",
                    "timestamp": "2990-01-01T00:00:00Z"}),
        json.dumps({"user_id": "u4", "event_type": "view", "product_id": "p2",
                    "timestamp": "2026-01-01T00:04:00Z"}),
    ]  # fmt: skip
    stats = LoadStats()
    events = list(read_events_jsonl(lines, prefix="hist", received_at=NOW, stats=stats))
    assert [e.event_id for e in events] == ["own-1", "hist-3", "hist-9"]
    assert events[0].user_id == "7"
    assert events[0].timestamp == datetime(2011, 1, 4, 10, tzinfo=UTC)
    assert events[1].value == 4.0
    assert events[1].received_at == NOW
    assert stats.invalid == 5
    assert dict(stats.ignored_fields) == {"shop": 1}  # "kind" of a topic dump is expected
    # deterministic: the same lines give the same ids
    again = list(read_events_jsonl(lines, prefix="hist", received_at=NOW, stats=LoadStats()))
    assert [e.event_id for e in again] == ["own-1", "hist-3", "hist-9"]


def test_online_retail_rules_and_invoice_positions() -> None:
    rows = [
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
        "536365,71053,LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
        "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom",
        "536365,BANK CHARGES,fee,1,2010-12-01 08:26:00,15,17850.0,United Kingdom",
        "536414,22139,NO CUSTOMER,56,2010-12-01 11:52:00,0,,United Kingdom",
        "536365,71053,LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
        "536366,22633,WARMER,0,2010-12-01 08:28:00,1.85,17850.0,United Kingdom",
    ]
    stats = LoadStats()
    events = list(
        read_online_retail(
            (HEADER + "\n".join(rows) + "\n").splitlines(keepends=True),
            prefix="retail",
            received_at=NOW,
            stats=stats,
        )
    )
    assert [e.event_id for e in events] == ["retail-536365-0", "retail-536365-1", "retail-536365-3"]
    assert {e.event_type for e in events} == {"purchase"}
    assert events[0].user_id == "17850"
    assert events[0].value == 6.0
    assert events[0].price == 2.55
    assert events[0].session_id == "536365"
    assert events[0].timestamp == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert (stats.invalid, stats.skipped) == (1, 3)  # "BANK CHARGES" is not a valid id
    with pytest.raises(ValueError, match="missing columns"):
        list(read_online_retail(["a,b\n"], prefix="r", received_at=NOW, stats=LoadStats()))


def test_formats_prefixes_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert guess_format(Path("x/retail.csv.gz")) == "online-retail"
    assert guess_format(Path("events-2011.jsonl")) == "events"
    with pytest.raises(ValueError, match="--format"):
        guess_format(Path("log.txt"))
    assert default_prefix(Path("/d/events 2011.v2.jsonl.gz"), "events") == "events-2011"
    assert default_prefix(Path("x.csv"), "online-retail") == "retail"
    assert check_prefix("a.b:c-1") == "a.b:c-1"
    with pytest.raises(ValueError, match="prefix"):
        check_prefix("no spaces")

    path = tmp_path / "history.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for k in range(25):
            event = {"user_id": f"u{k % 4}", "event_type": "view", "product_id": f"p{k}"}
            fh.write(json.dumps({**event, "timestamp": 1294135200 + k}) + "\n")
    stats = load_file(path, "events", None, batch_size=10, progress=False)
    assert (stats.events, stats.invalid) == (25, 0)

    assert cli.main(["load", str(path), "--dry-run", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dry_run"] is True
    assert summary["events"] == 25
    assert cli.main(["load", str(tmp_path / "missing.jsonl"), "--dry-run"]) == 2
