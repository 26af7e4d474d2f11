"""``hybrid``: a tuned fusion of a collaborative score and a content score.

score(u, i) = log(1 + cf(u, i)) + beta * content(u, i)

with ``cf`` a non-negative CF score (``popularity``: training count of item i;
``itemknn``: summed neighbour similarities) and ``content`` the ``clip-mean`` or
``clip-recent`` cosine. The form mirrors a utility "taste match + log
popularity": the log turns counts into a prior on the same additive scale as
the cosine, and ``beta`` (tuned on the validation part) sets how much taste
counts against popularity. Content also scores items with no training
interaction, so the hybrid keeps working on the cold-start split.
"""

from __future__ import annotations

import numpy as np

from baselines.clip_mean import ClipMean
from baselines.clip_recent import ClipRecent
from baselines.itemknn import ItemKNN
from baselines.popularity import Popularity
from benchmark.protocols import InteractionData, RankingMethod, SideInfo

_CF = {"popularity": Popularity, "itemknn": ItemKNN}
_CONTENT = {"clip-mean": ClipMean, "clip-recent": ClipRecent}


class Hybrid(RankingMethod):
    name = "hybrid"
    # beta up to 256: on cold-start the held-out items have no CF score at all, and only a
    # large beta lets their content match compete with log(1 + count) of the warm items
    search_space = {"beta": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    "cf": ["popularity", "itemknn"],
                    "content": ["clip-mean", "clip-recent"]}

    def __init__(self, beta: float = 8.0, cf: str = "popularity", content: str = "clip-mean"):
        self.beta = beta
        self.cf = cf
        self.content = content

    def fit(self, train: InteractionData, side: SideInfo) -> Hybrid:
        if self.cf not in _CF or self.content not in _CONTENT:
            raise ValueError(f"hybrid: cf is one of {sorted(_CF)}, content one of "
                             f"{sorted(_CONTENT)}")
        self.cf_ = _CF[self.cf]().fit(train, side)
        self.content_ = _CONTENT[self.content]().fit(train, side)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        cf = self.cf_.score(user_idx)
        scores = np.log1p(np.maximum(cf, 0.0, out=cf), out=cf)
        scores += np.float32(self.beta) * self.content_.score(user_idx)
        return scores
