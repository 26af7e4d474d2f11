"""``userknn``: user-based nearest neighbours with cosine similarity and shrinkage.

sim(u, v) = |I_u ∩ I_v| / (sqrt(|I_u|) * sqrt(|I_v|) + shrink), I_u the training
items of user u; each user keeps the ``k`` most similar other users N_k(u), and

    score(u, i) = Σ_{v ∈ N_k(u)} sim(u, v) · x_vi

Why: the classic memory-based counterpart of ``itemknn``; it is strong when users
form taste clusters (the synthetic world draws users from clusters). Fitting builds
the sparse top-k neighbour matrix S in blocks of users (bounded memory); scoring
is one sparse product S[users] @ X, no Python loop over users. The exact float32
definition, the tie rule (lower user index) and the kernel are in :mod:`baselines._knn`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from baselines._knn import cosine_neighbours
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class UserKNN(RankingMethod):
    """Cosine user-user kNN; ``k`` neighbours per user, ``shrink`` damps small overlaps."""

    name = "userknn"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "k": [10, 25, 50, 100, 200, 400],
        "shrink": [0.0, 1.0, 5.0, 10.0, 50.0],
    }
    default_budget: ClassVar[int] = 8

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 2048):
        self.k = k
        self.shrink = shrink
        self.block_size = block_size

    def fit(self, train: InteractionData, side: SideInfo) -> UserKNN:
        x = train.matrix.astype(np.float32).tocsr()
        self.neighbours_ = cosine_neighbours(x, self.k, self.shrink, self.block_size)
        self.history_ = x
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.neighbours_[user_idx] @ self.history_).toarray().astype(np.float32)
