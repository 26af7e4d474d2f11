"""``no-edit``: returns the LoRA's own latent; the floor of gain (0) and ceiling of fidelity (1)."""

from __future__ import annotations

import numpy as np

from benchmark.tracks.lora_edit.track import DirectionEditor


class NoEdit(DirectionEditor):
    name = "no-edit"

    def directions(self, user_rows: np.ndarray, lora_rows: np.ndarray) -> np.ndarray:
        return np.zeros((len(lora_rows), self.bank_.latents.shape[1]))
