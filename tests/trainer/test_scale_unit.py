"""The training data path at scale, on small data: dictionary-encoded interactions, the binary
COPY parser, the evaluation user sample and the warm-started refit (no services needed)."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from streamrec_shared.events import EVENT_TYPES
from streamrec_trainer.dataset import Catalog, Dataset, Interactions, build_matrix
from streamrec_trainer.evaluate import temporal_holdout
from streamrec_trainer.models.als import AlsParams, align_factors, fit_als
from streamrec_trainer.models.fit import TrainParams, fit_all
from streamrec_trainer.pipeline import evaluate_fitted, fit_window
from streamrec_trainer.warehouse import (
    COPY_SIGNATURE,
    BinaryRowParser,
    HashCollision,
    copy_row_dtype,
    hash_lookup,
)

from .logs import DAY, T0, clustered_log


def _random_log(n: int, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.asarray([f"u{k}" for k in rng.integers(0, 40, n)])
    items = np.asarray([f"i{k}" for k in rng.integers(0, 25, n)])
    types = np.asarray(EVENT_TYPES)[rng.integers(0, len(EVENT_TYPES), n)]
    values = np.where(types == "rating", rng.integers(1, 6, n).astype(float), np.nan)
    return Interactions(users, items, types, values, T0 + rng.uniform(0, 30 * DAY, n))


def test_from_codes_equals_string_columns() -> None:
    log = _random_log(500)
    # an unsorted vocabulary with an unused entry, as a database might return it
    perm = np.random.default_rng(1).permutation(log.user_vocab.size)
    vocab = np.concatenate([log.user_vocab[perm], ["zz-unused"]])
    inverse = np.argsort(perm)
    coded = Interactions.from_codes(
        user_codes=inverse[log.user_codes],
        user_vocab=vocab,
        item_codes=log.item_codes,
        item_vocab=log.item_vocab,
        type_codes=log.type_codes,
        type_vocab=log.type_vocab,
        values=log.values,
        timestamps=log.timestamps,
    )
    assert coded.user_ids.tolist() == log.user_ids.tolist()
    assert list(coded.user_vocab) == sorted(coded.user_vocab.tolist())
    assert coded.distinct_users().tolist() == sorted(set(log.user_ids.tolist()))
    a = build_matrix(log, half_life_days=7.0)
    b = build_matrix(coded, half_life_days=7.0)
    assert a.user_ids.tolist() == b.user_ids.tolist()
    assert "zz-unused" not in b.user_ids.tolist()
    assert (a.matrix != b.matrix).nnz == 0
    np.testing.assert_array_equal(a.last_ts, b.last_ts)


def test_build_matrix_matches_the_per_event_weights() -> None:
    """The matrix from codes equals summing ``decayed_event_weights`` row by row."""
    from streamrec_shared.weights import decayed_event_weights

    log = _random_log(400, seed=3)
    m = build_matrix(log, half_life_days=10.0)
    w = decayed_event_weights(
        log.event_types, log.values, log.timestamps, m.reference_ts, 10.0
    ).astype(np.float64)
    expected: dict[tuple[str, str], float] = {}
    for u, i, x in zip(log.user_ids.tolist(), log.item_ids.tolist(), w.tolist(), strict=True):
        expected[(u, i)] = expected.get((u, i), 0.0) + x
    dense = m.matrix.toarray()
    for (u, i), x in expected.items():
        got = dense[m.user_index[u], m.item_index[i]]
        assert got == pytest.approx(max(x, 0.0), rel=1e-5, abs=1e-6)


def test_select_keeps_vocabularies_and_given_ids_order() -> None:
    log = _random_log(300, seed=4)
    part = log.select(log.timestamps < T0 + 10 * DAY)
    assert part.user_vocab is log.user_vocab
    assert set(part.distinct_users().tolist()) <= set(log.distinct_users().tolist())
    wanted = ["u7", "u3", "nobody"]
    m = build_matrix(part, user_ids=wanted, item_ids=log.distinct_items())
    assert m.user_ids.tolist() == wanted
    assert m.matrix[2].nnz == 0
    with pytest.raises(AttributeError):
        log.values = np.zeros(3)


def _copy_stream(rows: list[tuple[int, int, int, float, float]]) -> bytes:
    out = bytearray(COPY_SIGNATURE + struct.pack(">ii", 0, 4) + b"ext!")  # a header extension
    for user, item, kind, value, ts in rows:
        out += struct.pack(">hiiiiihidid", 5, 4, user, 4, item, 2, kind, 8, value, 8, ts)
    return bytes(out + b"\xff\xff")


ROW = copy_row_dtype(">i4")


@pytest.mark.parametrize("piece", [1, 7, 48, 1000])
def test_binary_row_parser_in_any_pieces(piece: int) -> None:
    assert ROW.itemsize == 48
    rows = [
        (k % 5, k % 3, k % 6 - (k == 4), float("nan") if k % 2 else k / 2, T0 + k)
        for k in range(50)
    ]
    stream = _copy_stream(rows)
    chunks: list[np.ndarray] = []
    parser = BinaryRowParser(ROW, chunks.append, chunk_bytes=100)

    async def feed() -> None:
        for start in range(0, len(stream), piece):
            await parser.feed(stream[start : start + piece])

    asyncio.run(feed())
    parser.close()
    got = np.concatenate(chunks)
    assert parser.rows == len(rows) == got.size
    assert got["user"].tolist() == [r[0] for r in rows]
    assert got["item"].tolist() == [r[1] for r in rows]
    assert got["type"].tolist() == [r[2] for r in rows]
    np.testing.assert_array_equal(got["value"], [r[3] for r in rows])
    assert got["ts"].tolist() == [r[4] for r in rows]


def test_binary_row_parser_rejects_nulls_and_truncation() -> None:
    stream = _copy_stream([(1, 2, 0, 1.0, T0)])
    header, row = stream[:23], stream[23:-2]
    null_value = struct.pack(">hiiiiihi", 5, 4, 1, 4, 2, 2, 0, -1) + struct.pack(">id", 8, T0)
    parser = BinaryRowParser(ROW, lambda rows: None, chunk_bytes=1)
    with pytest.raises(ValueError, match="layout"):  # a NULL shifts every later row
        asyncio.run(parser.feed(header + null_value + row + b"\xff\xff"))
    parser = BinaryRowParser(ROW, lambda rows: None)
    asyncio.run(parser.feed(stream[:-5]))
    with pytest.raises(ValueError, match="unparsed"):
        parser.close()
    with pytest.raises(ValueError, match="not a binary COPY"):
        asyncio.run(BinaryRowParser(ROW, lambda rows: None, chunk_bytes=1).feed(b"x" * 40))


def test_hash_lookup() -> None:
    vocab = np.asarray([50, -7, 12, 9_000_000_000], dtype=np.int64)
    lookup = hash_lookup(vocab)
    query = np.asarray([12, 12, 9_000_000_000, -7, 50], dtype=np.int64)
    assert lookup(query).tolist() == [2, 2, 3, 1, 0]
    assert lookup(query).dtype == np.int32
    with pytest.raises(ValueError, match="not in the vocabulary"):
        lookup(np.asarray([13], dtype=np.int64))
    with pytest.raises(HashCollision):
        hash_lookup(np.asarray([1, 2, 1], dtype=np.int64))


def test_evaluation_samples_users_deterministically() -> None:
    log = clustered_log()
    full = temporal_holdout(log, test_fraction=0.2)
    assert full.users.size > 10
    a = temporal_holdout(log, test_fraction=0.2, max_users=10, seed=5)
    b = temporal_holdout(log, test_fraction=0.2, max_users=10, seed=5)
    assert a.users.size == 10
    assert a.users.tolist() == b.users.tolist()
    assert set(a.users.tolist()) <= set(full.users.tolist())
    assert a.summary()["n_eligible_users"] == full.users.size
    assert a.targets.shape == (10, full.targets.shape[1])
    rows = [full.users.tolist().index(u) for u in a.users.tolist()]
    assert (a.targets != full.targets[rows]).nnz == 0


def test_warm_start_and_exact_rows() -> None:
    log = clustered_log(1)
    x = build_matrix(log).matrix
    params = AlsParams(factors=4, iterations=10, num_threads=1)
    cold = fit_als(x, params)
    warm = fit_als(x, params, init=cold, iterations=2)
    assert warm.user_factors.shape == cold.user_factors.shape
    # a converged model stays where it is: a warm start moves it little
    assert np.abs(warm.item_factors - cold.item_factors).max() < 0.2
    some = np.asarray([0, 5, 40], dtype=np.int64)
    partial = fit_als(x, params, exact_rows=some)
    np.testing.assert_allclose(partial.user_factors[some], cold.user_factors[some], rtol=1e-4)
    with pytest.raises(ValueError, match="init factors"):
        fit_als(x[:10], params, init=cold)


def test_align_factors_keeps_known_ids() -> None:
    log = clustered_log(2)
    m = build_matrix(log)
    model = fit_als(m.matrix, AlsParams(factors=4, iterations=3, num_threads=1))
    new_users = np.asarray(["u05", "new", "u00"])
    new_items = np.asarray(["i03", "i99"])
    aligned = align_factors(model, m.user_ids, m.item_ids, new_users, new_items, 0)
    np.testing.assert_array_equal(aligned.user_factors[0], model.user_factors[5])
    np.testing.assert_array_equal(aligned.user_factors[2], model.user_factors[0])
    np.testing.assert_array_equal(aligned.item_factors[0], model.item_factors[3])
    assert np.all((aligned.user_factors[1] >= 0) & (aligned.user_factors[1] < 0.01))


def test_pipeline_refit_warm_starts_from_the_evaluated_models() -> None:
    log = clustered_log(3)
    dataset = Dataset(log, Catalog.empty())
    params = TrainParams(als=AlsParams(factors=4, iterations=10, num_threads=1), topn_n=5)
    offline, evaluated = evaluate_fitted(dataset, params, 0.2, max_users=20, seed=1)
    assert evaluated is not None
    assert offline["holdout"]["n_evaluated_users"] <= 20
    assert offline["algorithms"]["als"]["hr@10"] > 0.5  # the taste groups are learnt
    assert evaluated.similar_items.shape[0] == 0  # no lists for an evaluation fit
    warm = fit_window(dataset, params, evaluated, refit_iterations=2)
    cold = fit_window(dataset, params, evaluated, refit_iterations=0)
    reference = fit_all(dataset, params)
    np.testing.assert_array_equal(cold.als.item_factors, reference.als.item_factors)
    assert warm.als.user_factors.shape == cold.als.user_factors.shape
    assert warm.topn_items.shape[1] == 5
    bundle = warm.to_bundle(1)
    assert bundle.als.user_ids.size == warm.matrix.user_ids.size
