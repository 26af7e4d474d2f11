"""``judge-gradient``: projected gradient ascent on a fitted preference model, in a trust region.

Preference model (observable data only): the user's content profile
``p_u = mean_{l used by u} e_l - mean_bank e`` scores a render ``e`` by ``<p_u, e / ||e||>``.
The renderer is a black box, so a ridge map ``e(z) ~ z W + c`` fitted on the bank's latents and
content embeddings stands in for it. From ``z_0``, ``n_iter`` steps of length ``r / n_iter`` move
along the normalised gradient ``W (p - <p, e_hat> e_hat) / ||e||`` and are projected back onto
the ball ``||z - z_0|| <= r`` (the trust region), ``r = step * scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmark.errors import NotApplicable
from benchmark.tracks.lora_edit.track import DirectionEditor, EditBank, positive_means, unit


class JudgeGradient(DirectionEditor):
    name = "judge-gradient"

    def __init__(self, n_iter: int = 10, l2: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_iter = n_iter
        self.l2 = l2

    def get_params(self) -> dict[str, Any]:
        return {"n_iter": self.n_iter, "l2": self.l2, "seed": self.seed}

    def fit(self, bank: EditBank, train: Any) -> JudgeGradient:
        if bank.embeddings is None:
            raise NotApplicable("judge-gradient needs content embeddings of the bank LoRAs")
        super().fit(bank, train)
        z = bank.latents.astype(np.float64)
        e = np.asarray(bank.embeddings, np.float64)
        zc, ec = z - z.mean(0), e - e.mean(0)
        self.W_ = np.linalg.solve(zc.T @ zc + self.l2 * np.eye(z.shape[1]), zc.T @ ec)
        self.c_ = e.mean(0) - z.mean(0) @ self.W_
        self.profiles_ = positive_means(train.matrix, e) - e.mean(0)
        return self

    def edit(self, user_id: str | Sequence[str], lora_id: str | Sequence[str],
             step: float) -> np.ndarray:
        single = np.ndim(user_id) == 0
        rows = self._user_rows(np.atleast_1d(np.asarray(user_id, dtype=object)))
        z0 = self.bank_.latents[self.bank_.rows(lora_id)].astype(np.float64)
        p = np.where((rows >= 0)[:, None], self.profiles_[np.maximum(rows, 0)], 0.0)
        radius = step * self.bank_.scale
        z = z0.copy()
        for _ in range(self.n_iter if radius > 0 else 0):
            e = z @ self.W_ + self.c_
            norm = np.linalg.norm(e, axis=1, keepdims=True)
            e_hat = e / norm
            grad = ((p - (p * e_hat).sum(1, keepdims=True) * e_hat) / norm) @ self.W_.T
            z = z + (radius / self.n_iter) * unit(grad)
            d = z - z0
            dn = np.linalg.norm(d, axis=1, keepdims=True)
            z = z0 + d * np.minimum(1.0, radius / np.maximum(dn, 1e-12))
        return z[0] if single else z
