"""``clip-mean``: a user is the mean embedding of what they interacted with in training.

score(u, i) = <normalise(sum_{j in H_u} e_j), e_i>, with e the unit-norm item
embeddings (CLIP-like). Needs no interaction data for item i itself, so it
scores unseen (cold-start) items as well as seen ones.
"""

from __future__ import annotations

import numpy as np

from baselines._content import item_embeddings, normalise_rows
from baselines._retrieval import OptionalFaiss
from benchmark.protocols import InteractionData, SideInfo


class ClipMean(OptionalFaiss):
    """``index=None``: dense exact scores; "flat" / "ivf" / "hnsw": through faiss, the top
    ``n_candidates`` (+ history) per user, with the recall cost of an approximation recorded."""

    name = "clip-mean"

    def __init__(self, encoder: str | None = None, index: str | None = None,
                 n_candidates: int = 100):
        self.encoder = encoder
        self.index = index
        self.n_candidates = n_candidates

    def fit(self, train: InteractionData, side: SideInfo) -> ClipMean:
        self.item_emb_, self.encoder_ = item_embeddings(train, side, self.encoder)
        self.profile_ = normalise_rows(np.asarray(train.matrix @ self.item_emb_,
                                                  dtype=np.float32))
        self._maybe_index(train, self.profile_, self.item_emb_)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores(user_idx, self.profile_, self.item_emb_)
