"""``popularity``: rank items by how many training users interacted with them."""

from __future__ import annotations

import numpy as np

from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class Popularity(RankingMethod):
    """Same list for everybody: items by training interaction count (ties: lower index)."""

    name = "popularity"

    def fit(self, train: InteractionData, side: SideInfo) -> Popularity:
        counts = np.asarray(train.matrix.getnnz(axis=0), dtype=np.float32)
        self.item_counts_ = counts
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.tile(self.item_counts_, (len(user_idx), 1))
