"""The small protocol each track's methods follow (scikit-learn style).

Ranking methods: hyper-parameters in ``__init__``, ``fit(train, side)`` returns
``self`` and leaves learned state in attributes ending in ``_``, and
``score(user_idx)`` returns a float32 matrix ``[len(user_idx), n_items]`` for a
chunk of users. The engine masks training items and takes the top-K, so a
method never needs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.core.params import Params

if TYPE_CHECKING:
    from benchmark.data.store import Dataset
    from benchmark.views import TrainingView


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


class SideInfo:
    """What a method may use beyond its training rows: its track's training view.

    The harness hands every method a :class:`benchmark.views.TrainingView` (``view``):
    static content plus the visible per-user rows, never the data set folder, and the
    synthetic truth only for registered reference rows. ``dataset`` is the same object
    under the name methods used before views (read it like a data set). ``extra`` carries
    run options (``images``: a folder of image files; hand-made arrays in tests).
    """

    def __init__(self, view: TrainingView | Dataset | None = None, item_kind: str = "lora",
                 seed: int = 0, extra: dict[str, Any] | None = None, *,
                 dataset: TrainingView | Dataset | None = None) -> None:
        if view is not None and dataset is not None:
            raise TypeError("give view or dataset (the same thing), not both")
        self.view = view if view is not None else dataset
        self.item_kind = item_kind
        self.seed = seed
        self.extra = dict(extra) if extra else {}

    @property
    def dataset(self) -> TrainingView | Dataset | None:
        return self.view

    def __repr__(self) -> str:
        return (f"SideInfo(view={self.view!r}, item_kind={self.item_kind!r}, seed={self.seed},"
                f" extra={sorted(self.extra)})")


class RankingMethod(Params):
    """Base class for ranking methods; subclasses set ``name`` and implement two methods."""

    name: ClassVar[str] = "method"

    def fit(self, train: InteractionData, side: SideInfo) -> RankingMethod:
        raise NotImplementedError

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError
