"""Exact top-k by inner product over a matrix, read as int8 first: a quarter of the bytes.

A scan of the ``content`` factors (100k x 64 float32, 25.6 MB) is memory bound: about 1 ms
per query for numpy's matrix-vector product on the reference machine. ``QuantisedScan`` keeps
an int8 copy (one scale per row) packed for NumKong's integer dot-product kernels, scores all
rows approximately in a quarter of the bytes (0.16 ms for the same matrix), and re-scores in
float32 only the rows whose approximate score can reach the top: the quantisation error of
every approximate score is bounded (``_error_bound``), so a row left out can never have
out-scored the k-th result. The returned scores are the exact float32 inner products, the
same ranking as the full float32 scan (ties aside).

An HNSW graph (``runtime.index``) was measured first on the same 100k content factors and
rejected: queries that are the mean of two products from different categories (a ``context``
request) found 78-89% of the true top 100 even at the widest beam (1,024), where a search
cost more than the float32 scan (1.4-1.5 ms), and took 7-15 s to build
(``tests/bench/micro_content_scan.py --hnsw``); this scan is exact and builds in 0.05-0.07 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numkong
import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.ranking import ItemFilter, Ranked, best_positions

_Q = 127.0
"""Largest int8 magnitude used: row r is stored as round(x_r * 127 / max|x_r|)."""
_DENSE_SHARE = 0.25
"""Over-fetching stops at this share of the rows: the filter is then applied to all of them."""


@dataclass(frozen=True, eq=False)
class QuantisedScan:
    """Exact top-k over rows (m, f) float32 of a matrix, scored in int8 first.

    packed: the int8 copy of the rows packed by ``numkong.dots_pack``; scales (m,) float32
    the per-row scale (row ~ scale * int8 row); row_error: the largest L2 norm of a row's
    rounding error; row_norm: the largest row norm. Rows appended to the matrix after the
    build (products placed by ``serving.newitems`` while the model serves) are not in the
    packed copy: ``top`` scores them exactly.
    """

    packed: numkong.PackedMatrix
    scales: NDArray[np.float32]
    row_error: float
    row_norm: float

    @property
    def size(self) -> int:
        return int(self.scales.shape[0])

    @classmethod
    def build(cls, rows: NDArray[np.float32]) -> QuantisedScan:
        """Quantise and pack rows (m, f) float32 (0.05-0.07 s for 100k x 64)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        peak = np.abs(rows).max(axis=1)
        scales = (np.where(peak > 0, peak, 1.0) / _Q).astype(np.float32)
        ints = np.rint(rows / scales[:, None]).astype(np.int8)
        error = rows - ints.astype(np.float32) * scales[:, None]
        return cls(
            packed=numkong.dots_pack(ints, dtype="int8"),
            scales=scales,
            row_error=float(np.sqrt(np.einsum("ij,ij->i", error, error)).max(initial=0.0)),
            row_norm=float(np.sqrt(np.einsum("ij,ij->i", rows, rows)).max(initial=0.0)),
        )

    def approximate(self, query: NDArray[np.float32]) -> tuple[NDArray[np.float32], float]:
        """Approximate inner products (m,) float32 of query (f,) float32 with every row, and
        a bound of their absolute error."""
        peak = float(np.abs(query).max(initial=0.0))
        scale = peak / _Q if peak > 0 else 1.0
        q8 = np.rint(query / scale).astype(np.int8)
        dots: Any = numkong.dots_packed(q8[None, :], self.packed)
        # asarray of the int32 Tensor first (a view): asking it for float32 directly takes
        # numpy's slow element-wise path for buffer objects.
        approx = np.asarray(dots).reshape(-1).astype(np.float32)
        approx *= self.scales
        approx *= np.float32(scale)
        return approx, self._error_bound(query, q8, scale)

    def _error_bound(self, query: NDArray[np.float32], q8: NDArray[np.int8], scale: float) -> float:
        """Largest |q . x_r - approx_r| over rows: with x_r = s_r x8_r + e_r and
        q = s q8 + e, q . x_r - s s_r (q8 . x8_r) = s q8 . e_r + e . x_r, bounded by
        |s q8| max|e_r| + |e| max|x_r| (Cauchy-Schwarz); widened for float32 rounding."""
        q_int = q8.astype(np.float64) * scale
        residual = query.astype(np.float64) - q_int
        bound = float(np.linalg.norm(q_int)) * self.row_error
        bound += float(np.linalg.norm(residual)) * self.row_norm
        return bound * 1.001 + 1e-6 * (1.0 + float(np.linalg.norm(query)) * self.row_norm)

    def top(
        self,
        query: NDArray[np.float32],
        c: int,
        item_filter: ItemFilter,
        rows: NDArray[np.float32],
        items: NDArray[np.int64],
    ) -> Ranked:
        """The best ``c`` items for query (f,) float32 after the filter, exact scores.

        rows (m + t, f) float32: the matrix now, its first m rows the ones built from (the
        rows after them are scored exactly); items (m + t,) int64: the item index of each
        row, which the filter and the result use.
        """
        m = self.size
        if c <= 0 or items.shape[0] == 0:
            return Ranked.empty()
        approx, err = self.approximate(query)
        if rows.shape[0] > m:
            approx = np.concatenate([approx, rows[m:] @ query])
        total = int(approx.shape[0])
        # The c-th best approximate score t among rows the filter keeps: c kept rows score at
        # least t - err exactly, so a row in the true top c scores at least t - 2 err
        # approximately. Over-fetch the best rows until c of them pass the filter.
        want = min(total, c + int(item_filter.exclude.size) + 16)
        kept: NDArray[np.int64] | None = None
        while want < total * _DENSE_SHARE:
            best = best_positions(approx, want)
            ok = best[item_filter.keep(items[best])]
            if ok.shape[0] >= c:
                kept = ok
                break
            want *= 4
        if kept is None:  # heavily filtered: filter every row
            kept = np.flatnonzero(item_filter.keep(items))
            if kept.shape[0] == 0:
                return Ranked.empty()
        if kept.shape[0] >= c:
            threshold = float(np.partition(approx[kept], kept.shape[0] - c)[kept.shape[0] - c])
            cand = np.flatnonzero(approx >= threshold - 2.0 * err)
            cand = cand[item_filter.keep(items[cand])]
        else:
            cand = kept
        if cand.shape[0] > total * _DENSE_SHARE:
            # Many near-ties (e.g. products that share one content vector): one contiguous
            # pass over the float32 rows is cheaper than gathering most of them.
            exact = np.asarray(rows @ query, dtype=np.float32)[cand]
        else:
            exact = np.asarray(rows[cand] @ query, dtype=np.float32)
        best = best_positions(exact, c)
        return Ranked.of(items[cand[best]], exact[best])
