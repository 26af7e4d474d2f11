"""``random-direction``: a seeded random unit direction per edit, at the same step size.

The control for "any move of this size": a method that does not beat it has learned nothing
about the user. Directions depend on (seed, position of the edit in the batch), not on the step,
so every step of the curve moves along the same line.
"""

from __future__ import annotations

import numpy as np

from benchmark.tracks.lora_edit.track import DirectionEditor, unit


class RandomDirection(DirectionEditor):
    name = "random-direction"

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 17])
        return unit(rng.standard_normal((len(lora_rows), self.bank_.latents.shape[1])))
