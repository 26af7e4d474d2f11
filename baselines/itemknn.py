"""``itemknn``: item-based nearest neighbours with cosine similarity and shrinkage.

sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink), U_i the training
users of item i; each item keeps its ``k`` most similar items, and a user's
score for item j is the sum of sim(i, j) over the items i in their history.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from benchmark.protocols import InteractionData, RankingMethod, SideInfo


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's ``k`` largest entries (ties: lower column first); vectorised."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
    keep = order[rank < k]
    kept = sp.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape
    )
    kept.sort_indices()
    return kept


class ItemKNN(RankingMethod):
    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 4096):
        self.k = k
        self.shrink = shrink
        self.block_size = block_size

    def fit(self, train: InteractionData, side: SideInfo) -> ItemKNN:
        x = train.matrix.astype(np.float32).tocsc()
        norms = np.sqrt(np.asarray(x.getnnz(axis=0), dtype=np.float32))
        xt = x.T.tocsr()
        blocks = []
        # similarity rows for a block of target items at a time: memory stays bounded
        for start in range(0, train.n_items, self.block_size):
            stop = min(start + self.block_size, train.n_items)
            co = (xt[start:stop] @ x).tocoo()  # [block, items] co-occurrence counts
            target = co.row + start
            keep = co.col != target
            sim = co.data[keep] / (norms[target[keep]] * norms[co.col[keep]] + self.shrink)
            block = sp.csr_matrix(
                (sim.astype(np.float32), (co.row[keep], co.col[keep])),
                shape=(stop - start, train.n_items),
            )
            blocks.append(top_k_per_row(block, self.k))
        neighbours = sp.vstack(blocks).tocsr()  # row j: the neighbours i of target item j
        self.similarity_ = neighbours.T.tocsr()  # row i: the targets j that i votes for
        self.history_ = train.matrix.astype(np.float32).tocsr()
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.history_[user_idx] @ self.similarity_).toarray().astype(np.float32)
