"""``clip-recent``: a recency-weighted profile, for tastes that drift.

The j-th most recent training item of a user (j = 0 for the latest) weighs
w_j = 2^(-j / half_life); the profile is
normalise(sum_j w_j e_j) and score(u, i) = <profile_u, e_i>.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from baselines._content import item_embeddings, normalise_rows, positions_from_end
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class ClipRecent(RankingMethod):
    name = "clip-recent"
    search_space = {"half_life": [1.0, 2.0, 5.0, 10.0, 20.0]}

    def __init__(self, half_life: float = 5.0, encoder: str | None = None):
        self.half_life = half_life
        self.encoder = encoder

    def fit(self, train: InteractionData, side: SideInfo) -> ClipRecent:
        self.item_emb_, self.encoder_ = item_embeddings(train, side, self.encoder)
        users, from_end, _ = positions_from_end(train)
        weights = np.exp2(-from_end / float(self.half_life)).astype(np.float32)
        weighted = sp.csr_matrix((weights, (users, train.frame["item_idx"].to_numpy())),
                                 shape=(train.n_users, train.n_items))
        self.profile_ = normalise_rows(np.asarray(weighted @ self.item_emb_, dtype=np.float32))
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.profile_[user_idx] @ self.item_emb_.T
