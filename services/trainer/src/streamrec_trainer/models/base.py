"""What every algorithm offers the evaluator and the bulk top-N: a ``Scorer``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]


class Scorer(Protocol):
    """Scores every item of the model's catalogue for a batch of known users."""

    @property
    def name(self) -> str: ...

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """Scores ndarray (m, n_items) float32.

        users: ndarray (m,) int64 row indices of the users in the training matrix;
        user_items: csr_matrix (m, n_items) float32, those users' net decayed weights.
        """
        ...


@dataclass(frozen=True)
class FactorScores:
    """Scores as dot products of user and item factors: item_factors (n_items, f) float32,
    user_factors (n_users, f) float32 (rows as the training matrix). A ``Scorer`` once a
    subclass names itself."""

    item_factors: NDArray[np.float32]
    user_factors: NDArray[np.float32]

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """Dot products of the stored user factors with every item: (m, n_items) float32."""
        del user_items
        return np.asarray(self.user_factors[users] @ self.item_factors.T, dtype=np.float32)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread (implicit parallelises itself; nested BLAS threads thrash)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def as_csr32(matrix: sp.spmatrix) -> sp.csr_matrix:
    """A *copy* as csr_matrix float32 with int32 indices and sorted, summed entries (what
    implicit expects); callers may modify its data in place."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.sort_indices()
    if out.indices.dtype != np.int32 or out.indptr.dtype != np.int32:
        out.indices = out.indices.astype(np.int32)
        out.indptr = out.indptr.astype(np.int32)
    return out
