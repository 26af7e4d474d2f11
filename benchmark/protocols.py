"""The small protocol each track's methods follow (scikit-learn style).

Ranking methods: hyper-parameters in ``__init__``, ``fit(train, side)`` returns
``self`` and leaves learned state in attributes ending in ``_``, and
``score(user_idx)`` returns a float32 matrix ``[len(user_idx), n_items]`` for a
chunk of users. The engine masks training items and takes the top-K, so a
method never needs to.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.store import Dataset


@dataclass
class InteractionData:
    """One item kind's interactions, indexed densely.

    ``matrix[u, i] = 1`` when user ``u`` interacted with item ``i``; ``frame``
    has the same rows as ``user_idx, item_idx, timestamp``, sorted by user then
    time (for sequential models). ``user_ids`` / ``item_ids`` map dense indices
    back to the original string ids.
    """

    user_ids: pd.Index
    item_ids: pd.Index
    matrix: sp.csr_matrix
    frame: pd.DataFrame
    item_kind: str

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_frame(
        cls, rows: pd.DataFrame, user_ids: pd.Index, item_ids: pd.Index, item_kind: str,
        source: str = "<split>",
    ) -> InteractionData:
        """Index ``rows`` (string ids) against ``user_ids`` / ``item_ids``."""
        from benchmark.errors import DataError

        u = user_ids.get_indexer(rows["user_id"].astype(str).to_numpy())
        i = item_ids.get_indexer(rows["item_id"].astype(str).to_numpy())
        for codes, col in ((u, "user_id"), (i, "item_id")):
            bad = np.flatnonzero(codes < 0)
            if len(bad):
                raise DataError(
                    f"unknown {col} {rows[col].iloc[bad[0]]!r}", path=source, row=int(bad[0]),
                    rule=f"every {col} is in the catalogue",
                )
        order = np.lexsort((rows["timestamp"].to_numpy(), u))
        frame = pd.DataFrame(
            {"user_idx": u[order], "item_idx": i[order],
             "timestamp": rows["timestamp"].to_numpy()[order]}
        )
        matrix = sp.csr_matrix(
            (np.ones(len(frame), dtype=np.float32), (frame["user_idx"], frame["item_idx"])),
            shape=(len(user_ids), len(item_ids)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return cls(user_ids, item_ids, matrix, frame, item_kind)


@dataclass
class SideInfo:
    """What a method may use beyond the interactions: the data set (content, truth)."""

    dataset: Dataset | None
    item_kind: str
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class RankingMethod:
    """Base class for ranking methods; subclasses set ``name`` and implement two methods."""

    name: ClassVar[str] = "method"

    def fit(self, train: InteractionData, side: SideInfo) -> RankingMethod:
        raise NotImplementedError

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters: the ``__init__`` arguments, read back from attributes."""
        if type(self).__init__ is object.__init__:
            return {}
        sig = inspect.signature(type(self).__init__)
        skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind not in skip
        }

    def set_params(self, **params: Any) -> RankingMethod:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{self.name} has no parameter {key!r}; it has {sorted(valid)}")
            setattr(self, key, value)
        return self
