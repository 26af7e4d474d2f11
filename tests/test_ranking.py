"""topk: exact tie-breaking against a full-sort reference; hits_from_ranked: membership."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import benchmark.ranking as ranking
from benchmark.ranking import hits_from_ranked, topk


def reference_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full lexsort of every row by (-score, index); -inf entries become padding."""
    n, n_items = scores.shape
    cols = np.broadcast_to(np.arange(n_items), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    values = np.take_along_axis(scores, order, axis=1)
    indices = np.where(values > -np.inf, order, -1)
    pad = k - indices.shape[1]
    indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
    values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return indices, values.astype(np.float32)


def check(scores: np.ndarray, k: int) -> None:
    got_idx, got_val = topk(scores, k)
    ref_idx, ref_val = reference_topk(scores, k)
    assert got_idx.dtype == np.int64 and got_val.dtype == np.float32
    assert got_idx.shape == got_val.shape == (scores.shape[0], k)
    np.testing.assert_array_equal(got_idx, ref_idx)
    np.testing.assert_array_equal(got_val, ref_val)


def tied_scores(rng: np.random.Generator, n: int, n_items: int, levels: int, p_mask: float):
    scores = rng.integers(0, levels, (n, n_items)).astype(np.float32)
    scores[rng.random((n, n_items)) < p_mask] = -np.inf
    return scores


def test_hand_case():
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 2.0, 3.0],  # tie of three at the top: lower index first
            [-np.inf, 5.0, -np.inf, -np.inf, -np.inf],  # one finite entry: pad
            [0.0, 0.0, 0.0, 0.0, 0.0],  # all equal: the first k indices
        ],
        dtype=np.float32,
    )
    idx, val = topk(scores, 2)
    np.testing.assert_array_equal(idx, [[1, 2], [1, -1], [0, 1]])
    np.testing.assert_array_equal(val, [[3, 3], [5, -np.inf], [0, 0]])
    idx, _ = topk(scores, 7)  # k > N: all finite entries, then padding
    np.testing.assert_array_equal(idx[0], [1, 2, 4, 3, 0, -1, -1])
    np.testing.assert_array_equal(idx[1], [1, -1, -1, -1, -1, -1, -1])


@pytest.mark.parametrize("n_items,k", [(40, 1), (40, 5), (40, 39), (40, 40), (40, 60), (300, 10)])
@pytest.mark.parametrize("levels,p_mask", [(3, 0.0), (5, 0.3), (1000, 0.1), (4, 0.9)])
def test_plain_path_matches_reference(n_items, k, levels, p_mask):
    rng = np.random.default_rng(n_items * 1000 + k * 10 + levels)
    check(tied_scores(rng, 400, n_items, levels, p_mask), k)


@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("levels,p_mask", [(2, 0.0), (6, 0.5), (50, 0.0), (10**6, 0.2), (3, 0.995)])
def test_grouped_path_matches_reference(k, levels, p_mask):
    # N >= 32 k takes the group-maximum prefilter.
    rng = np.random.default_rng(k * 7 + levels)
    n_items = 5003  # not a multiple of the group count: exercises the tail columns
    assert n_items >= ranking._GROUPED_MIN_RATIO * k
    check(tied_scores(rng, 120, n_items, levels, p_mask), k)


def test_grouped_path_special_rows():
    rng = np.random.default_rng(5)
    n_items, k = 5000, 10
    rows = []
    rows.append(np.zeros(n_items))  # constant row (cold start): every group tied
    rows.append(np.full(n_items, -np.inf))  # everything masked
    row = np.full(n_items, -np.inf)
    row[[4999, 7, 2500]] = [1.0, 1.0, 2.0]  # fewer finite entries than k
    rows.append(row)
    # Many groups tied at the threshold, but the groups above it hold >= k entries:
    # with G = 223 strided groups, columns c % 223 in {0, 1} form 2 groups of ~22 entries.
    row = np.zeros(n_items)
    row[np.arange(n_items) % 223 < 2] = 1.0
    rows.append(row)
    # Groups above the threshold hold fewer than k entries: fill from the tie at 0.
    row = np.zeros(n_items)
    row[[4000, 30, 2222]] = [3.0, 1.0, 1.0]
    rows.append(row)
    # +inf, -0.0 and 0.0 (equal), a popularity-like row with a long tail of zeros
    row = np.floor(rng.pareto(1.5, n_items))
    row[[10, 20]] = np.inf
    row[np.flatnonzero(row == 0)[::2]] = -0.0
    rows.append(row)
    scores = np.array(rows, dtype=np.float32)
    for kk in (1, k, 50, 150):
        check(scores, kk)


def test_ties_found_late_in_the_row():
    # Many groups tied at the threshold and the tied entries far right: the windowed scan
    # for the lowest-index ties has to go through several windows, for some rows only.
    n_items = 20_000
    scores = np.full((4, n_items), -np.inf, dtype=np.float32)
    scores[0, 15_000:15_500] = 1.0
    scores[1, 15_000:15_500] = 1.0
    scores[1, 19_999] = 2.0
    scores[2, :] = 0.0
    scores[3, 5_000:5_600:3] = 7.0
    for k in (1, 10, 100):
        check(scores, k)


def test_identical_rows_popularity_like():
    rng = np.random.default_rng(3)
    pop = np.floor(rng.pareto(1.2, 20_000) * 2).astype(np.float32)
    scores = np.broadcast_to(pop, (64, pop.size)).copy()
    scores[rng.random(scores.shape) < 0.01] = -np.inf  # per-user training items
    check(scores, 50)
    check(scores, 500)


def test_blocks_dtypes_and_layout(monkeypatch):
    monkeypatch.setattr(ranking, "_BLOCK_ELEMENTS", 3000)  # many small row blocks
    rng = np.random.default_rng(11)
    scores = tied_scores(rng, 97, 700, 4, 0.2)
    check(scores, 20)
    check(np.asfortranarray(scores), 20)
    check(scores[:, ::2], 5)  # non-contiguous rows
    check(scores.astype(np.float64), 20)


def test_empty_and_errors():
    idx, val = topk(np.zeros((0, 5), np.float32), 3)
    assert idx.shape == val.shape == (0, 3)
    idx, val = topk(np.zeros((2, 0), np.float32), 3)
    np.testing.assert_array_equal(idx, -np.ones((2, 3)))
    scores = np.zeros((3, 100), np.float32)
    scores[2, 17] = np.nan
    with pytest.raises(ValueError, match="row 2, column 17"):
        topk(scores, 3)
    with pytest.raises(ValueError, match="k must be"):
        topk(scores, 0)
    with pytest.raises(TypeError, match="floating"):
        topk(np.zeros((2, 3), np.int64), 1)
    with pytest.raises(ValueError, match="2-D"):
        topk(np.zeros(3, np.float32), 1)


# ------------------------------------------------------------------------ hits_from_ranked


def test_hits_hand_case():
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    ranked = np.array([[3, 0, 1], [2, 0, -1], [4, -1, -1]])
    np.testing.assert_array_equal(
        hits_from_ranked(ranked, relevant),
        [[True, False, True], [False, True, False], [False, False, False]],
    )


def test_hits_random_against_dense():
    rng = np.random.default_rng(9)
    n, n_items, k = 300, 400, 30
    dense = rng.random((n, n_items)) < 0.05
    ranked, _ = topk(tied_scores(rng, n, n_items, 5, 0.3), k)
    expected = np.where(ranked >= 0, dense[np.arange(n)[:, None], np.maximum(ranked, 0)], False)
    np.testing.assert_array_equal(hits_from_ranked(ranked, sp.csr_matrix(dense)), expected)
    np.testing.assert_array_equal(hits_from_ranked(ranked, sp.csr_array(dense)), expected)
    # Unsorted column indices within rows, duplicates, and stored zeros (not relevant).
    coo = sp.coo_matrix(dense)
    perm = rng.permutation(coo.nnz)
    rows = np.concatenate([coo.row[perm], [0, 1, 2]])
    cols = np.concatenate([coo.col[perm], ranked[:3, 0]])
    data = np.concatenate([np.ones(coo.nnz), [0.0, 0.0, 0.0]])
    order = np.argsort(rows, kind="stable")
    indptr = np.searchsorted(rows[order], np.arange(n + 1))
    messy = sp.csr_matrix((data[order], cols[order], indptr), shape=(n, n_items))
    assert not messy.has_sorted_indices and messy.nnz == coo.nnz + 3
    np.testing.assert_array_equal(hits_from_ranked(ranked, messy), expected)
    empty = sp.csr_matrix((n, n_items))
    assert not hits_from_ranked(ranked, empty).any()


def test_hits_errors():
    relevant = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        hits_from_ranked(np.zeros((2, 1), np.int64), relevant)
    with pytest.raises(ValueError, match="outside"):
        hits_from_ranked(np.array([[3], [0], [0]]), relevant)
    with pytest.raises(TypeError, match="sparse"):
        hits_from_ranked(np.zeros((3, 1), np.int64), np.eye(3))
