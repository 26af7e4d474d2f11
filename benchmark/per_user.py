"""What the per-user judgement tracks share: the split shape, the method protocol, the skeleton.

Why: the pair track (``preference``) and the rating track (``rating``) judge a user's taste
on the same footing -- per-user train / valid / test parts with a seeded share of held-out
users, a method that fits on the training judgements and scores (user, image) utilities,
one BLAS thread while it fits and scores, the same training view. Each track imports this
module; neither imports the other.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from benchmark.core.io import atomic_write_text
from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.protocols import SideInfo
from benchmark.views import preference_view, side_for

#: the parts of every per-user split, in order
PARTS = ("train", "valid", "test")
#: the columns of a preferences table (label 1 = a preferred, 0 = b, 0.5 = tie)
PAIR_COLUMNS = ["user_id", "image_a", "image_b", "label"]


class PreferenceMethod(Protocol):
    def fit(self, train: pd.DataFrame, side: SideInfo) -> Any: ...

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray: ...


@dataclass
class PerUserSplit:
    """Per-user train / valid / test judgements, plus held-out ("unseen") users.

    The parts carry ``columns`` plus ``order`` (rank in the user's seeded permutation) and
    ``unseen``; pairs (``PreferenceSplit``) and ratings (``RatingSplit``) share it.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: the judgement columns :meth:`few_shot` returns
    columns: ClassVar[list[str]] = PAIR_COLUMNS

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def unseen_users(self) -> np.ndarray:
        t = self.test
        return np.sort(t.loc[t["unseen"], "user_id"].unique().astype(str))

    def few_shot(self, k: int | str | None = "all", who: str = "unseen") -> pd.DataFrame:
        """Training rows where each ``who`` user ("unseen" or "all") keeps only k judgements.

        The k kept are the user's first k in its seeded permutation (column ``order``), so the
        sets are nested across k. ``k = "all"`` (or None) keeps every training judgement; for
        unseen users "all" means their whole training part. Returns :attr:`columns`.
        """
        if who not in ("unseen", "all"):
            raise ValueError(f"who must be 'unseen' or 'all', got {who!r}")
        train = self.train
        if k is None or k == "all":
            keep = np.ones(len(train), bool)
        else:
            k = int(k)
            if k < 0:
                raise ValueError(f"k must be >= 0 or 'all', got {k}")
            capped = train["unseen"].to_numpy() if who == "unseen" else np.ones(len(train), bool)
            keep = ~capped | (train["order"].to_numpy() < k)
        return train.loc[keep, self.columns].reset_index(drop=True)

    def save(self, out: str | os.PathLike) -> Path:
        """``train/valid/test.parquet`` + ``split.json`` (with the fingerprint)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in PARTS:
            getattr(self, name).to_parquet(out / f"{name}.parquet", index=False)
        atomic_write_text(out / "split.json", json.dumps(self.meta, indent=2, sort_keys=True)
                          + "\n")
        self.path = out
        return out


def per_user_parts(frame: pd.DataFrame, sort_columns: list[str], min_count: int,
                   valid_ratio: float, test_ratio: float, unseen_ratio: float, seed: int
                   ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, int]:
    """The seeded per-user assignment shared by pair and rating splits.

    Rows are put in a canonical order (``sort_columns``), users with fewer than
    ``min_count`` rows dropped, a seeded ``unseen_ratio`` share of users held out, and each
    user's rows permuted (seeded); with n rows the last ``max(1, round(test_ratio n))`` are
    test, the ``max(1, round(valid_ratio n))`` before them valid, the rest train. Returns
    (rows with ``order`` and ``unseen``, part name per row, kept users, number held out).
    """
    rng = np.random.default_rng(seed)
    frame = frame.sort_values(sort_columns, kind="stable").reset_index(drop=True)
    sizes = frame.groupby("user_id", sort=True).size()
    users = sizes.index[sizes >= min_count].to_numpy(dtype=object)
    frame = frame[frame["user_id"].isin(set(users))].reset_index(drop=True)
    n_unseen = int(round(unseen_ratio * len(users)))
    unseen = set(rng.choice(users, size=n_unseen, replace=False)) if n_unseen else set()
    # seeded per-user permutation: sort by (user, random key)
    frame["_key"] = rng.random(len(frame))
    frame = frame.sort_values(["user_id", "_key"], kind="stable").reset_index(drop=True)
    order = frame.groupby("user_id", sort=False).cumcount().to_numpy()
    n = frame.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    n_test = np.maximum(1, np.round(test_ratio * n)).astype(int)
    n_valid = np.maximum(1, np.round(valid_ratio * n)).astype(int)
    part = np.where(order >= n - n_test, "test",
                    np.where(order >= n - n_test - n_valid, "valid", "train"))
    frame["order"] = order.astype(np.int64)
    frame["unseen"] = frame["user_id"].isin(unseen).to_numpy()
    return frame.drop(columns="_key"), part, users, n_unseen


def read_split_folder(path: str | os.PathLike, cls: type[PerUserSplit],
                      clean: Callable[[pd.DataFrame, str], pd.DataFrame],
                      fingerprint: Callable[[dict[str, pd.DataFrame]], str],
                      kind: str) -> PerUserSplit:
    """Read a folder written by :meth:`PerUserSplit.save`; refuses edited rows."""
    path = Path(path)
    meta_path = path / "split.json"
    if not meta_path.is_file():
        raise DataError(f"not a {kind} split folder (no split.json)", path=str(path))
    meta = json.loads(meta_path.read_text())
    parts = {}
    for name in PARTS:
        file = path / f"{name}.parquet"
        try:
            parts[name] = clean(pd.read_parquet(file), str(file))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read split part: {e}", path=str(file)) from e
    if fingerprint(parts) != meta.get("fingerprint"):
        raise DataError("split rows do not match the fingerprint in split.json",
                        path=str(path), rule="a split folder is not edited after it is written")
    return cls(**parts, meta=meta, path=path)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy/scipy BLAS on one thread while a pair method fits and scores.

    Why: multi-threaded BLAS splits sums (``x.T @ r``) by thread, so an iterative fit
    (L-BFGS) ends about 1e-6 apart on machines with different core counts, and on a
    1-CPU Ray worker vs a local process. Pair models are small; one thread costs little.
    torch methods pin their own threads.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def per_user_side(method: Any, method_name: str | None, side: SideInfo | None,
                  dataset: Dataset | None, seed: int) -> tuple[SideInfo, Dataset | None]:
    """The side information of a per-user judgement track (pairs, ratings), and its data set.

    ``side`` None: the track's training view (images as items), with the truth only for a
    registered reference row; a ``Dataset`` handed directly as the view (tests) is also the
    record's data set.
    """
    if side is None:
        side = side_for(method_name or str(getattr(method, "name", "")), type(method),
                        SideInfo(view=preference_view(dataset), item_kind="image", seed=seed),
                        dataset)
    if dataset is None and isinstance(side.view, Dataset):
        dataset = side.view
    return side, dataset


def fit_then_score(method: Any, train: pd.DataFrame, side: SideInfo,
                   score: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Fit ``method`` and run ``score()`` on one BLAS thread; (its result, seconds of each).

    The one skeleton of the per-user judgement tracks (pairs and ratings), so both fit and
    score under the same thread rule (:func:`one_blas_thread`) and time the same way.
    """
    with one_blas_thread():
        t0 = time.perf_counter()
        method.fit(train, side)
        t1 = time.perf_counter()
        out = score()
        t2 = time.perf_counter()
    return out, {"fit": t1 - t0, "score": t2 - t1}
