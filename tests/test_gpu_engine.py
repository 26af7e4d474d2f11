"""The torch (GPU) path of the full-ranking engine: the same top-K lists as the numpy path.

Without a GPU the torch code runs on the CPU (``device="cpu-torch"``); the CUDA tests are
skipped with a reason. Factor models use quantised factors (multiples of 1/8): every
product and sum is exact in float32, so numpy and torch compute bit-identical scores and
any difference in the lists would be the engine's, including inside planted ties.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from benchmark import perf
from benchmark.device import factor_scores_torch, resolve_device
from benchmark.errors import GembenchError
from benchmark.evaluate import device_chunk_size, evaluate_ranking
from benchmark.protocols import RankingMethod
from benchmark.ranking import _order_key, topk, topk_torch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")
METRICS = ("recall@10", "ndcg@10", "mrr@20", "hit@5")


def quantised_factors(n_users: int, n_items: int, dim: int = 8, seed: int = 0):
    """Factors in {-1, -7/8, ..., 1}; item 0 = all ones, copied to 40 other items (planted
    ties at the top of every user whose factors sum high)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(-8, 9, (n_users, dim)).astype(np.float32) / 8
    items = rng.integers(-8, 9, (n_items, dim)).astype(np.float32) / 8
    items[0] = 1.0
    items[n_items // 2 : n_items // 2 + 40] = items[0]
    return users, items


def masks(n_users: int, n_items: int, seed: int = 1):
    exclude = sp.random(n_users, n_items, density=0.05, random_state=seed, format="csr")
    exclude.data[:] = 1
    relevant = sp.random(n_users, n_items, density=0.02, random_state=seed + 1, format="csr")
    relevant.data[:] = 1
    relevant = relevant - relevant.multiply(exclude)
    relevant.eliminate_zeros()
    return exclude, relevant.tocsr()


class Fixed(RankingMethod):
    """Numpy scores only (no score_torch): the engine copies them to the device per chunk."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = scores

    def fit(self, train, side):
        return self

    def score(self, user_idx):
        return self.scores[user_idx]


# --------------------------------------------------------------------------- topk_torch


def test_order_key_by_hand():
    values = torch.tensor([1.0, -0.0, 0.0, -1.0, -np.inf, np.inf, 1.0, -2.5])
    index = torch.arange(8)
    order = torch.sort(_order_key(values, index), descending=True).indices
    # +inf; 1.0 at 0 and 6 (lower index first); -0.0 == +0.0 (1 before 2); -1; -2.5; -inf
    assert order.tolist() == [5, 0, 6, 1, 2, 3, 7, 4]


def test_topk_torch_hand_case():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0],
                           [-np.inf, 5.0, -np.inf, -np.inf, -np.inf],
                           [0.0, -0.0, 0.0, -0.0, 0.0]])
    idx, val = topk_torch(scores, 2, margin=0)  # margin 0: every tied row is repaired
    assert idx.tolist() == [[1, 2], [1, -1], [0, 1]]
    assert val[:, 0].tolist() == [3.0, 5.0, 0.0] and val[1, 1] == -np.inf
    idx, _ = topk_torch(scores, 7)  # k > N: all finite entries, then padding
    assert idx[0].tolist() == [1, 2, 4, 3, 0, -1, -1]
    assert idx[1].tolist() == [1, -1, -1, -1, -1, -1, -1]


@pytest.mark.parametrize("margin,block_bytes", [(0, 1), (3, 1), (16, 2**28)])
@pytest.mark.parametrize("levels,p_mask", [(3, 0.0), (5, 0.3), (10_000, 0.1), (2, 0.97)])
@pytest.mark.parametrize("k", [1, 7, 50, 300])
def test_topk_torch_equals_numpy_topk(margin, block_bytes, levels, p_mask, k):
    rng = np.random.default_rng(levels + k)
    scores = rng.integers(0, levels, (23, 257)).astype(np.float32) - levels // 2
    scores[rng.random(scores.shape) < p_mask] = -np.inf
    scores[3] = -np.inf  # nothing left: all padding
    scores[4, 5] = np.inf
    scores[6] = np.where(scores[6] == 0, -0.0, scores[6])  # -0.0 ties with +0.0
    ref_idx, ref_val = topk(scores, k)
    idx, val = topk_torch(torch.from_numpy(scores.copy()), k, margin=margin,
                          block_bytes=block_bytes)
    assert idx.dtype == torch.int64 and val.dtype == torch.float32
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(val.numpy(), ref_val)


def test_topk_torch_errors():
    scores = torch.zeros((3, 40))
    scores[2, 17] = np.nan
    with pytest.raises(ValueError, match=r"NaN \(first at row 2, column 17\)"):
        topk_torch(scores, 5)
    with pytest.raises(TypeError, match="floating"):
        topk_torch(torch.zeros((2, 3), dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        topk_torch(np.zeros((2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="positive int"):
        topk_torch(torch.zeros((2, 3)), 0)
    idx, val = topk_torch(torch.zeros((0, 5)), 3)
    assert idx.shape == val.shape == (0, 3)


# ------------------------------------------------------------------------ the engine


def test_device_chunk_size_by_hand():
    # half of 1 MB holds float32 scores: 2**20 // (1000 items * 4 bytes * 2) = 131 users
    assert device_chunk_size(1000, 1.0) == 131
    assert device_chunk_size(10**6, 1e-3) == 1
    assert device_chunk_size(10, 1e6) == 65536


@pytest.mark.parametrize("budget_mb", [512.0, 0.05])  # one chunk; many chunks of 6 users
def test_torch_engine_equals_numpy_engine_factors(budget_mb):
    users_f, items_f = quantised_factors(120, 1000)
    exclude, relevant = masks(120, 1000)
    model = perf.FactorModel(users_f, items_f)
    cpu = evaluate_ranking(model, exclude, relevant, METRICS, memory_budget_mb=budget_mb,
                           progress=False)
    tor = evaluate_ranking(model, exclude, relevant, METRICS, memory_budget_mb=budget_mb,
                           progress=False, device="cpu-torch")
    assert cpu.device == "cpu" and tor.device == "cpu-torch"
    # the planted copies of item 0 tie in every row: the lists hold such ties
    tied_item = set(range(500, 540)) | {0}
    assert sum(len(tied_item & set(row.tolist())) > 1 for row in cpu.ranked) > 10
    np.testing.assert_array_equal(tor.ranked, cpu.ranked)
    assert tor.summary == cpu.summary and tor.extra == cpu.extra
    for name in METRICS:
        np.testing.assert_array_equal(tor.per_user[name], cpu.per_user[name])


def test_torch_engine_equals_numpy_engine_numpy_scores():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, (57, 300)).astype(np.float64)  # heavy ties, float64 input
    exclude, relevant = masks(57, 300, seed=3)
    cpu = evaluate_ranking(Fixed(scores), exclude, relevant, METRICS, progress=False)
    tor = evaluate_ranking(Fixed(scores), exclude, relevant, METRICS, progress=False,
                           memory_budget_mb=0.01, device="cpu-torch")
    np.testing.assert_array_equal(tor.ranked, cpu.ranked)
    assert tor.summary == cpu.summary
    assert np.array_equal(tor.user_idx, cpu.user_idx)
    assert tor.n_users_skipped == cpu.n_users_skipped


@pytest.mark.parametrize("col", [7, 9])  # a masked entry, an unmasked one
def test_torch_engine_nan_and_shape_errors(col):
    users_f, items_f = quantised_factors(5, 400)

    class Bad(perf.FactorModel):
        def score_torch(self, user_idx, device):
            s = super().score_torch(user_idx, device)
            s[1, col] = np.nan
            return s

    exclude = sp.csr_matrix((np.ones(2), ([1, 3], [7, 7])), shape=(5, 400))
    relevant = sp.csr_matrix((np.ones(5), (np.arange(5), np.arange(5))), shape=(5, 400))
    with pytest.raises(GembenchError, match=f"user index 1, item index {col}"):
        evaluate_ranking(Bad(users_f, items_f), exclude, relevant, ("hit@10",),
                         progress=False, device="cpu-torch")

    class Wide(perf.FactorModel):
        def score_torch(self, user_idx, device):
            return torch.zeros((len(user_idx), 401))

    with pytest.raises(GembenchError, match=r"shape \(5, 401\), expected \(5, 400\)"):
        evaluate_ranking(Wide(users_f, items_f), exclude, relevant, ("hit@10",),
                         progress=False, device="cpu-torch")


def test_resolve_device():
    assert resolve_device("cpu") == resolve_device(None) == "cpu"
    assert resolve_device("cpu-torch") == "cpu-torch"
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    with pytest.raises(GembenchError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(GembenchError, match="no CUDA device"):
            resolve_device("cuda")


def test_factor_cache_follows_refit():
    owner = type("Owner", (), {})()
    u, v = quantised_factors(4, 30)
    first = factor_scores_torch(owner, u, v, np.array([2, 0]), "cpu")
    np.testing.assert_array_equal(first.numpy(), u[[2, 0]] @ v.T)
    u2 = u * 2  # a refit leaves new arrays: the cache must not serve the old factors
    second = factor_scores_torch(owner, u2, v, np.array([2, 0]), "cpu")
    np.testing.assert_array_equal(second.numpy(), 2 * first.numpy())


def test_als_score_torch_matches_score(toy):
    from baselines.als import ALS
    from benchmark.protocols import SideInfo
    from benchmark.runner import track_data
    from benchmark.splits import SplitConfig, make_split

    fit, _ = track_data(make_split(toy, SplitConfig()), "lora", "test")
    model = ALS(factors=4, iterations=2, num_threads=1).fit(fit, SideInfo(toy, "lora"))
    users = np.array([0, 2])
    np.testing.assert_allclose(model.score_torch(users, torch.device("cpu")).numpy(),
                               model.score(users), rtol=1e-6, atol=1e-7)


def test_run_benchmark_device_threaded(toy, tmp_path):
    from benchmark.runner import run_benchmark

    out = {}
    for device in ("cpu", "cpu-torch"):
        result = run_benchmark(dataset=toy.path, tracks=["lora-rec"],
                               methods=["popularity", "random"], data_dir=tmp_path / "data",
                               results_dir=tmp_path / device, leaderboard_dir=None,
                               progress=False, echo=lambda line: None, device=device)
        out[device] = [json.loads(p.read_text()) for p in result["records"]]
    assert len(out["cpu"]) == len(out["cpu-torch"]) == 2
    for a, b in zip(out["cpu"], out["cpu-torch"], strict=True):
        assert a["split"]["device"] == "cpu" and b["split"]["device"] == "cpu-torch"
        assert a["metrics"] == b["metrics"] and a["per_user"] == b["per_user"]


# ----------------------------------------------------------------------------- perf


def test_perf_gpu_section_without_cuda_says_so(tmp_path):
    args = argparse.Namespace(gpu_device="cuda", gpu_memory_budget_mb=64.0)
    lines: list[str] = []
    if CUDA:
        pytest.skip("a CUDA device is present: the section is measured, not skipped")
    assert perf.run_gpu(tmp_path, args, echo=lines.append) == {"measured": False,
                                                               "reason": "no CUDA device"}
    assert lines == ["GPU: not measured (no CUDA device)"]
    assert perf.format_gpu({"gpu": {"measured": False, "reason": "no CUDA device"}}) == \
        ["", "GPU: not measured (no CUDA device)"]


def test_perf_gpu_section_runs_on_cpu_torch(tmp_path):
    out = tmp_path / "gpu.json"
    assert perf.main(["--scale", "tiny", "--cache", str(tmp_path / "cache"), "--gpu",
                      "--gpu-device", "cpu-torch", "--inline", "--json", str(out)]) == 0
    gpu = json.loads(out.read_text())["gpu"]
    assert gpu["measured"] and gpu["device"] == "cpu-torch"
    assert gpu["gpu-floor-torch"]["wall_s"] > 0 and gpu["gpu-gembench"]["wall_s"] > 0
    assert "faiss" in gpu["gpu-floor-faiss"]["skipped"]
    assert gpu["floor_method"] == "gpu-floor-torch"
    assert gpu["gembench_over_floor"] == pytest.approx(
        gpu["gpu-gembench"]["wall_s"] / gpu["gpu-floor-torch"]["wall_s"])
    assert set(perf.METRICS) <= set(gpu["gpu-gembench"]["summary"])


# ----------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_topk_equals_numpy_topk():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, (64, 5000)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    for k in (1, 50, 200):
        idx, val = topk_torch(torch.from_numpy(scores).cuda(), k, margin=4)
        ref_idx, ref_val = topk(scores, k)
        np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx)
        np.testing.assert_array_equal(val.cpu().numpy(), ref_val)


@needs_cuda
def test_cuda_engine_equals_cpu_engine():
    users_f, items_f = quantised_factors(300, 3000)
    exclude, relevant = masks(300, 3000)
    model = perf.FactorModel(users_f, items_f)
    cpu = evaluate_ranking(model, exclude, relevant, METRICS, progress=False)
    for method in (model, Fixed(users_f @ items_f.T)):
        gpu = evaluate_ranking(method, exclude, relevant, METRICS, progress=False,
                               memory_budget_mb=1.0, device="cuda")
        assert gpu.device == "cuda"
        np.testing.assert_array_equal(gpu.ranked, cpu.ranked)
        assert gpu.summary == cpu.summary
