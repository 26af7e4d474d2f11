"""``ease``: Embarrassingly Shallow Autoencoder (Steck, WWW 2019), closed form.

    G = XᵀX + λI,   P = G⁻¹,   B = I − P · diagMat(1 / diag(P))   (so diag(B) = 0)
    score(u, ·) = x_u B

Why: a linear item-item model that is often the strongest simple baseline for
implicit feedback; its single hyper-parameter λ is cheap to tune.

Cost is O(m³) time and O(m²) memory in the number m of modelled items, so:

- only items with at least one training interaction are modelled (a column of X
  that is all zero gives a row and column of B that are zero: score 0 for every
  user, so nothing is lost by leaving it out); those items get score ``-inf``,
  i.e. they are never recommended — exactly where full EASE would rank them
  below every item with a positive score;
- when more than ``max_items`` items remain, ``on_limit="truncate"`` (default)
  models the ``max_items`` most popular ones (ties: lower index) and scores the
  rest ``-inf``; ``on_limit="error"`` raises :class:`NotApplicable` instead.
  On synthetic-small, lora-rec models all ~6.4K used LoRAs; image-rec has ~28K
  liked images of 60K, and the default keeps the 10,000 most liked (about 75% of
  the training likes) so the inversion takes seconds to a minute on two cores.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from benchmark.errors import NotApplicable
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """B = I − P·diagMat(1/diag(P)), P = (G + λI)⁻¹; diagonal of B is zero (float32 in/out).

    The inverse uses a Cholesky factorisation (G + λI is symmetric positive definite).
    """
    g = np.array(gram, dtype=np.float64 if gram.shape[0] <= 2048 else np.float32, order="F")
    g[np.diag_indices_from(g)] += reg
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (g,))
    c, info = potrf(g, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"XᵀX + λI is not positive definite (info={info})")
    p, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (info={info})")
    p = np.triu(p)
    p = p + np.triu(p, 1).T  # potri fills the upper triangle only
    b = p / (-np.diag(p))[None, :]  # column j divided by −P_jj
    np.fill_diagonal(b, 0.0)
    return np.ascontiguousarray(b, dtype=np.float32)


class EASE(RankingMethod):
    """Closed-form item-item autoencoder with L2 weight ``reg`` (λ)."""

    name = "ease"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "reg": [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0],
    }
    default_budget: ClassVar[int] = 5

    def __init__(self, reg: float = 250.0, max_items: int = 10_000, on_limit: str = "truncate"):
        self.reg = reg
        self.max_items = max_items
        self.on_limit = on_limit

    def fit(self, train: InteractionData, side: SideInfo) -> EASE:
        if self.on_limit not in ("truncate", "error"):
            raise ValueError(f"on_limit must be 'truncate' or 'error', not {self.on_limit!r}")
        x = train.matrix.astype(np.float32).tocsc()
        counts = np.asarray(x.getnnz(axis=0))
        used = np.flatnonzero(counts > 0)
        if len(used) > self.max_items:
            if self.on_limit == "error":
                raise NotApplicable(
                    f"ease: {len(used)} items with training interactions exceed max_items="
                    f"{self.max_items} (O(m³) inversion); raise max_items or use "
                    "on_limit='truncate'"
                )
            order = np.lexsort((used, -counts[used]))  # most popular first, ties: lower index
            used = np.sort(used[order[: self.max_items]])
        xs = x[:, used]
        gram = (xs.T @ xs).toarray()
        self.items_ = used
        self.weights_ = ease_weights(gram, float(self.reg))
        self.history_ = xs.tocsr()
        self.n_items_ = train.n_items
        return self

    def score(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((len(user_idx), self.n_items_), dtype=np.float32)
        out.fill(-np.inf)
        out[:, self.items_] = self.history_[user_idx] @ self.weights_
        return out
