"""Interaction logs -> weighted, time-decayed user-item matrices; temporal splits; loaders.

Pure apart from the two file loaders (JSON-lines event log, UCI Online Retail CSV), which only
read local files. Times are unix seconds (UTC) of *event* time throughout.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from streamrec_shared.events import EVENT_TYPES
from streamrec_shared.weights import decay_factors, event_weights

logger = logging.getLogger(__name__)


def _str_array(values: ArrayLike) -> NDArray[np.str_]:
    arr = np.asarray(values)
    if arr.dtype.kind != "U":
        arr = np.asarray([str(v) for v in arr.reshape(-1)], dtype=np.str_)
    return arr.reshape(-1)


def encode_ids(values: ArrayLike) -> tuple[NDArray[np.int32], NDArray[np.str_]]:
    """Dictionary-encode strings: (codes (n,) int32, vocab (k,) unicode sorted and unique) with
    ``vocab[codes]`` equal to the input."""
    vocab, codes = np.unique(_str_array(values), return_inverse=True)
    return codes.astype(np.int32).reshape(-1), vocab


def _normalise_vocab(
    codes: ArrayLike, vocab: ArrayLike
) -> tuple[NDArray[np.int32], NDArray[np.str_]]:
    """Codes into a vocabulary made sorted and unique (the codes are remapped; cost O(k log k)
    in the vocabulary size plus O(n) for the remap)."""
    raw = _str_array(vocab)
    codes = np.asarray(codes).reshape(-1)
    if codes.size and (codes.min() < 0 or codes.max() >= raw.size):
        raise ValueError("codes out of range of the vocabulary")
    if raw.size < 2 or bool(np.all(raw[1:] > raw[:-1])):
        return codes.astype(np.int32, copy=False), raw
    sorted_vocab, remap = np.unique(raw, return_inverse=True)
    return remap.astype(np.int32)[codes], sorted_vocab


def _present(codes: NDArray[np.int32], vocab: NDArray[np.str_]) -> NDArray[np.bool_]:
    """(k,) bool: which vocabulary entries at least one row uses."""
    return np.bincount(codes, minlength=vocab.size).astype(bool)


class Interactions:
    """Columnar event log, one row per event (n,), with dictionary-encoded ids.

    Stored columns: user_codes / item_codes (n,) int32 indices into user_vocab (n_u,) /
    item_vocab (n_i,) unicode; type_codes (n,) int16 into type_vocab (n_t,) unicode. Every
    vocabulary is sorted and unique and may hold ids no row uses (``select`` keeps the parent's
    vocabularies). values (n,) float64, NaN where an event has no value (rating stars or
    quantity); timestamps (n,) float64 unix seconds of event time.

    ``user_ids``, ``item_ids`` and ``event_types`` materialise the (n,) unicode columns on
    demand; with millions of rows prefer the codes (an (n,) int32 column is ~8x smaller than
    unicode ids and sorts or joins ~10x faster). Immutable.
    """

    __slots__ = (
        "item_codes",
        "item_vocab",
        "timestamps",
        "type_codes",
        "type_vocab",
        "user_codes",
        "user_vocab",
        "values",
    )
    user_codes: NDArray[np.int32]
    user_vocab: NDArray[np.str_]
    item_codes: NDArray[np.int32]
    item_vocab: NDArray[np.str_]
    type_codes: NDArray[np.int16]
    type_vocab: NDArray[np.str_]
    values: NDArray[np.float64]
    timestamps: NDArray[np.float64]

    def __init__(
        self,
        user_ids: ArrayLike,
        item_ids: ArrayLike,
        event_types: ArrayLike,
        values: ArrayLike,
        timestamps: ArrayLike,
    ) -> None:
        """From (n,) columns: ids and event types as strings, values, timestamps."""
        user_codes, user_vocab = encode_ids(user_ids)
        item_codes, item_vocab = encode_ids(item_ids)
        type_codes, type_vocab = encode_ids(event_types)
        self._set(
            user_codes, user_vocab, item_codes, item_vocab, type_codes, type_vocab,
            values, timestamps,
        )  # fmt: skip

    def _set(
        self,
        user_codes: NDArray[np.int32],
        user_vocab: NDArray[np.str_],
        item_codes: NDArray[np.int32],
        item_vocab: NDArray[np.str_],
        type_codes: ArrayLike,
        type_vocab: NDArray[np.str_],
        values: ArrayLike,
        timestamps: ArrayLike,
    ) -> None:
        if type_vocab.size > np.iinfo(np.int16).max:
            raise ValueError("too many distinct event types")
        columns = {
            "user_codes": np.asarray(user_codes, dtype=np.int32).reshape(-1),
            "user_vocab": user_vocab,
            "item_codes": np.asarray(item_codes, dtype=np.int32).reshape(-1),
            "item_vocab": item_vocab,
            "type_codes": np.asarray(type_codes, dtype=np.int16).reshape(-1),
            "type_vocab": type_vocab,
            "values": np.asarray(values, dtype=np.float64).reshape(-1),
            "timestamps": np.asarray(timestamps, dtype=np.float64).reshape(-1),
        }
        n = columns["user_codes"].shape[0]
        for name in ("item_codes", "type_codes", "values", "timestamps"):
            if columns[name].shape[0] != n:
                raise ValueError(f"Interactions.{name} has a different length than user_ids")
        for name, value in columns.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Interactions is immutable (cannot set {name})")

    @classmethod
    def from_codes(
        cls,
        *,
        user_codes: ArrayLike,
        user_vocab: ArrayLike,
        item_codes: ArrayLike,
        item_vocab: ArrayLike,
        type_codes: ArrayLike,
        type_vocab: ArrayLike,
        values: ArrayLike,
        timestamps: ArrayLike,
    ) -> Interactions:
        """From dictionary-encoded columns (codes (n,) integer into vocab (k,) strings, e.g. as
        a database query returns them). Vocabularies need not be sorted: they are sorted here
        and the codes remapped, which costs O(k log k) + O(n), never a sort of the n rows."""
        out = cls.__new__(cls)
        uc, uv = _normalise_vocab(user_codes, user_vocab)
        ic, iv = _normalise_vocab(item_codes, item_vocab)
        tc, tv = _normalise_vocab(type_codes, type_vocab)
        out._set(uc, uv, ic, iv, tc, tv, values, timestamps)
        return out

    def __len__(self) -> int:
        return int(self.user_codes.shape[0])

    def __repr__(self) -> str:
        return (
            f"Interactions(n={len(self)}, users={self.user_vocab.size}, "
            f"items={self.item_vocab.size}, types={self.type_vocab.tolist()})"
        )

    @property
    def user_ids(self) -> NDArray[np.str_]:
        """ndarray (n,) unicode, materialised from the codes."""
        return self.user_vocab[self.user_codes]

    @property
    def item_ids(self) -> NDArray[np.str_]:
        """ndarray (n,) unicode, materialised from the codes."""
        return self.item_vocab[self.item_codes]

    @property
    def event_types(self) -> NDArray[np.str_]:
        """ndarray (n,) unicode, materialised from the codes."""
        return self.type_vocab[self.type_codes]

    def distinct_users(self) -> NDArray[np.str_]:
        """Sorted unique user ids that occur in the rows: ndarray (k,) unicode."""
        return self.user_vocab[_present(self.user_codes, self.user_vocab)]

    def distinct_items(self) -> NDArray[np.str_]:
        """Sorted unique item ids that occur in the rows: ndarray (k,) unicode."""
        return self.item_vocab[_present(self.item_codes, self.item_vocab)]

    def base_weights(self) -> NDArray[np.float32]:
        """Event weights before decay (``streamrec_shared.weights.event_weights``), computed once
        per event type and gathered: ndarray (n,) float32."""
        per_type = event_weights(self.type_vocab)
        out = per_type[self.type_codes]
        rating = np.flatnonzero(self.type_vocab == "rating")
        if rating.size:
            rows = np.flatnonzero(self.type_codes == rating[0])
            out[rows] = event_weights(np.full(rows.size, "rating"), self.values[rows])
        return out

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Interactions:
        """From mappings with user_id, item_id (or product_id), event_type, value, ts/timestamp."""
        users: list[str] = []
        items: list[str] = []
        types: list[str] = []
        values: list[float] = []
        stamps: list[float] = []
        for rec in records:
            users.append(str(rec["user_id"]))
            items.append(str(rec["item_id"] if "item_id" in rec else rec["product_id"]))
            types.append(str(rec["event_type"]))
            value = rec.get("value")
            values.append(math.nan if value is None else float(value))
            stamps.append(parse_timestamp(rec["ts"] if "ts" in rec else rec["timestamp"]))
        return cls(
            user_ids=np.asarray(users, dtype=np.str_),
            item_ids=np.asarray(items, dtype=np.str_),
            event_types=np.asarray(types, dtype=np.str_),
            values=np.asarray(values, dtype=np.float64),
            timestamps=np.asarray(stamps, dtype=np.float64),
        )

    def select(self, mask: NDArray[np.bool_] | NDArray[np.integer]) -> Interactions:
        """Rows selected by a boolean mask (n,) or an index array (vocabularies are shared)."""
        out = Interactions.__new__(Interactions)
        out._set(
            self.user_codes[mask], self.user_vocab, self.item_codes[mask], self.item_vocab,
            self.type_codes[mask], self.type_vocab, self.values[mask], self.timestamps[mask],
        )  # fmt: skip
        return out

    def time_range(self) -> tuple[float, float]:
        """(first, last) event time in unix seconds; raises ValueError when empty."""
        if len(self) == 0:
            raise ValueError("no interactions")
        return float(self.timestamps.min()), float(self.timestamps.max())


def parse_timestamp(value: Any) -> float:
    """Unix seconds from a number (seconds) or an ISO-8601 string; naive times are UTC."""
    if isinstance(value, bool):
        raise TypeError("timestamp must be a number or an ISO-8601 string")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.strip())
    else:
        raise TypeError(f"unsupported timestamp {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def temporal_split(
    interactions: Interactions, test_fraction: float = 0.2
) -> tuple[Interactions, Interactions, float]:
    """Global split by event time: the last ``test_fraction`` of the time *span* is the test set.

    Returns (train, test, cutoff) with train = events at t < cutoff, test = events at
    t >= cutoff, cutoff = first + (1 - test_fraction) * (last - first) in unix seconds.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    start, end = interactions.time_range()
    cutoff = start + (1.0 - test_fraction) * (end - start)
    in_train = interactions.timestamps < cutoff
    return interactions.select(in_train), interactions.select(~in_train), cutoff


def index_of(ids: NDArray[np.str_], query: ArrayLike) -> NDArray[np.int64]:
    """Position of each query id in ``ids`` (n,) unicode, -1 where absent: ndarray (m,) int64."""
    q = _str_array(query)
    if ids.size == 0 or q.size == 0:
        return np.full(q.shape[0], -1, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], q)
    pos = np.minimum(pos, ids.size - 1)
    found = ids[order][pos] == q
    return np.where(found, order[pos], -1).astype(np.int64)


@dataclass(frozen=True)
class InteractionMatrix:
    """Net decayed event weights per (user, item).

    matrix: csr_matrix (n_users, n_items) float32, rows users, columns items, strictly positive
    stored values (net weights <= 0 are dropped); user_ids (n_users,) / item_ids (n_items,)
    unicode label the rows / columns; last_ts (n_users,) float64 each user's newest event time
    (NaN for a user without events); reference_ts is the event time the weights are decayed to.
    """

    matrix: sp.csr_matrix
    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    last_ts: NDArray[np.float64]
    reference_ts: float
    half_life_days: float | None
    _user_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _item_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.matrix.shape[0]), int(self.matrix.shape[1])

    @property
    def user_index(self) -> Mapping[str, int]:
        if not self._user_index:
            self._user_index.update({u: k for k, u in enumerate(self.user_ids.tolist())})
        return self._user_index

    @property
    def item_index(self) -> Mapping[str, int]:
        if not self._item_index:
            self._item_index.update({i: k for k, i in enumerate(self.item_ids.tolist())})
        return self._item_index

    def binary(self) -> sp.csr_matrix:
        """csr_matrix (n_users, n_items) float32 with 1.0 for every stored interaction."""
        out = self.matrix.copy()
        out.data = np.ones_like(out.data)
        return out


def _axis(
    codes: NDArray[np.int32], vocab: NDArray[np.str_], wanted: ArrayLike | None
) -> tuple[NDArray[np.str_], NDArray[np.int32]]:
    """Labels of one matrix axis and the map vocabulary code -> position on it (-1 = dropped).

    ``wanted`` None: the sorted ids that occur; else those ids in that order. Returns
    (labels (m,) unicode, map (k,) int32 over the vocabulary).
    """
    if wanted is None:
        present = _present(codes, vocab)
        position = np.cumsum(present, dtype=np.int64) - 1
        return vocab[present], np.where(present, position, -1).astype(np.int32)
    labels = _str_array(wanted)
    return labels, index_of(labels, vocab).astype(np.int32)


def build_matrix(
    interactions: Interactions,
    *,
    half_life_days: float | None = None,
    reference_ts: float | None = None,
    user_ids: ArrayLike | None = None,
    item_ids: ArrayLike | None = None,
) -> InteractionMatrix:
    """Weighted, decayed user-item matrix.

    Each event contributes ``event_weight * 0.5 ** (age / half_life)`` with age measured from
    ``reference_ts`` (default: the newest event, i.e. the end of the data window; never the wall
    clock). Contributions are summed per (user, item) in float64; cells whose net weight is <= 0
    are dropped. With ``user_ids`` / ``item_ids`` the rows / columns follow those lists and
    events of other users / items are ignored; otherwise they are the sorted unique ids seen.
    """
    if reference_ts is None:
        reference_ts = interactions.time_range()[1] if len(interactions) else 0.0
    users, user_map = _axis(interactions.user_codes, interactions.user_vocab, user_ids)
    items, item_map = _axis(interactions.item_codes, interactions.item_vocab, item_ids)
    rows = user_map[interactions.user_codes]
    cols = item_map[interactions.item_codes]
    keep = np.flatnonzero((rows >= 0) & (cols >= 0))
    if keep.size == rows.size:  # the usual case: no copies of the columns
        kept: Interactions = interactions
    else:
        kept = interactions.select(keep)
        rows, cols = rows[keep], cols[keep]
    base = kept.base_weights().astype(np.float64)
    base *= decay_factors(kept.timestamps, reference_ts, half_life_days)
    # rounded through float32 as ``weights.decayed_event_weights``, summed in float64
    weights = base.astype(np.float32).astype(np.float64)
    del base
    shape = (users.shape[0], items.shape[0])
    summed = sp.coo_matrix((weights, (rows, cols)), shape=shape).tocsr()
    del weights
    summed.sum_duplicates()
    summed.data[summed.data <= 0] = 0.0
    summed.eliminate_zeros()
    matrix = sp.csr_matrix(summed, dtype=np.float32)
    del summed
    matrix.sort_indices()
    last_ts = np.full(shape[0], -np.inf, dtype=np.float64)
    np.maximum.at(last_ts, rows, kept.timestamps)
    last_ts[np.isneginf(last_ts)] = np.nan
    return InteractionMatrix(
        matrix=matrix,
        user_ids=users,
        item_ids=items,
        last_ts=last_ts,
        reference_ts=float(reference_ts),
        half_life_days=half_life_days,
    )


@dataclass(frozen=True)
class Catalog:
    """Product table, one row per product (n,).

    product_ids, categories ("" when unknown), texts (name + description): ndarray (n,) unicode;
    prices: ndarray (n,) float64, NaN when unknown; attributes: tuple of n str->str mappings.
    """

    product_ids: NDArray[np.str_]
    categories: NDArray[np.str_]
    prices: NDArray[np.float64]
    texts: NDArray[np.str_]
    attributes: tuple[Mapping[str, str], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "product_ids", _str_array(self.product_ids))
        object.__setattr__(self, "categories", _str_array(self.categories))
        object.__setattr__(self, "texts", _str_array(self.texts))
        object.__setattr__(self, "prices", np.asarray(self.prices, dtype=np.float64).reshape(-1))
        n = self.product_ids.shape[0]
        if not (
            self.categories.shape[0] == self.texts.shape[0] == self.prices.shape[0] == n
            and len(self.attributes) == n
        ):
            raise ValueError("Catalog columns differ in length")

    def __len__(self) -> int:
        return int(self.product_ids.shape[0])

    @classmethod
    def empty(cls) -> Catalog:
        return cls(
            product_ids=np.asarray([], dtype=np.str_),
            categories=np.asarray([], dtype=np.str_),
            prices=np.asarray([], dtype=np.float64),
            texts=np.asarray([], dtype=np.str_),
            attributes=(),
        )

    def reindex(self, product_ids: ArrayLike) -> Catalog:
        """The catalogue aligned to ``product_ids`` (m,); unknown products get empty rows."""
        ids = _str_array(product_ids)
        pos = index_of(self.product_ids, ids)
        found = pos >= 0
        safe = np.where(found, pos, 0)
        n = len(self)
        return Catalog(
            product_ids=ids,
            categories=np.where(found, self.categories[safe], "") if n else np.full(ids.size, ""),
            prices=np.where(found, self.prices[safe], np.nan) if n else np.full(ids.size, np.nan),
            texts=np.where(found, self.texts[safe], "") if n else np.full(ids.size, ""),
            attributes=tuple(self.attributes[int(p)] if p >= 0 else {} for p in pos),
        )


def catalog_from_records(records: Iterable[Mapping[str, Any]]) -> Catalog:
    """From product mappings: product_id, category, price, name, description, attributes.

    Later records for the same product_id replace earlier ones (as on the compacted topic).
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        latest[str(rec["product_id"])] = rec
    ids = sorted(latest)
    cats: list[str] = []
    prices: list[float] = []
    texts: list[str] = []
    attrs: list[Mapping[str, str]] = []
    for pid in ids:
        rec = latest[pid]
        cats.append(str(rec.get("category") or ""))
        price = rec.get("price")
        prices.append(math.nan if price is None else float(price))
        texts.append(" ".join(str(rec.get(k) or "") for k in ("name", "description")).strip())
        raw = rec.get("attributes") or {}
        attrs.append({str(k): str(v) for k, v in dict(raw).items()})
    return Catalog(
        product_ids=np.asarray(ids, dtype=np.str_),
        categories=np.asarray(cats, dtype=np.str_),
        prices=np.asarray(prices, dtype=np.float64),
        texts=np.asarray(texts, dtype=np.str_),
        attributes=tuple(attrs),
    )


@dataclass(frozen=True)
class Dataset:
    """A loaded log: the interactions and whatever catalogue the source provides."""

    interactions: Interactions
    catalog: Catalog


def _open_text(path: str | Path) -> io.TextIOBase:
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return io.TextIOWrapper(p.open("rb"), encoding="utf-8", newline="")


def _id_field(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError("id must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= 128:
        raise ValueError("id must be 1..128 characters")
    return text


def _event_lines(lines: Iterable[str]) -> Iterator[tuple[dict[str, Any], float | None]]:
    """Parsed event objects with their price; skips and counts invalid lines."""
    seen: set[str] = set()
    invalid = duplicates = 0
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            event_id = obj.get("event_id")
            if event_id is not None:
                if str(event_id) in seen:
                    duplicates += 1
                    continue
                seen.add(str(event_id))
            event_type = obj["event_type"]
            if event_type not in EVENT_TYPES:
                raise ValueError(f"unknown event_type {event_type!r}")
            value = obj.get("value")
            price = obj.get("price")
            rec = {
                "user_id": _id_field(obj["user_id"]),
                "item_id": _id_field(obj["product_id"]),
                "event_type": event_type,
                "value": None if value is None else float(value),
                "ts": parse_timestamp(obj["timestamp"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            invalid += 1
            if invalid <= 5:
                logger.warning("skipping invalid event on line %d: %s", line_no, exc)
            continue
        yield rec, None if price is None else float(price)
    if invalid or duplicates:
        logger.warning("event log: %d invalid lines, %d duplicate event_ids", invalid, duplicates)


def load_events_jsonl(path: str | Path) -> Dataset:
    """The project's v1 event log as JSON lines (optionally .gz), one event object per line.

    Uses user_id, product_id, event_type, timestamp (unix seconds or ISO-8601; required here),
    value and price; other fields are ignored. A repeated event_id counts once. The catalogue
    holds each product's last seen price (no category or text: events do not carry them).
    """
    records: list[dict[str, Any]] = []
    last_price: dict[str, tuple[float, float]] = {}
    with _open_text(path) as fh:
        for rec, price in _event_lines(fh):
            records.append(rec)
            if price is not None and math.isfinite(price):
                prev = last_price.get(rec["item_id"])
                if prev is None or rec["ts"] >= prev[0]:
                    last_price[rec["item_id"]] = (rec["ts"], price)
    interactions = Interactions.from_records(records)
    catalog = catalog_from_records(
        {"product_id": pid, "price": price} for pid, (_, price) in last_price.items()
    )
    logger.info("loaded %d events from %s", len(interactions), path)
    return Dataset(interactions=interactions, catalog=catalog)


ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)


def customer_id(raw: str) -> str:
    """An Online Retail CustomerID as the id string ("17850.0" -> "17850"; "" when missing)."""
    raw = raw.strip()
    return raw[:-2] if raw.endswith(".0") else raw


def load_online_retail(path: str | Path) -> Dataset:
    """UCI Online Retail CSV (optionally .gz) -> purchases per customer + product catalogue.

    Interactions: one ``purchase`` event per invoice line with a CustomerID, a positive quantity
    and an invoice number not starting with "C" (cancellations are dropped); value = quantity;
    InvoiceDate (no zone in the file) is read as UTC. Catalogue: every StockCode seen on a
    non-cancelled line, text = its most frequent description, price = median positive
    UnitPrice, category "" (the file has none).
    """
    users: list[str] = []
    items: list[str] = []
    qty: list[float] = []
    dates: list[str] = []
    codes: set[str] = set()
    descriptions: defaultdict[str, Counter[str]] = defaultdict(Counter)
    prices: defaultdict[str, list[float]] = defaultdict(list)
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        missing = set(ONLINE_RETAIL_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not the Online Retail CSV: missing columns {missing}")
        for row in reader:
            if row["InvoiceNo"].startswith("C"):
                continue
            code = row["StockCode"].strip()
            quantity = float(row["Quantity"])
            price = float(row["UnitPrice"])
            desc = row["Description"].strip()
            if desc:
                descriptions[code][desc] += 1
            if price > 0:
                prices[code].append(price)
            codes.add(code)
            customer = customer_id(row["CustomerID"])
            if not customer or quantity <= 0:
                continue
            users.append(customer)
            items.append(code)
            qty.append(quantity)
            dates.append(row["InvoiceDate"])
    stamps = np.asarray(dates, dtype="datetime64[s]").astype(np.int64).astype(np.float64)
    n = len(users)
    interactions = Interactions(
        user_ids=np.asarray(users, dtype=np.str_),
        item_ids=np.asarray(items, dtype=np.str_),
        event_types=np.full(n, "purchase"),
        values=np.asarray(qty, dtype=np.float64),
        timestamps=stamps,
    )
    ordered = sorted(codes)
    catalog = Catalog(
        product_ids=np.asarray(ordered, dtype=np.str_),
        categories=np.full(len(ordered), "", dtype=np.str_),
        prices=np.asarray(
            [float(np.median(prices[c])) if c in prices else math.nan for c in ordered],
            dtype=np.float64,
        ),
        texts=np.asarray(
            [descriptions[c].most_common(1)[0][0] if c in descriptions else "" for c in ordered],
            dtype=np.str_,
        ),
        attributes=tuple({} for _ in ordered),
    )
    logger.info("loaded %d purchases, %d products from %s", n, len(catalog), path)
    return Dataset(interactions=interactions, catalog=catalog)


LOADERS = {"events": load_events_jsonl, "online-retail": load_online_retail}


def load(path: str | Path, fmt: str) -> Dataset:
    """Load a log in one of ``LOADERS`` formats ("events" JSON lines or "online-retail" CSV)."""
    try:
        loader = LOADERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(LOADERS)}") from None
    return loader(path)


def recent_users(matrix: InteractionMatrix, days: float, limit: int | None = None) -> Sequence[int]:
    """Row indices of users whose newest event is within ``days`` of ``matrix.reference_ts``,
    most recent first, at most ``limit``."""
    threshold = matrix.reference_ts - days * 86_400.0
    last = np.nan_to_num(matrix.last_ts, nan=-np.inf)
    rows = np.flatnonzero(last >= threshold)
    rows = rows[np.argsort(-last[rows], kind="stable")]
    return rows[:limit].tolist() if limit is not None else rows.tolist()
