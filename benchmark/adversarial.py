"""Adversarial controls: methods that try to read held-out data through what they are handed.

Why: "the harness enforces the training view" is a claim, so it is tested the way a cheater
would break it. :func:`reachable_data` walks everything reachable from a method's ``fit``
arguments (attributes, containers, closures, array bases, memory-map file names, and every
path or folder found, whose parquet files it reads) and returns the tables it found. The
cheating methods rank (or score) the pairs found there that are not in their training rows
first. Run through the harness they must not beat ``oracle``; handed a whole data set
they do (tests/test_views.py shows both).

They are product code so that anyone can audit a track they add:
``gembench run --methods benchmark.adversarial:Cheater`` (ranking),
``benchmark.adversarial:PairCheater`` (preference), ``benchmark.adversarial:EditCheater``
(lora-edit). What they cannot catch: code that scans the disk or the interpreter's memory
without a lead from its arguments; no in-process harness can stop that (docs/submitting.md).
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from benchmark.protocols import InteractionData, RankingMethod, SideInfo

#: folders above a found path that the walk also reads (a data set's parent: data/)
PARENT_LEVELS = 1
#: at most this many parquet files are read (a guard for a walk that finds a big tree)
MAX_FILES = 500


def reachable_data(*roots: Any) -> dict[str, Any]:
    """Tables, folders and truth-like objects reachable from ``roots``.

    Returns ``{"tables": [DataFrame, ...], "folders": [Path, ...], "objects": n}``. A
    table is any DataFrame / pyarrow Table met, or a parquet file under a folder met (a
    string or Path that exists, a memory map's file name, and ``PARENT_LEVELS`` above).
    """
    seen: set[int] = set()
    stack: list[Any] = list(roots)
    tables: list[pd.DataFrame] = []
    paths: set[Path] = set()
    n = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        n += 1
        if isinstance(obj, (bool, int, float, complex, bytes, np.generic)):
            continue
        if isinstance(obj, (str, os.PathLike)):
            _add_path(obj, paths)
            continue
        if isinstance(obj, pd.DataFrame):
            tables.append(obj)
            continue
        if isinstance(obj, pa.Table):
            tables.append(obj.to_pandas())
            continue
        if isinstance(obj, pd.Index):
            continue
        if isinstance(obj, np.ndarray):
            if isinstance(obj, np.memmap) and obj.filename:
                _add_path(obj.filename, paths)
            stack.append(obj.base)
            continue
        if sp.issparse(obj):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
            continue
        if isinstance(obj, (types.FunctionType, types.MethodType, types.ModuleType, type)):
            if isinstance(obj, types.MethodType):
                stack.append(obj.__self__)
            if isinstance(obj, types.FunctionType) and obj.__closure__:
                stack.extend(c.cell_contents for c in obj.__closure__)
            continue
        if hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                stack.append(getattr(obj, slot))
    folders = sorted(paths)
    files: list[Path] = []
    for folder in folders:
        files += sorted(folder.rglob("*.parquet"))
    for file in sorted(set(files))[:MAX_FILES]:
        try:
            tables.append(pq.read_table(file).to_pandas())
        except (OSError, pa.ArrowException):
            continue
    return {"tables": tables, "folders": folders, "objects": n}


def _add_path(value: Any, paths: set[Path]) -> None:
    try:
        path = Path(value)
        if not path.exists():
            return
    except (OSError, ValueError, TypeError):
        return
    folder = path if path.is_dir() else path.parent
    for _ in range(PARENT_LEVELS + 1):
        if folder == folder.parent or folder == Path.cwd() or folder == Path.home():
            break
        paths.add(folder.resolve())
        folder = folder.parent


def found_pairs(tables: list[pd.DataFrame], item_kind: str) -> pd.DataFrame:
    """Every (user_id, item_id) pair of ``item_kind`` in ``tables`` (interaction-like rows,
    images with their LoRAs or themselves as items), as strings."""
    out = []
    for t in tables:
        if "user_id" not in t:
            continue
        if "item_id" in t:
            rows = t if "item_kind" not in t else t[t["item_kind"].astype(str) == item_kind]
            out.append(pd.DataFrame({"user_id": rows["user_id"].astype(str),
                                     "item_id": rows["item_id"].astype(str)}))
        if item_kind == "lora" and "lora_ids" in t:
            rows = t[["user_id", "lora_ids"]].explode("lora_ids").dropna()
            out.append(pd.DataFrame({"user_id": rows["user_id"].astype(str),
                                     "item_id": rows["lora_ids"].astype(str)}))
        if item_kind == "image" and "image_id" in t:
            out.append(pd.DataFrame({"user_id": t["user_id"].astype(str),
                                     "item_id": t["image_id"].astype(str)}))
    if not out:
        return pd.DataFrame({"user_id": [], "item_id": []}, dtype=object)
    return pd.concat(out, ignore_index=True).drop_duplicates(ignore_index=True)


class Cheater(RankingMethod):
    """Ranks the (user, item) pairs it can find beyond its training rows first."""

    name = "cheater"

    def fit(self, train: InteractionData, side: SideInfo) -> Cheater:
        found = reachable_data(train, side)
        pairs = found_pairs(found["tables"], train.item_kind)
        u = train.user_ids.get_indexer(pairs["user_id"].to_numpy(dtype=object))
        i = train.item_ids.get_indexer(pairs["item_id"].to_numpy(dtype=object))
        ok = (u >= 0) & (i >= 0)
        extra = sp.csr_matrix((np.ones(ok.sum(), np.float32), (u[ok], i[ok])),
                              shape=train.matrix.shape)
        extra.data[:] = 1.0
        self.extra_pairs_ = extra - extra.multiply(train.matrix)
        self.extra_pairs_.eliminate_zeros()
        self.popularity_ = np.asarray(train.matrix.sum(axis=0), np.float32).ravel()
        self.extra_ = {"pairs_found_beyond_train": float(self.extra_pairs_.nnz),
                       "folders_found": float(len(found["folders"]))}
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        pop = self.popularity_ / max(1.0, float(self.popularity_.max()) + 1.0)
        return np.asarray(self.extra_pairs_[user_idx].toarray(), np.float32) + pop


class PairCheater:
    """Preference track: scores images by every judgement (pair or rating) it can find."""

    name = "pair-cheater"

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: pd.DataFrame, side: SideInfo) -> PairCheater:
        found = reachable_data(train, side)
        frames = [t for t in found["tables"]
                  if {"user_id", "image_a", "image_b", "label"} <= set(t.columns)]
        pairs = (pd.concat(frames, ignore_index=True) if frames
                 else pd.DataFrame(columns=["user_id", "image_a", "image_b", "label"]))
        n_train = len(train)
        self.n_found_ = int(len(pairs.drop_duplicates(["user_id", "image_a", "image_b"])))
        self.extra_ = {"judgements_found_beyond_train": float(max(0, self.n_found_ - n_train))}
        score: dict[tuple[str, str], float] = {}
        for u, a, b, y in zip(pairs["user_id"].astype(str), pairs["image_a"].astype(str),
                              pairs["image_b"].astype(str), pairs["label"].astype(float),
                              strict=True):
            score[(u, a)] = score.get((u, a), 0.0) + (y - 0.5)
            score[(u, b)] = score.get((u, b), 0.0) - (y - 0.5)
        for t in found["tables"]:  # ratings: the rating itself is the best score there is
            if {"user_id", "image_id", "rating"} <= set(t.columns):
                for u, i, r in zip(t["user_id"].astype(str), t["image_id"].astype(str),
                                   t["rating"].astype(float), strict=True):
                    score[(u, i)] = float(r)
        self.scores_ = score
        return self

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        return np.array([self.scores_.get((str(u), str(i)), 0.0)
                         for u, i in zip(user_ids, image_ids, strict=True)], np.float32)


class EditCheater:
    """lora-edit: looks for the truth in what it is handed; edits nothing (gain 0)."""

    name = "edit-cheater"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def fit(self, bank: Any, train: Any) -> EditCheater:
        from benchmark.data.store import Dataset

        self.bank_ = bank
        found = reachable_data(bank, train)
        seen: list[Any] = []
        stack, ids = [bank, train], set()
        while stack:  # truth-bearing objects: a Dataset, or anything with a user_taste
            obj = stack.pop()
            if id(obj) in ids or obj is None:
                continue
            ids.add(id(obj))
            if isinstance(obj, Dataset) or hasattr(obj, "user_taste"):
                seen.append(type(obj).__name__)
            if hasattr(obj, "__dict__") and not isinstance(obj, type):
                stack.extend(vars(obj).values())
        self.truth_found_ = seen
        self.extra_ = {"truth_objects_found": float(len(seen)),
                       "folders_found": float(len(found["folders"]))}
        return self

    def edit(self, user_ids: Any, lora_ids: Any, step: float) -> np.ndarray:
        return self.bank_.latents[self.bank_.rows(lora_ids)].astype(np.float64)
