"""``global-reward``: one linear reward head on image embeddings for every user.

Utility ``s(u, i) = <w, e_i>``; ``w`` minimises the Bradley–Terry (logistic) loss on the
embedding differences ``x = e_a - e_b``, L2 regularised:

    L(w) = sum_pairs [ -l log sigmoid(<w, x>) - (1 - l) log sigmoid(-<w, x>) ] + lam/2 ||w||^2

(l = label, 0.5 for a tie), convex, solved by L-BFGS (scipy) from w = 0: deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from benchmark.protocols import SideInfo
from benchmark.tracks.preference.track import DEFAULT_ENCODER, image_embeddings, lookup


def pair_differences(train: pd.DataFrame, ids: pd.Index, emb: np.ndarray) -> np.ndarray:
    """``e_a - e_b`` per training pair, float64 (n_pairs, d)."""
    a = lookup(ids, train["image_a"].astype(str).to_numpy(dtype=object))
    b = lookup(ids, train["image_b"].astype(str).to_numpy(dtype=object))
    return np.asarray(emb[a], np.float64) - np.asarray(emb[b], np.float64)


def bt_loss(z: np.ndarray, label: np.ndarray) -> tuple[float, np.ndarray]:
    """Bradley–Terry loss sum and its derivative in z: ``sigmoid(z) - l``."""
    loss = -(label * log_expit(z) + (1.0 - label) * log_expit(-z)).sum()
    return float(loss), expit(z) - label


class GlobalReward:
    name = "global-reward"

    def __init__(self, l2: float = 1.0, encoder: str = DEFAULT_ENCODER, max_iter: int = 500,
                 seed: int = 0) -> None:
        self.l2 = l2
        self.encoder = encoder
        self.max_iter = max_iter
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"l2": self.l2, "encoder": self.encoder, "max_iter": self.max_iter,
                "seed": self.seed}

    def fit(self, train: pd.DataFrame, side: SideInfo) -> GlobalReward:
        self.ids_, self.emb_ = image_embeddings(side, self.encoder)
        d = self.emb_.shape[1]
        if len(train) == 0:
            self.w_ = np.zeros(d, np.float32)
            return self
        x = pair_differences(train, self.ids_, self.emb_)
        label = train["label"].to_numpy(np.float64)

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            loss, r = bt_loss(x @ w, label)
            return loss + 0.5 * self.l2 * w @ w, x.T @ r + self.l2 * w

        res = minimize(objective, np.zeros(d), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        self.w_ = res.x.astype(np.float32)
        return self

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        rows = lookup(self.ids_, image_ids)
        return self.score_embeddings(user_ids, self.emb_[rows])

    def score_embeddings(self, user_ids: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """``<w, e>`` of any embeddings (renders of an edited LoRA, say)."""
        return (np.asarray(embeddings, np.float32) @ self.w_).astype(np.float32)
