"""The factor model that every measurement evaluates, and the figures the report is held to.

``K``, ``DIM``, the metric list and the targets are shared by the CPU, GPU and RecBole
measurements, and :class:`FactorModel` is the one model they all score (also used directly
by the GPU engine's tests), so they sit at the bottom of the package: every other submodule
imports from here and this imports nothing else from ``benchmark.perf``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

K = 50
DIM = 64
METRICS = (
    "recall@10", "recall@20", "recall@50",
    "ndcg@10", "ndcg@20", "ndcg@50",
    "hit@10", "hit@20", "hit@50",
    "mrr@10", "mrr@20", "mrr@50",
)  # fmt: skip
FRACTIONS = (0.125, 0.25, 0.5)
TARGETS = {"floor_ratio_max": 1.5, "recbole_speedup_min": 5.0, "peak_rss_gb_max": 3.0,
           "metrics_speedup_min": 1.0, "load_s_max": 60.0,
           "gpu_floor_ratio_max": 1.5, "gpu_eval_s_max": 2.0}


# ------------------------------------------------------------------------- the factor model


def _rankingmethod():
    from benchmark.protocols import RankingMethod

    return RankingMethod


class FactorModel(_rankingmethod()):  # type: ignore[misc]
    """``score(u, i) = U[u] . V[i]``: a d-dimensional factor model with given factors."""

    name = "factors"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)

    def fit(self, train, side):
        return self

    def score(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(self.user_factors[user_idx], self.item_factors.T, out=out)

    def score_torch(self, user_idx: np.ndarray, device: Any) -> Any:
        """``score`` on a torch device (the GPU engine): the factors are uploaded once."""
        from benchmark.device import factor_scores_torch

        return factor_scores_torch(self, self.user_factors, self.item_factors, user_idx,
                                   device)


def random_factors(n_users: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian factors (d=64): continuous scores, so ties have probability ~0 (tie-free)."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(np.sqrt(DIM)))
    users = rng.standard_normal((n_users, DIM), dtype=np.float32) * scale
    items = rng.standard_normal((n_items, DIM), dtype=np.float32) * scale
    return users, items
