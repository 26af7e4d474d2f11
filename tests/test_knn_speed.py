"""The fast cosine kNN kernel (baselines._knn) gives the reference path's bits, lists and metrics.

Every optimised path (scipy product on relabelled operands, the sampled lower-bound cut, dense
bincount rows, blocks, threads, the memory budget) is forced on tiny data and compared with the
reference path (the original implementation) and with a dense numpy oracle of the definition.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from baselines import _knn
from baselines._knn import cosine_neighbours, cosine_neighbours_reference
from baselines.hybrid import Hybrid
from baselines.itemknn import ItemKNN
from baselines.userknn import UserKNN
from benchmark.evaluate import evaluate_ranking
from benchmark.protocols import InteractionData, SideInfo

SIDE = SideInfo(dataset=None, item_kind="lora", seed=0)


def same_bits(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype == np.float32
            and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data.view(np.uint32), b.data.view(np.uint32)))


def binary(n_rows: int, n_cols: int, density: float, seed: int) -> sp.csr_matrix:
    m = sp.random(n_rows, n_cols, density=density, format="csr", dtype=np.float32,
                  random_state=seed)
    m.data[:] = 1.0
    return m


def oracle(rows: sp.csr_matrix, k: int, shrink) -> np.ndarray:
    """The module docstring's definition, densely: float32 ops, ties to the lower column."""
    x = rows.toarray().astype(np.float32)
    n = x.shape[0]
    overlap = (x.astype(np.int64) @ x.astype(np.int64).T).astype(np.float32)
    norms = np.sqrt((x != 0).sum(axis=1).astype(np.float32))
    out = np.zeros((n, n), dtype=np.float32)
    for a in range(n):
        cand = np.flatnonzero((overlap[a] != 0) & (np.arange(n) != a))
        sim = (overlap[a, cand] / (norms[a] * norms[cand] + shrink)).astype(np.float32)
        top = cand[np.lexsort((cand, -sim))][:k]
        out[a, top] = sim[np.lexsort((cand, -sim))][:k]
    return out


@pytest.fixture(params=["default", "all-dense", "all-sparse-cut"])
def paths(request, monkeypatch):
    """The kernel's paths, each forced: dense bincount rows for every row, or none and the
    sampled cut on every row long enough to hold a sample."""
    if request.param == "all-dense":
        monkeypatch.setattr(_knn, "_DENSE_FROM", 0.0)
    elif request.param == "all-sparse-cut":
        monkeypatch.setattr(_knn, "_DENSE_FROM", 2.0)
        monkeypatch.setattr(_knn, "_FILTER_FROM", 2)
    return request.param


CASES = [(1, 0.0), (2, 0.0), (3, 1.0), (10, 0.0), (5, 50.0), (100, 5.0), (4, np.float64(3.3)),
         (4, 2), (7, np.float32(0.5))]


@pytest.mark.parametrize("seed", range(6))
def test_fast_kernel_is_the_reference_bit_for_bit(paths, seed):
    rng = np.random.default_rng(seed)
    for density in (0.03, 0.15, 0.5, 0.95):
        m = binary(int(rng.integers(2, 70)), int(rng.integers(2, 110)), density, seed)
        for rows in (m.T.tocsr(), m):  # itemknn's and userknn's orientation
            for k, shrink in CASES:
                ref = cosine_neighbours_reference(rows, k, shrink, 4096)
                for threads, budget, block in ((1, 1024.0, 4096), (2, 1e-4, 7), (3, 0.01, 1)):
                    fast = cosine_neighbours(rows, k, shrink, block, num_threads=threads,
                                             memory_budget_mb=budget)
                    assert same_bits(fast, ref), (paths, density, rows.shape, k, shrink, threads)


@pytest.mark.parametrize("k,shrink", [(1, 0.0), (3, 1.0), (6, 0.0), (50, 10.0)])
def test_both_paths_follow_the_written_definition(paths, k, shrink):
    dense = binary(40, 25, 0.2, 7).toarray()
    dense[3] = 0  # an empty row: nobody's neighbour, no neighbours
    m = sp.csr_matrix(dense)
    for rows in (m, m.T.tocsr()):
        want = oracle(rows, k, shrink)
        np.testing.assert_array_equal(cosine_neighbours(rows, k, shrink, 8).toarray(), want)
        np.testing.assert_array_equal(cosine_neighbours_reference(rows, k, shrink, 8).toarray(),
                                      want)


def test_ties_go_to_the_lower_index(paths):
    # 12 identical rows and 3 others: every sim of a copy to another copy is 1, a tie
    base = np.zeros((15, 6), dtype=np.float32)
    base[:12, :3] = 1
    base[12:, 2:] = 1
    m = sp.csr_matrix(base)
    for k in (1, 4, 11, 20):
        fast = cosine_neighbours(m, k, 0.0, 4, num_threads=2, memory_budget_mb=1e-4)
        assert same_bits(fast, cosine_neighbours_reference(m, k, 0.0, 4096))
        row5 = fast[5].indices.tolist()
        # the 11 other copies (sim 1) lowest first, then the 3 others (one tied sim)
        assert row5 == sorted(([i for i in range(12) if i != 5] + [12, 13, 14])[:k])


def test_weights_and_the_fallback():
    """A weighted matrix keeps the reference's operands (no relabelling); negative or
    non-finite values, a negative shrink or k < 1 run the reference path itself."""
    for seed in range(8):
        m = binary(50, 80, 0.2, seed)
        m.data[:] = np.round(np.random.default_rng(seed).random(m.nnz) * 3, 1)  # zeros too
        if seed % 2:
            m.data[::7] = -1.0
        for rows in (m, m.T.tocsr()):
            for k, shrink in ((1, 0.0), (5, 1.0), (30, 0.0), (3, -0.5), (0, 0.0)):
                assert same_bits(cosine_neighbours(rows, k, shrink, 7, num_threads=2),
                                 cosine_neighbours_reference(rows, k, shrink, 4096))


def test_large_rows_take_the_dense_and_cut_paths():
    """Rows long enough for the real thresholds (no monkeypatching), 2 threads, small blocks."""
    rng = np.random.default_rng(0)
    users, items, pairs = 1500, 2500, 15000
    p = 1.0 / (rng.permutation(items) + 1.0)  # Zipf popularity: some rows dense, some not
    cols = rng.choice(items, size=pairs, p=p / p.sum())
    m = sp.csr_matrix((np.ones(pairs, np.float32), (rng.integers(0, users, pairs), cols)),
                      shape=(users, items))
    m.sum_duplicates()
    m.data[:] = 1.0
    for rows in (m, m.T.tocsr()):
        kernel = _knn._Kernel(rows, 10, 0.0)
        assert kernel.dense.any() and not kernel.dense.all()
        assert ((kernel.pairs >= _knn._FILTER_FROM * 11) & ~kernel.dense).any()
        for k, shrink in ((10, 0.0), (25, 2.0)):
            assert same_bits(cosine_neighbours(rows, k, shrink, 64, num_threads=2,
                                               memory_budget_mb=0.5),
                             cosine_neighbours_reference(rows, k, shrink, 4096))


def interactions(m: sp.csr_matrix) -> InteractionData:
    coo = m.tocoo()
    frame = pd.DataFrame({"user_idx": coo.row, "item_idx": coo.col, "timestamp": coo.col})
    return InteractionData(pd.Index([f"u{i}" for i in range(m.shape[0])], dtype=object),
                           pd.Index([f"i{j}" for j in range(m.shape[1])], dtype=object),
                           m, frame, "lora")


@pytest.mark.parametrize("method", [ItemKNN(k=20, shrink=5.0), UserKNN(k=15, shrink=0.0),
                                    ItemKNN(k=400, shrink=50.0)])
def test_same_top_k_lists_and_metrics_as_the_reference(method, monkeypatch):
    rng = np.random.default_rng(3)
    train = binary(120, 90, 0.08, 3)
    test = sp.csr_matrix((np.ones(120), (np.arange(120), rng.integers(0, 90, 120))),
                         shape=(120, 90))
    fast = method.fit(interactions(train), SIDE)
    fast_scores = fast.score(np.arange(120))
    got = evaluate_ranking(fast, train, test, ("recall@10", "ndcg@20"), progress=False)
    monkeypatch.setattr("baselines.itemknn.cosine_neighbours", cosine_neighbours_reference)
    monkeypatch.setattr("baselines.userknn.cosine_neighbours", cosine_neighbours_reference)
    ref = type(method)(**method.get_params()).fit(interactions(train), SIDE)
    np.testing.assert_array_equal(fast_scores.view(np.uint32),
                                  ref.score(np.arange(120)).view(np.uint32))
    want = evaluate_ranking(ref, train, test, ("recall@10", "ndcg@20"), progress=False)
    np.testing.assert_array_equal(got.ranked, want.ranked)
    assert json.dumps(got.summary) == json.dumps(want.summary)


def test_hyper_parameters_are_unchanged():
    """Committed records store these; the kernel adds none (module constants instead)."""
    assert ItemKNN().get_params() == {"k": 100, "shrink": 0.0, "block_size": 4096}
    assert UserKNN().get_params() == {"k": 100, "shrink": 0.0, "block_size": 2048}
    assert Hybrid().get_params() == {"beta": 8.0, "cf": "popularity", "content": "clip-mean"}


def test_perf_knn_section(tmp_path):
    from benchmark import perf

    out = tmp_path / "knn.json"
    assert perf.main(["--knn", "--knn-shape", "300x500", "--knn-nnz", "4000", "--inline",
                      "--knn-threads", "2", "--knn-check-rows", "50",
                      "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for kind in perf.KNN_KINDS:
        assert report[kind]["wall_s"] > 0 and report[kind]["peak_rss_mb"] > 0, report[kind]
    assert report["knn-gembench-itemknn"]["neighbour_pairs"] > 0
    assert {"wall", "cpu", "target_met"} <= set(report["knn-gembench-itemknn_over_implicit"])
    assert report["check"]["itemknn"]["identical"] and report["check"]["userknn"]["identical"]
    assert "| gembench itemknn |" in report["table"]
