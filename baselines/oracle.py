"""``oracle``: ranks by the synthetic world's true utility — the ceiling of a data set.

Only defined where the truth is known (synthetic data). The utility of item i
for user u is ``beta * <taste_u, style_i> + log_popularity_i``, the quantity the
generator drew interactions from (see benchmark.data.synthetic); it is not a
perfect predictor, because interactions are sampled, so its score is the noise
ceiling rather than 1.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import NotApplicable
from benchmark.protocols import InteractionData, RankingMethod, SideInfo


class Oracle(RankingMethod):
    name = "oracle"

    def fit(self, train: InteractionData, side: SideInfo) -> Oracle:
        dataset = side.dataset
        if dataset is None or not dataset.has_truth:
            raise NotApplicable("oracle needs a data set with ground truth (synthetic data)")
        arrays, params = dataset.truth()
        users = dataset.ids("users").get_indexer(train.user_ids)
        items = dataset.ids(side.item_kind).get_indexer(train.item_ids)
        if (users < 0).any() or (items < 0).any():
            raise NotApplicable("the split's ids do not match the data set's ground truth")
        beta = np.float32(params["beta"])
        self.taste_ = np.asarray(arrays["user_taste_final"][users], dtype=np.float32) * beta
        self.style_ = np.ascontiguousarray(arrays[f"{side.item_kind}_style"][items],
                                           dtype=np.float32)
        self.log_popularity_ = np.asarray(
            arrays[f"{side.item_kind}_log_popularity"][items], dtype=np.float32
        )
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        scores = self.taste_[user_idx] @ self.style_.T
        scores += self.log_popularity_
        return scores
