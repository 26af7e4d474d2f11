"""``itemknn``: item-based nearest neighbours with cosine similarity and shrinkage.

sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink), U_i the training
users of item i; each item keeps its ``k`` most similar items, and a user's
score for item j is the sum of sim(i, j) over the items i in their history.

The float32 arithmetic, the tie rule (lower item index) and the kernel (blocked, threaded,
memory bounded, bit-identical to the reference path) are in :mod:`baselines._knn`;
``block_size`` caps the rows per block and changes no number.
"""

from __future__ import annotations

import numpy as np

from baselines._knn import cosine_neighbours, cosine_neighbours_reference, top_k_per_row
from benchmark.protocols import InteractionData, RankingMethod, SideInfo

__all__ = ["ItemKNN", "cosine_neighbours", "cosine_neighbours_reference", "top_k_per_row"]


class ItemKNN(RankingMethod):
    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 4096):
        self.k = k
        self.shrink = shrink
        self.block_size = block_size

    def fit(self, train: InteractionData, side: SideInfo) -> ItemKNN:
        # row j: the neighbours i of target item j
        neighbours = cosine_neighbours(train.matrix.T, self.k, self.shrink, self.block_size)
        self.similarity_ = neighbours.T.tocsr()  # row i: the targets j that i votes for
        self.history_ = train.matrix.astype(np.float32).tocsr()
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.history_[user_idx] @ self.similarity_).toarray().astype(np.float32)
