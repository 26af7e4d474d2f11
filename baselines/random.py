"""``random``: uniform random scores — the floor every method must beat."""

from __future__ import annotations

import numpy as np

from benchmark.protocols import InteractionData, RankingMethod, SideInfo

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def hashed_uniform(seed: int, rows: np.ndarray, n_cols: int) -> np.ndarray:
    """Uniform [0, 1) float32 for each (row, column), a pure function of (seed, row, column).

    A counter-based generator (splitmix64 finaliser) rather than a stream, so a
    user's scores do not depend on how the engine chunks users.
    """
    counter = rows.astype(np.uint64)[:, None] * np.uint64(n_cols) + np.arange(
        n_cols, dtype=np.uint64
    )
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        z = counter + np.uint64(seed + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


class RandomRanker(RankingMethod):
    """Scores every item uniformly at random (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train: InteractionData, side: SideInfo) -> RandomRanker:
        self.n_items_ = train.n_items
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return hashed_uniform(self.seed, np.asarray(user_idx), self.n_items_)
