"""``clip-multi``: a multi-interest profile — k-means over each user's history.

Each user's (most recent ``max_history``) training item embeddings are clustered
into up to ``n_interests`` centroids with spherical k-means (Lloyd's iterations,
cosine assignment); score(u, i) = max_c <centroid_{u,c}, e_i>. A user with tastes
in two styles is then close to both, where the mean of the two would be close to
neither. The k-means runs for a chunk of users at once (padded [users, L, d]
arrays), so there is no Python loop over users.
"""

from __future__ import annotations

import numpy as np

from baselines._content import item_embeddings, normalise_rows, positions_from_end
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


def recent_history(train: InteractionData, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """[n_users, L] item indices of each user's latest items (-1 padded) and their counts."""
    users, from_end, sizes = positions_from_end(train)
    keep = from_end < max_history
    counts = np.minimum(sizes, max_history)
    width = max(1, int(counts.max(initial=0)))
    slot = (np.minimum(sizes[users], max_history) - 1 - from_end)[keep]
    history = np.full((train.n_users, width), -1, dtype=np.int64)
    history[users[keep], slot] = train.frame["item_idx"].to_numpy()[keep]
    return history, counts


def batched_spherical_kmeans(x: np.ndarray, valid: np.ndarray, k: np.ndarray, n_iter: int
                             ) -> np.ndarray:
    """Centroids [b, K, d] for b point sets x [b, L, d] (valid [b, L]; k [b] clusters each).

    Initial centroids are the points at evenly spaced history positions (deterministic);
    empty clusters keep their centroid; unused slots (c >= k_b) stay zero.
    """
    b, length, _ = x.shape
    n_clusters = int(k.max(initial=1))
    n_valid = valid.sum(1)
    pos = (np.arange(n_clusters)[None, :] * n_valid[:, None]) // np.maximum(k[:, None], 1)
    centroids = x[np.arange(b)[:, None], np.minimum(pos, length - 1)]
    used = np.arange(n_clusters)[None, :] < k[:, None]
    centroids *= used[..., None]
    for _ in range(n_iter):
        sims = np.einsum("bld,bkd->blk", x, centroids)
        sims[~np.broadcast_to(used[:, None, :], sims.shape)] = -np.inf
        assign = sims.argmax(axis=2)
        onehot = (assign[..., None] == np.arange(n_clusters)) & valid[..., None]
        sums = np.einsum("blk,bld->bkd", onehot.astype(x.dtype), x)
        filled = onehot.any(axis=1)
        centroids = np.where(filled[..., None], normalise_rows(sums), centroids)
    return centroids * used[..., None]


class ClipMulti(RankingMethod):
    name = "clip-multi"
    search_space = {"n_interests": [2, 3, 4, 6], "max_history": [20, 50]}

    def __init__(self, n_interests: int = 3, max_history: int = 50, n_iter: int = 10,
                 encoder: str | None = None, user_chunk: int = 256):
        self.n_interests = n_interests
        self.max_history = max_history
        self.n_iter = n_iter
        self.encoder = encoder
        self.user_chunk = user_chunk

    def fit(self, train: InteractionData, side: SideInfo) -> ClipMulti:
        self.item_emb_, self.encoder_ = item_embeddings(train, side, self.encoder)
        history, counts = recent_history(train, self.max_history)
        k = np.minimum(counts, self.n_interests)
        d = self.item_emb_.shape[1]
        self.interests_ = np.zeros((train.n_users, self.n_interests, d), dtype=np.float32)
        for start in range(0, train.n_users, self.user_chunk):
            rows = slice(start, start + self.user_chunk)
            idx = history[rows]
            valid = idx >= 0
            x = self.item_emb_[np.where(valid, idx, 0)] * valid[..., None]
            centroids = batched_spherical_kmeans(x, valid, k[rows], self.n_iter)
            self.interests_[rows, : centroids.shape[1]] = centroids
        self.n_used_ = k
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        interests = self.interests_[user_idx]
        used = np.arange(self.n_interests)[None, :] < self.n_used_[user_idx][:, None]
        scores = np.zeros((len(user_idx), self.item_emb_.shape[0]), dtype=np.float32)
        best = np.full_like(scores, -np.inf)
        for c in range(self.n_interests):  # a loop over interests, not users
            sim = interests[:, c] @ self.item_emb_.T
            np.maximum(best, np.where(used[:, c : c + 1], sim, -np.inf), out=best)
        np.copyto(scores, best, where=np.isfinite(best))  # users without history score 0
        return scores
