"""Exports of interaction batches and recommendation snapshots: JSON lines and signed pickle.

Two kinds of export, schema version 1:

- ``interactions``: archived user events, each record a ``UserEvent`` as on ``events.v1``;
- ``snapshots``: recommendations of one user at one moment, ``RecommendationSnapshot``
  ``{user_id, items: [{product_id, score}], model_version, created_at}`` (e.g. a model's topn).

JSON (``json``): UTF-8 JSON lines. Line 1 is the header ``{"streamrec_export": kind,
"schema_version": 1, "exported_at": ISO-8601, "meta": {...}}``; every further line is one record
(keys sorted, compact, absent fields omitted, times ISO-8601 in UTC). Written and read as a
stream, so an export of any size fits in memory.

Pickle (``pickle``): the line ``MAGIC``, the hex HMAC-SHA256 of the pickle bytes under the
configured key and a newline, then the pickle bytes of ``{"header": {...}, "records": [...]}``,
made of builtins and tz-aware ``datetime`` values only.

Pickle runs code named by its data, so a pickle export is only ever read

1. from a local file given to ``streamrec import`` / ``streamrec convert``: no HTTP endpoint
   accepts pickle and nothing here reads pickle from a socket;
2. with a key configured (``STREAMREC_EXPORTS__HMAC_KEY``); without one, pickle is neither
   written nor read;
3. after its HMAC matched (``hmac.compare_digest``) and only then unpickled;
4. through an Unpickler whose ``find_class`` admits a few ``datetime`` and builtin types only, so
   even a validly signed file cannot name ``os.system`` (defence in depth);

and every record is then validated by the same pydantic model as a JSON record. Converting a
pickle export to JSON gives the very bytes a JSON export of the same records would have.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import logging
import os
import pickle
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from streamrec_shared.artifact_store import open_version
from streamrec_shared.artifacts import ArtifactError, ModelBundle
from streamrec_shared.events import Id, UserEvent
from streamrec_shared.postgres import create_pool
from streamrec_trainer.archive import archive_events
from streamrec_trainer.settings import ExportSettings, TrainerSettings

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Literal[1] = 1
MAGIC = b"streamrec-export pickle hmac-sha256 v1\n"
MIN_KEY_CHARS = 32
_DIGEST_HEX = 64

Kind = Literal["interactions", "snapshots"]
Format = Literal["json", "pickle"]
M = TypeVar("M", bound=BaseModel)


class ExportError(ValueError):
    """An export that cannot be written or read: wrong kind or version, malformed, unsafe."""


class SignatureError(ExportError):
    """A pickle export without a configured key, unsigned, or whose HMAC does not match."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScoredItem(_Frozen):
    product_id: Id
    score: Annotated[float, Field(allow_inf_nan=False)]


class RecommendationSnapshot(_Frozen):
    """The recommendations of one user, best first, from model ``model_version``."""

    user_id: Id
    items: list[ScoredItem]
    model_version: Annotated[int, Field(ge=0)] | None = None
    created_at: AwareDatetime


class ExportHeader(_Frozen):
    """Line 1 of a JSON export; ``header`` of a pickle export."""

    streamrec_export: Kind
    schema_version: Literal[1] = SCHEMA_VERSION
    exported_at: AwareDatetime
    meta: dict[str, Any] = Field(default_factory=dict)


RECORD_MODELS: dict[Kind, type[BaseModel]] = {
    "interactions": UserEvent,
    "snapshots": RecommendationSnapshot,
}


def signing_key(settings: ExportSettings) -> bytes | None:
    """The configured HMAC key, or None. A configured key shorter than ``MIN_KEY_CHARS`` is
    refused rather than used."""
    if settings.hmac_key is None:
        return None
    key = settings.hmac_key.get_secret_value()
    if len(key) < MIN_KEY_CHARS:
        raise SignatureError(
            f"STREAMREC_EXPORTS__HMAC_KEY must have at least {MIN_KEY_CHARS} characters"
        )
    return key.encode()


def _require_key(key: bytes | None, action: str) -> bytes:
    if not key:
        raise SignatureError(
            f"no HMAC key configured (STREAMREC_EXPORTS__HMAC_KEY): refusing to {action} pickle"
        )
    if len(key) < MIN_KEY_CHARS:
        raise SignatureError(f"the HMAC key must have at least {MIN_KEY_CHARS} bytes")
    return key


def _signature(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")


def _plain(value: Any) -> Any:
    """Builtins and UTC ``datetime`` only: what the restricted unpickler admits, and what JSON
    encodes canonically (so pickle -> JSON equals a direct JSON export)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ExportError(f"naive datetime {value!r} in an export")
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise ExportError(f"cannot export a value of type {type(value).__name__}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_line(value: Any) -> str:
    return (
        json.dumps(
            value,
            default=_json_default,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        + "\n"
    )


class ExportWriter:
    """Writes one export atomically: a temporary file next to ``path``, renamed on success.

    Use as a context manager; ``write`` each record; ``count`` is the number written.
    """

    def __init__(
        self, path: str | os.PathLike[str], fmt: Format, header: ExportHeader, key: bytes | None
    ) -> None:
        if fmt not in ("json", "pickle"):
            raise ExportError(f"unknown export format {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        self.header = header
        self.model = RECORD_MODELS[header.streamrec_export]
        self.key = _require_key(key, "write") if fmt == "pickle" else None
        self.count = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._records: list[Any] = []
        self._fh: io.TextIOWrapper | None = None

    def __enter__(self) -> ExportWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "json":
            self._fh = self._tmp.open("w", encoding="utf-8")
            self._fh.write(_json_line(_plain(self.header.model_dump())))
        return self

    def write(self, record: BaseModel) -> None:
        if not isinstance(record, self.model):
            raise ExportError(
                f"a {self.header.streamrec_export} export takes {self.model.__name__} records, "
                f"not {type(record).__name__}"
            )
        plain = _plain(record.model_dump(exclude_none=True))
        if self._fh is not None:
            self._fh.write(_json_line(plain))
        else:
            self._records.append(plain)
        self.count += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self._fh is not None:
                self._fh.close()
            self._tmp.unlink(missing_ok=True)

    def _commit(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        else:
            assert self.key is not None
            payload = {"header": _plain(self.header.model_dump()), "records": self._records}
            body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            with self._tmp.open("wb") as fh:
                fh.write(MAGIC + _signature(self.key, body) + b"\n" + body)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(self._tmp, self.path)
        logger.info(
            "wrote %d %s records to %s (%s)",
            self.count,
            self.header.streamrec_export,
            self.path,
            self.fmt,
        )


def write_export(
    path: str | os.PathLike[str],
    fmt: Format,
    kind: Kind,
    records: Iterable[BaseModel],
    *,
    key: bytes | None,
    meta: dict[str, Any] | None = None,
    exported_at: datetime | None = None,
) -> int:
    """Write ``records`` (``UserEvent`` or ``RecommendationSnapshot`` as ``kind`` says) to
    ``path``; returns how many. ``exported_at`` defaults to now."""
    header = ExportHeader(
        streamrec_export=kind, exported_at=exported_at or datetime.now(UTC), meta=meta or {}
    )
    with ExportWriter(path, fmt, header, key) as writer:
        for record in records:
            writer.write(record)
    return writer.count


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals an export can contain; anything else is an error."""

    ALLOWED = frozenset(
        {
            ("datetime", "datetime"),
            ("datetime", "date"),
            ("datetime", "time"),
            ("datetime", "timedelta"),
            ("datetime", "timezone"),
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "bytearray"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an export")


def restricted_loads(body: bytes) -> Any:
    """Unpickle ``body`` admitting only builtins and ``datetime`` types. Call it only on bytes
    whose signature was verified."""
    try:
        return _RestrictedUnpickler(io.BytesIO(body)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise ExportError(f"refused to unpickle: {exc}") from exc


def _read_signed_pickle(path: Path, key: bytes | None) -> Any:
    key = _require_key(key, "read")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SignatureError(f"{path}: not a signed streamrec pickle export")
    signature, newline, body = data[len(MAGIC) :].partition(b"\n")
    if not newline or len(signature) != _DIGEST_HEX:
        raise SignatureError(f"{path}: malformed signature line")
    if not hmac.compare_digest(signature, _signature(key, body)):
        raise SignatureError(
            f"{path}: signature does not match (file altered, or signed with another key)"
        )
    return restricted_loads(body)  # only after the signature matched


def detect_format(path: str | os.PathLike[str]) -> Format:
    """``pickle`` for a signed pickle export, ``json`` for JSON lines; anything else (an
    unsigned pickle included) is refused."""
    with Path(path).open("rb") as fh:
        head = fh.read(len(MAGIC))
    if head == MAGIC:
        return "pickle"
    if head.lstrip()[:1] == b"{":
        return "json"
    if head[:1] == b"\x80":
        raise SignatureError(f"{path}: unsigned pickle refused")
    raise ExportError(f"{path}: not a streamrec export (JSON lines or signed pickle)")


def _header(raw: Any, where: str) -> ExportHeader:
    if not isinstance(raw, dict):
        raise ExportError(f"{where}: the header is not an object")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ExportError(f"{where}: unsupported schema_version {raw.get('schema_version')!r}")
    try:
        return ExportHeader.model_validate(raw)
    except ValidationError as exc:
        raise ExportError(f"{where}: invalid header: {exc}") from exc


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed line) of every record line of a JSON export."""
    with path.open(encoding="utf-8") as fh:
        next(fh, None)  # the header
        for line_no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExportError(f"{path}:{line_no}: not JSON: {exc}") from exc


def read_export(
    path: str | os.PathLike[str], *, key: bytes | None, kind: Kind | None = None
) -> tuple[ExportHeader, Iterator[BaseModel]]:
    """The header and the validated records of an export (JSON: streamed; pickle: verified,
    then loaded whole). ``kind`` is checked when given. ``key`` is needed for pickle only."""
    path = Path(path)
    fmt = detect_format(path)
    raw_records: Iterable[tuple[int | str, Any]]
    if fmt == "pickle":
        payload = _read_signed_pickle(path, key)
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise ExportError(f"{path}: not a streamrec export payload")
        header = _header(payload.get("header"), str(path))
        raw_records = ((f"record {i}", r) for i, r in enumerate(payload["records"]))
    else:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        try:
            header = _header(json.loads(first), f"{path}:1")
        except json.JSONDecodeError as exc:
            raise ExportError(f"{path}:1: the header is not JSON: {exc}") from exc
        raw_records = ((f"line {n}", r) for n, r in _json_records(path))
    if kind is not None and header.streamrec_export != kind:
        raise ExportError(f"{path} holds {header.streamrec_export}, not {kind}")
    model = RECORD_MODELS[header.streamrec_export]

    def validated() -> Iterator[BaseModel]:
        for where, raw in raw_records:
            try:
                yield model.model_validate(raw)
            except ValidationError as exc:
                raise ExportError(f"{path} ({where}): invalid record: {exc}") from exc

    return header, validated()


def _typed(records: Iterator[BaseModel], model: type[M]) -> Iterator[M]:
    for record in records:
        assert isinstance(record, model)
        yield record


def read_interactions(
    path: str | os.PathLike[str], *, key: bytes | None
) -> tuple[ExportHeader, Iterator[UserEvent]]:
    header, records = read_export(path, key=key, kind="interactions")
    return header, _typed(records, UserEvent)


def read_snapshots(
    path: str | os.PathLike[str], *, key: bytes | None
) -> tuple[ExportHeader, list[RecommendationSnapshot]]:
    header, records = read_export(path, key=key, kind="snapshots")
    return header, list(_typed(records, RecommendationSnapshot))


def convert_to_json(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    key: bytes | None,
    progress: Progress | None = None,
) -> int:
    """Rewrite an export (normally a signed pickle) as JSON lines, header included; returns the
    number of records. The result equals a JSON export of the same records. ``progress`` is
    called with the number of records written so far (every 1000 and at the end)."""
    header, records = read_export(src, key=key)
    return write_export(
        dst,
        "json",
        header.streamrec_export,
        counted(records, progress),
        key=None,
        meta=header.meta,
        exported_at=header.exported_at,
    )


Progress = Callable[[int], None]
T = TypeVar("T")


def counted(items: Iterable[T], progress: Progress | None, every: int = 1000) -> Iterator[T]:
    """``items`` as they are, calling ``progress(n)`` every ``every`` items and at the end."""
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        if progress is not None and n % every == 0:
            progress(n)
    if progress is not None:
        progress(n)


# ------------------------------------------------------------------------ recommendation lists


def snapshots_from_bundle(
    bundle: ModelBundle, *, k: int | None = None
) -> Iterator[RecommendationSnapshot]:
    """One snapshot per user of the bundle's ``topn`` (items (n_active, N) int32 item indices
    best first, -1 padded; scores (n_active, N) float32), at most ``k`` items each, stamped
    with the bundle's version and creation time. Nothing when the bundle has no topn."""
    topn = bundle.topn
    if topn is None:
        return
    item_ids = bundle.als.item_ids
    for row, user_id in enumerate(topn.user_ids):
        keep = topn.items[row] >= 0
        indices = topn.items[row][keep][:k]
        scores = topn.scores[row][keep][:k]
        yield RecommendationSnapshot(
            user_id=str(user_id),
            items=[
                ScoredItem(product_id=str(item_ids[i]), score=float(s))
                for i, s in zip(indices, scores, strict=True)
            ],
            model_version=bundle.version,
            created_at=bundle.created_at,
        )


# ------------------------------------------------------------------------------- the archive

_SELECT_INTERACTIONS = """
SELECT event_id, user_id, product_id, event_type, value, price::float8 AS price, ts,
       received_at, session_id, rec_id, context::text AS context
FROM user_product_interactions
WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ($2::timestamptz IS NULL OR ts < $2)
ORDER BY ts, event_id
"""


def event_from_row(row: asyncpg.Record) -> UserEvent:
    """An archived ``user_product_interactions`` row as the event it was."""
    return UserEvent.model_validate(
        {
            "event_id": row["event_id"],
            "user_id": row["user_id"],
            "product_id": row["product_id"],
            "event_type": row["event_type"],
            "timestamp": row["ts"],
            "received_at": row["received_at"],
            "value": row["value"],
            "price": row["price"],
            "session_id": row["session_id"],
            "rec_id": row["rec_id"],
            "context": json.loads(row["context"]) if row["context"] is not None else None,
        }
    )


async def fetch_interactions(
    pool: asyncpg.Pool, since: datetime | None = None, until: datetime | None = None
) -> AsyncIterator[UserEvent]:
    """Archived events with ``since <= ts < until`` (either bound optional), in event-time
    order, streamed with a server-side cursor."""
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(_SELECT_INTERACTIONS, since, until, prefetch=5000):
            yield event_from_row(row)


async def export_interactions(
    pool: asyncpg.Pool,
    path: str | os.PathLike[str],
    fmt: Format,
    *,
    key: bytes | None,
    since: datetime | None = None,
    until: datetime | None = None,
    exported_at: datetime | None = None,
    progress: Progress | None = None,
) -> int:
    """Export the archive's events in ``[since, until)`` to ``path``; returns how many.
    ``progress`` is called with the number written so far (every 1000 and at the end)."""
    meta = {
        "since": since.astimezone(UTC).isoformat() if since else None,
        "until": until.astimezone(UTC).isoformat() if until else None,
    }
    header = ExportHeader(
        streamrec_export="interactions",
        exported_at=exported_at or datetime.now(UTC),
        meta=meta,
    )
    with ExportWriter(path, fmt, header, key) as writer:
        async for event in fetch_interactions(pool, since, until):
            writer.write(event)
            if progress is not None and writer.count % 1000 == 0:
                progress(writer.count)
    if progress is not None:
        progress(writer.count)
    return writer.count


Archive = Callable[[asyncpg.Pool, Sequence[UserEvent]], Awaitable[int]]


@dataclass(frozen=True)
class ImportResult:
    read: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.read - self.inserted


async def import_interactions(
    pool: asyncpg.Pool,
    path: str | os.PathLike[str],
    *,
    key: bytes | None,
    batch: int = 5000,
    archive: Archive = archive_events,
    progress: Progress | None = None,
) -> ImportResult:
    """Archive the events of an export in batches through the archive's idempotent path
    (``archive_events``: ON CONFLICT (event_id) DO NOTHING), so a re-import adds nothing."""
    _, events = read_interactions(path, key=key)
    read = inserted = 0
    chunk: list[UserEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= batch:
            inserted += await archive(pool, chunk)
            read += len(chunk)
            chunk = []
            if progress is not None:
                progress(read)
    if chunk:
        inserted += await archive(pool, chunk)
        read += len(chunk)
    if progress is not None:
        progress(read)
    logger.info("imported %s: %d events, %d new", path, read, inserted)
    return ImportResult(read=read, inserted=inserted)


# ----------------------------------------------------------------------------- the commands


async def _model_uri(settings: TrainerSettings, version: int | None) -> tuple[int, str]:
    """(version, artifact URI) of ``version``, or of the active version, from the registry."""
    pool = await create_pool(settings.postgres)
    try:
        if version is None:
            row = await pool.fetchrow(
                "SELECT version, artifact_uri FROM model_versions WHERE is_active"
            )
        else:
            row = await pool.fetchrow(
                "SELECT version, artifact_uri FROM model_versions WHERE version = $1", version
            )
    finally:
        await pool.close()
    if row is None:
        raise ExportError("no active model version" if version is None else f"no version {version}")
    if row["artifact_uri"] is None:
        raise ExportError(f"model version {row['version']} has no artifacts (collected or failed)")
    return int(row["version"]), str(row["artifact_uri"])


async def _export_interactions(args: argparse.Namespace, settings: TrainerSettings) -> int:
    key = signing_key(settings.exports)
    pool = await create_pool(settings.postgres)
    try:
        n = await export_interactions(
            pool, args.out, args.fmt, key=key, since=args.since, until=args.until
        )
    finally:
        await pool.close()
    print(f"exported {n} interactions to {args.out} ({args.fmt})")
    return 0


def _export_snapshots(args: argparse.Namespace, settings: TrainerSettings) -> int:
    key = signing_key(settings.exports)
    if args.fmt == "pickle":
        _require_key(key, "write")  # before downloading a model for nothing
    uri = args.artifact
    if uri is None:
        _, uri = asyncio.run(_model_uri(settings, args.version))
    directory = open_version(uri, settings.artifacts)
    bundle = ModelBundle.load(directory)
    if bundle.topn is None:
        logger.warning("model version %s has no topn lists: empty export", bundle.version)
    n = write_export(
        args.out,
        args.fmt,
        "snapshots",
        snapshots_from_bundle(bundle, k=args.k),
        key=key,
        meta={"model_version": bundle.version, "artifact_uri": uri},
    )
    print(f"exported {n} recommendation snapshots of model {bundle.version} to {args.out}")
    return 0


async def _import_interactions(args: argparse.Namespace, settings: TrainerSettings) -> int:
    key = signing_key(settings.exports)
    detect_format(args.file)  # refuse an unsigned pickle before connecting anywhere
    pool = await create_pool(settings.postgres)
    try:
        result = await import_interactions(
            pool, args.file, key=key, batch=settings.exports.import_batch
        )
    finally:
        await pool.close()
    print(
        f"imported {result.read} events from {args.file}: {result.inserted} new, "
        f"{result.duplicates} already archived"
    )
    return 0


def _convert(args: argparse.Namespace, settings: TrainerSettings) -> int:
    n = convert_to_json(args.file, args.out, key=signing_key(settings.exports))
    print(f"converted {n} records from {args.file} to {args.out} (json)")
    return 0


def run_command(args: argparse.Namespace, settings: TrainerSettings) -> int:
    """``streamrec export|import|convert`` (arguments parsed by ``streamrec_trainer.cli``).

    Returns the exit status; errors are printed as one line, without a traceback.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        if args.command == "export" and args.what == "interactions":
            return asyncio.run(_export_interactions(args, settings))
        if args.command == "export" and args.what == "snapshots":
            return _export_snapshots(args, settings)
        if args.command == "import" and args.what == "interactions":
            return asyncio.run(_import_interactions(args, settings))
        if args.command == "convert":
            return _convert(args, settings)
    except (ExportError, ArtifactError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"streamrec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command!r}")
