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


def cosine_neighbours(rows: sp.csr_matrix, k: int, shrink: float, block_size: int
                      ) -> sp.csr_matrix:
    """Each row's ``k`` most cosine-similar other rows of a binary matrix, as a sparse matrix.

    sim(a, b) = |R_a ∩ R_b| / (sqrt(|R_a|) * sqrt(|R_b|) + shrink); computed for a block of
    rows at a time, so memory stays bounded. itemknn passes items x users, userknn users x
    items.
    """
    rows = rows.astype(np.float32).tocsr()
    n = rows.shape[0]
    norms = np.sqrt(np.asarray(rows.getnnz(axis=1), dtype=np.float32))
    columns = rows.T.tocsc()
    blocks = []
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        co = (rows[start:stop] @ columns).tocoo()  # [block, n] overlap counts
        source = co.row + start
        keep = co.col != source  # a row is not its own neighbour
        sim = co.data[keep] / (norms[source[keep]] * norms[co.col[keep]] + shrink)
        block = sp.csr_matrix(
            (sim.astype(np.float32), (co.row[keep], co.col[keep])), shape=(stop - start, n)
        )
        blocks.append(top_k_per_row(block, int(k)))
    return sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


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
