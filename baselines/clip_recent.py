"""``clip-recent``: a recency-weighted profile, for tastes that drift.

The j-th most recent training item of a user (j = 0 for the latest) weighs
w_j = 2^(-j / half_life); the profile is
normalise(sum_j w_j e_j) and score(u, i) = <profile_u, e_i>.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from baselines._content import item_embeddings, normalise_rows, positions_from_end
from baselines._retrieval import OptionalFaiss
from benchmark.protocols import InteractionData, SideInfo


class ClipRecent(OptionalFaiss):
    """``index``: None for dense exact scores, or a faiss index kind (see ``clip-mean``)."""

    name = "clip-recent"
    search_space = {"half_life": [1.0, 2.0, 5.0, 10.0, 20.0]}

    def __init__(self, half_life: float = 5.0, encoder: str | None = None,
                 index: str | None = None, n_candidates: int = 100):
        self.half_life = half_life
        self.encoder = encoder
        self.index = index
        self.n_candidates = n_candidates

    def fit(self, train: InteractionData, side: SideInfo) -> ClipRecent:
        self.item_emb_, self.encoder_ = item_embeddings(train, side, self.encoder)
        users, from_end, _ = positions_from_end(train)
        weights = np.exp2(-from_end / float(self.half_life)).astype(np.float32)
        weighted = sp.csr_matrix((weights, (users, train.frame["item_idx"].to_numpy())),
                                 shape=(train.n_users, train.n_items))
        self.profile_ = normalise_rows(np.asarray(weighted @ self.item_emb_, dtype=np.float32))
        self._maybe_index(train, self.profile_, self.item_emb_)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores(user_idx, self.profile_, self.item_emb_)
