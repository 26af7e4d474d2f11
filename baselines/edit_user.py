"""``user-direction``: the ImageGem / weights2weights edit ``theta + alpha * v_u``.

``v_u`` is the normal of a per-user linear classifier in the PCA latent space separating the
LoRAs the user used in training from the bank: a shared diagonal-covariance discriminant
(latent dimensions are uncorrelated after PCA), all users at once in one sparse product::

    v_u = unit( (mean_{l used by u} z_l - mu_bank) / ((1 - g) var + g mean(var)) )

A user without a training LoRA in the bank falls back to the global direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from baselines.edit_global import GlobalDirection, lda_direction
from benchmark.tracks.lora_edit.track import EditBank, positive_means


class UserDirection(GlobalDirection):
    name = "user-direction"

    def fit(self, bank: EditBank, train: Any) -> UserDirection:
        super().fit(bank, train)
        z = bank.latents.astype(np.float64)
        means = positive_means(train.matrix, z)
        has = np.asarray(train.matrix.sum(axis=1)).ravel() > 0
        dirs = lda_direction(means - z.mean(0), z.var(axis=0), self.shrinkage)
        dirs[~has] = self.direction_
        self.user_directions_ = dirs
        return self

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(self.direction_, (len(user_rows), len(self.direction_))).copy()
        known = user_rows >= 0
        out[known] = self.user_directions_[user_rows[known]]
        return out
