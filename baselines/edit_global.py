"""``global-direction``: one direction for everybody, toward the LoRAs users in general use.

A shared-covariance linear discriminant of "used" (weighted by how many training users used
it) vs the whole bank, in the PCA latent space where the covariance is diagonal (the explained
variances ``var``)::

    v = unit( (mu_used - mu_bank) / ((1 - g) var + g mean(var)) )

``g`` (shrinkage) = 1 gives the plain difference of means, 0 the full LDA normal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.tracks.lora_edit.track import DirectionEditor, EditBank, unit


def lda_direction(delta: np.ndarray, variance: np.ndarray, shrinkage: float) -> np.ndarray:
    """Unit normals of shared diagonal-covariance discriminants, one per row of ``delta``."""
    cov = (1.0 - shrinkage) * variance + shrinkage * variance.mean()
    return unit(delta / cov)


class GlobalDirection(DirectionEditor):
    name = "global-direction"

    def __init__(self, shrinkage: float = 0.5, seed: int = 0) -> None:
        super().__init__(seed)
        self.shrinkage = shrinkage

    def get_params(self) -> dict[str, Any]:
        return {"shrinkage": self.shrinkage, "seed": self.seed}

    def fit(self, bank: EditBank, train: Any) -> GlobalDirection:
        super().fit(bank, train)
        z = bank.latents.astype(np.float64)
        counts = np.asarray(train.matrix.sum(axis=0)).ravel()
        mu_used = counts @ z / max(counts.sum(), 1.0)
        var = z.var(axis=0)
        self.direction_ = lda_direction((mu_used - z.mean(0))[None], var, self.shrinkage)[0]
        return self

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.direction_, (len(lora_rows), len(self.direction_)))
