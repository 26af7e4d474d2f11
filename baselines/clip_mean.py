"""``clip-mean``: a user is the mean embedding of what they interacted with in training.

score(u, i) = <normalise(sum_{j in H_u} e_j), e_i>, with e the unit-norm item
embeddings (CLIP-like). Needs no interaction data for item i itself, so it
scores unseen (cold-start) items as well as seen ones.
"""

from __future__ import annotations

import numpy as np

from baselines._content import item_embeddings, normalise_rows
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class ClipMean(RankingMethod):
    name = "clip-mean"

    def __init__(self, encoder: str | None = None):
        self.encoder = encoder

    def fit(self, train: InteractionData, side: SideInfo) -> ClipMean:
        self.item_emb_, self.encoder_ = item_embeddings(train, side, self.encoder)
        self.profile_ = normalise_rows(np.asarray(train.matrix @ self.item_emb_,
                                                  dtype=np.float32))
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.profile_[user_idx] @ self.item_emb_.T
