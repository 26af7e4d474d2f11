"""``oracle-direction`` (synthetic only): moves toward the user's true taste.

The true renderer maps a latent to a style; a least-squares linear map ``z -> style`` fitted on
the bank's renders (``S ~ [Z, 1] W``) gives the direction of steepest increase of the true
utility ``beta <taste_u, style>``: ``v_u = unit(W_z taste_u)``. An upper reference for
direction methods at the same step size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.errors import NotApplicable
from benchmark.tracks.lora_edit.track import DirectionEditor, EditBank, unit


class OracleDirection(DirectionEditor):
    name = "oracle-direction"

    def fit(self, bank: EditBank, train: Any) -> OracleDirection:
        if bank.world is None:
            raise NotApplicable("oracle-direction needs the synthetic world's truth")
        super().fit(bank, train)
        world, space = bank.world, bank.space
        x = space.inverse_transform(bank.latents)
        style = world.style_of(world.delta_weights(x, space.layout_))
        design = np.hstack([bank.latents.astype(np.float64), np.ones((len(x), 1))])
        w, *_ = np.linalg.lstsq(design, style, rcond=None)
        self.map_ = w[:-1]  # (k, d_style)
        return self

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        world = self.bank_.world
        users = self.train_.user_ids[user_rows] if (user_rows >= 0).all() else None
        if users is None:
            raise NotApplicable("oracle-direction edits users of the training data only")
        taste = world.user_taste[world.user_ids.get_indexer(users)]
        return unit(taste @ self.map_.T)
