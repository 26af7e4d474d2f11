"""``oracle`` for the preference track: the synthetic world's true utility.

``s(u, i) = beta * <user_taste_final[u], image_style[i]> + image_log_popularity[i]``, the
quantity preference labels were drawn from (``label ~ Bernoulli(sigmoid(beta_pref * (s_a -
s_b)))``, benchmark.data.synthetic); its accuracy is the noise ceiling, not 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import NotApplicable
from benchmark.protocols import SideInfo


class PreferenceOracle:
    name = "oracle"

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: pd.DataFrame, side: SideInfo) -> PreferenceOracle:
        dataset = side.dataset
        if dataset is None or not dataset.has_truth:
            raise NotApplicable("oracle needs a data set with ground truth (synthetic data)")
        arrays, params = dataset.truth()
        self.beta_ = float(params["beta"])
        self.users_ = dataset.ids("users")
        self.images_ = dataset.ids("images")
        self.taste_ = arrays["user_taste_final"]
        self.style_ = arrays["image_style"]
        self.log_popularity_ = arrays["image_log_popularity"]
        return self

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        u = self.users_.get_indexer(np.asarray(user_ids, dtype=object).astype(str))
        i = self.images_.get_indexer(np.asarray(image_ids, dtype=object).astype(str))
        if (u < 0).any() or (i < 0).any():
            raise NotApplicable("the pairs' ids do not match the data set's ground truth")
        taste = np.asarray(self.taste_[u], np.float64)
        style = np.asarray(self.style_[i], np.float64)
        util = self.beta_ * np.einsum("ij,ij->i", taste, style) + self.log_popularity_[i]
        return util.astype(np.float32)
