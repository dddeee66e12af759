"""``streamrec load``: bulk-load a history log into events.v1, the path live events take.

Every line of the log becomes a ``UserEvent`` validated by the rules of ``POST /v1/events``
and is produced to events.v1 (key user_id, acks=all) in batches: every event of a batch is
sent, then all acknowledgements are awaited together, while the next batch is parsed in a
thread. The archive consumer and the stream processor then take the events like live ones;
event time is kept, so profiles, trends and models come out as if the history had arrived live.

Event ids are deterministic, so a re-run (after a crash, or of the same file) is deduplicated
downstream by event_id:

- ``events`` (the project's JSON lines, optionally .gz): the line's own ``event_id``; without
  one, ``<prefix>-<line number>`` (prefix: ``--id-prefix``, default the file name's stem).
  A line needs a ``timestamp`` (history without event time cannot be placed), not more than
  5 minutes after the load time (``MAX_FUTURE_SKEW``, as ``POST /v1/events/history``). Fields
  that ``POST /v1/events`` does not know (e.g. ``kind``, ``received_at`` of an events.v1 dump) are
  ignored, as ``dataset.load_events_jsonl`` does; ``received_at`` is the load time.
- ``online-retail`` (UCI Online Retail CSV, optionally .gz): one ``purchase`` per invoice line
  with the rules of ``dataset.load_online_retail`` (no cancellations, a CustomerID, quantity
  > 0, InvoiceDate read as UTC); value = quantity, price = UnitPrice, session_id = InvoiceNo;
  event id ``<prefix>-<InvoiceNo>-<k>`` with k the line's position within its invoice in the
  file (prefix default ``retail``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import itertools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from tqdm import tqdm

from streamrec_shared import kafka, topics
from streamrec_shared.events import EventIn, UserEvent, encode
from streamrec_shared.settings import KafkaSettings
from streamrec_trainer.dataset import ONLINE_RETAIL_COLUMNS, customer_id

logger = logging.getLogger(__name__)

FORMATS = ("events", "online-retail")
_RECORD_ONLY = frozenset({"kind", "schema_version", "received_at"})  # not worth a warning
_EVENT_FIELDS = frozenset(EventIn.model_fields)
_PREFIX_CHARS = re.compile(r"[^A-Za-z0-9._:\-]+")
_MAX_PREFIX = 40  # leaves room for "-<line number>" / "-<invoice>-<k>" in 64 characters


@dataclass
class LoadStats:
    """What a load did: events produced (or, dry run, valid), lines rejected as invalid, rows
    the format's rules drop (e.g. cancelled invoices), unknown fields ignored."""

    events: int = 0
    invalid: int = 0
    skipped: int = 0
    ignored_fields: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "ignored_fields": dict(self.ignored_fields),
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds, 1) if self.seconds else None,
        }

    def reject(self, where: str, reason: object) -> None:
        self.invalid += 1
        if self.invalid <= 5:
            logger.warning("skipping invalid event at %s: %s", where, reason)


def default_prefix(path: Path, fmt: str) -> str:
    """The event-id prefix when none is given: ``retail`` or the file name's stem."""
    if fmt == "online-retail":
        return "retail"
    stem = path.name.split(".", 1)[0]
    return _PREFIX_CHARS.sub("-", stem).strip("-")[:_MAX_PREFIX] or "bulk"


def check_prefix(prefix: str) -> str:
    if not prefix or _PREFIX_CHARS.search(prefix) or len(prefix) > _MAX_PREFIX:
        raise ValueError(
            f"id prefix must be 1..{_MAX_PREFIX} of letters, digits and . _ : - (got {prefix!r})"
        )
    return prefix


def _error_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in exc.errors()
    )


MAX_FUTURE_SKEW = timedelta(minutes=5)
"""History is in the past: an event time more than this after the load time is refused (as
``POST /v1/events/history`` refuses it); one far-future event would move every time-decayed
score."""


def _plausible(event: EventIn, received_at: datetime, stats: LoadStats, where: str) -> bool:
    if event.timestamp is not None and event.timestamp > received_at + MAX_FUTURE_SKEW:
        stats.reject(where, "timestamp: more than 5 minutes after the load time (history only)")
        return False
    return True


def _accepted(
    body: dict[str, Any], where: str, received_at: datetime, stats: LoadStats
) -> UserEvent | None:
    """``body`` as a record, or None after counting why it is rejected (at ``where``)."""
    try:
        event = EventIn.model_validate(body)
    except ValidationError as exc:
        stats.reject(where, _error_text(exc))
        return None
    if not _plausible(event, received_at, stats, where):
        return None
    return event.to_record(received_at)


def read_events_jsonl(
    lines: Iterable[str], *, prefix: str, received_at: datetime, stats: LoadStats
) -> Iterator[UserEvent]:
    """Events of the project's JSON-lines log (see the module docstring for the rules)."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            stats.reject(f"line {line_no}", f"not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            stats.reject(f"line {line_no}", "not a JSON object")
            continue
        if obj.get("timestamp") is None:
            stats.reject(f"line {line_no}", "timestamp: a history event needs its event time")
            continue
        extra = obj.keys() - _EVENT_FIELDS
        if extra:
            stats.ignored_fields.update(extra - _RECORD_ONLY)
        body = {k: v for k, v in obj.items() if k in _EVENT_FIELDS}
        if body.get("event_id") is None:
            body["event_id"] = f"{prefix}-{line_no}"
        record = _accepted(body, f"line {line_no}", received_at, stats)
        if record is not None:
            yield record


def read_online_retail(
    lines: Iterable[str], *, prefix: str, received_at: datetime, stats: LoadStats
) -> Iterator[UserEvent]:
    """Purchases of the UCI Online Retail CSV (see the module docstring for the rules)."""
    reader = csv.DictReader(lines)
    missing = set(ONLINE_RETAIL_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"not the Online Retail CSV: missing columns {sorted(missing)}")
    position: Counter[str] = Counter()
    for row_no, row in enumerate(reader, start=2):
        invoice = row["InvoiceNo"].strip()
        k = position[invoice]
        position[invoice] += 1
        if invoice.startswith("C"):
            stats.skipped += 1
            continue
        customer = customer_id(row["CustomerID"])
        try:
            quantity = float(row["Quantity"])
            price = float(row["UnitPrice"])
            stamp = datetime.fromisoformat(row["InvoiceDate"].strip()).replace(tzinfo=UTC)
        except ValueError as exc:
            stats.reject(f"row {row_no}", exc)
            continue
        if not customer or quantity <= 0:
            stats.skipped += 1
            continue
        record = _accepted(
            {
                "event_id": f"{prefix}-{invoice}-{k}",
                "user_id": customer,
                "event_type": "purchase",
                "product_id": row["StockCode"].strip(),
                "timestamp": stamp.isoformat(),
                "value": quantity,
                "price": price if price >= 0 else None,
                "session_id": invoice,
            },
            f"row {row_no}",
            received_at,
            stats,
        )
        if record is not None:
            yield record


READERS: dict[str, Callable[..., Iterator[UserEvent]]] = {
    "events": read_events_jsonl,
    "online-retail": read_online_retail,
}


def guess_format(path: Path) -> str:
    """``online-retail`` for .csv(.gz), ``events`` for .jsonl/.ndjson/.json(.gz)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return "online-retail"
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson", ".json"):
        return "events"
    raise ValueError(f"cannot tell the format of {path.name}; pass --format {'|'.join(FORMATS)}")


class _Source:
    """The file as text lines, with the position in the raw (possibly compressed) bytes."""

    def __init__(self, path: Path) -> None:
        self.size = path.stat().st_size
        self._raw = path.open("rb")
        stream: BinaryIO = self._raw
        if path.suffix == ".gz":
            stream = cast(BinaryIO, gzip.GzipFile(fileobj=self._raw))
        self.text: io.TextIOWrapper[BinaryIO] = io.TextIOWrapper(
            stream, encoding="utf-8", newline=""
        )

    def position(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self.text.close()
        self._raw.close()


def _take(events: Iterator[UserEvent], n: int) -> list[UserEvent]:
    return list(itertools.islice(events, n))


async def produce(
    events: Iterator[UserEvent],
    settings: KafkaSettings,
    *,
    batch_size: int = 5000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Produce ``events`` to events.v1 (key user_id, acks=all); returns how many.

    One batch is in flight while the next is parsed (in a thread: parsing is CPU-bound). A
    batch counts only once every event of it is acknowledged; an error ends the load, and a
    re-run produces the same event ids again, which the consumers deduplicate.
    """
    producer = kafka.producer(settings.model_copy(update={"acks": "all"}), linger_ms=20)
    await producer.start()
    sent = 0
    try:
        in_flight: asyncio.Future[list[Any]] | None = None
        in_flight_n = 0
        while True:
            batch = await asyncio.to_thread(_take, events, batch_size)
            if in_flight is not None:
                await in_flight
                sent += in_flight_n
                if on_batch is not None:
                    on_batch(in_flight_n)
                in_flight = None
            if not batch:
                break
            futures = [
                await producer.send(topics.EVENTS, encode(e), key=e.user_id.encode()) for e in batch
            ]
            in_flight, in_flight_n = asyncio.gather(*futures), len(batch)
    finally:
        await producer.stop()
    return sent


def load_file(
    path: Path,
    fmt: str,
    settings: KafkaSettings | None,
    *,
    id_prefix: str | None = None,
    batch_size: int = 5000,
    progress: bool = True,
) -> LoadStats:
    """Read ``path`` in format ``fmt`` and produce every event (``settings`` None: a dry run
    that only validates). Returns the counts; raises on a Kafka error (re-run to resume)."""
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    prefix = check_prefix(id_prefix or default_prefix(path, fmt))
    stats = LoadStats()
    source = _Source(path)
    started = time.perf_counter()
    bar = tqdm(total=source.size, unit="B", unit_scale=True, desc=path.name, disable=not progress)
    events = READERS[fmt](source.text, prefix=prefix, received_at=datetime.now(UTC), stats=stats)

    def advance(n: int) -> None:
        stats.events += n
        bar.update(source.position() - bar.n)
        bar.set_postfix_str(f"events={stats.events} invalid={stats.invalid}", refresh=False)

    try:
        if settings is None:
            for chunk in iter(lambda: _take(events, batch_size), []):
                advance(len(chunk))
        else:
            asyncio.run(produce(events, settings, batch_size=batch_size, on_batch=advance))
    finally:
        bar.close()
        source.close()
        stats.seconds = time.perf_counter() - started
    if stats.ignored_fields:
        logger.warning("ignored unknown fields: %s", dict(stats.ignored_fields))
    if stats.invalid:
        logger.warning("%d invalid events were skipped", stats.invalid)
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the log (.gz accepted)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        help="events (JSON lines) or online-retail (CSV); default: from the file name",
    )
    parser.add_argument(
        "--id-prefix",
        help="prefix of generated event ids (default: the file name's stem; 'retail')",
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="events per acked batch")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and count only; produce nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, kafka_settings: KafkaSettings) -> int:
    """``streamrec load`` with parsed arguments; prints a JSON summary, returns the status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    if args.batch_size < 1:
        raise SystemExit("--batch-size must be >= 1")
    try:
        fmt = args.fmt or guess_format(args.path)
        stats = load_file(
            args.path,
            fmt,
            None if args.dry_run else kafka_settings,
            id_prefix=args.id_prefix,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as exc:
        print(f"streamrec load: {exc}")
        return 2
    except KafkaError as exc:
        print(f"streamrec load: Kafka error ({exc!r}); re-run to resume (event ids dedupe)")
        return 1
    print(json.dumps({"dry_run": bool(args.dry_run), **stats.summary()}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamrec_trainer.bulkload`` (same as ``streamrec load``)."""
    from streamrec_trainer.settings import get_settings

    parser = argparse.ArgumentParser(prog="streamrec load", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv), get_settings().kafka)


if __name__ == "__main__":
    raise SystemExit(main())
