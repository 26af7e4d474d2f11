"""Shared by the retrieval methods (``clip-text``, ``two-tower``): score() through a faiss index.

The engine consumes dense ``score()`` chunks and masks each user's training items before its
top-K. A retrieval method therefore returns, per user, the faiss top-N with their inner
products and ``-inf`` everywhere else, where

    N_u-chunk = n_candidates + max_{u in chunk} |H_u|      (capped at n_items)

and H_u is the user's training history (the items the engine will mask). At least
``n_candidates`` unmasked items survive for every user, so with ``n_candidates >= K`` (the
engine's largest cut-off, 50) and an exact (``flat``) index the engine's top-K is the exact
inner-product top-K: the numbers equal dense scoring, ties at the N-th place aside. With an
approximate index (``ivf``, ``hnsw``) the loss is measured at fit time on a seeded sample of
users as ``retrieval_recall_`` = :func:`benchmark.retrieval.approximation_recall` at
``n_candidates``, and exposed in ``extra_`` for the run record.
"""

from __future__ import annotations

import numpy as np

from benchmark.progress import progress_bar
from benchmark.protocols import RankingMethod


class FaissRetrieval(RankingMethod):
    """Mixin: subclasses set ``self.index``, ``n_candidates``, ``nlist``, ``nprobe``, ``m``,
    ``ef_search``, ``device`` and ``seed`` in ``__init__`` and call :meth:`_fit_index`."""

    recall_sample: int = 1000  # users sampled to measure the recall cost of an approximation

    def _fit_index(self, user_vectors: np.ndarray, item_vectors: np.ndarray,
                   history_len: np.ndarray, progress: bool = False) -> None:
        from benchmark.retrieval import (
            approximation_recall,
            build_index,
            exact_search,
            index_info,
            search,
        )

        self.user_vec_ = np.ascontiguousarray(user_vectors, dtype=np.float32)
        self.item_vec_ = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.history_len_ = np.asarray(history_len, dtype=np.int64)
        self.n_items_ = len(self.item_vec_)
        if int(self.n_candidates) < 1:
            raise ValueError(f"n_candidates must be >= 1, got {self.n_candidates}")
        self.index_ = build_index(
            self.item_vec_, kind=self.index, metric="ip", nlist=self.nlist, nprobe=self.nprobe,
            m=self.m, ef_search=self.ef_search, device=self.device, seed=int(self.seed),
        )
        self.index_info_ = index_info(self.index_)
        k = int(min(self.n_candidates, self.n_items_))
        if self.index == "flat":
            self.retrieval_recall_ = 1.0  # exact search: nothing to lose (tested)
        else:
            rng = np.random.default_rng([int(self.seed), 7])
            n = len(self.user_vec_)
            sample = np.sort(rng.choice(n, size=min(n, self.recall_sample), replace=False))
            with progress_bar(total=1, desc="recall cost", enabled=progress) as bar:
                exact = exact_search(self.item_vec_, self.user_vec_[sample], k)
                approx, _ = search(self.index_, self.user_vec_[sample], k)
                self.retrieval_recall_ = approximation_recall(exact, approx)
                bar.update(1)
        self.extra_ = {f"retrieval_recall@{k}": float(self.retrieval_recall_)}

    def score(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Inner products of the retrieved top-N, ``-inf`` for the items not retrieved."""
        from benchmark.retrieval import search

        user_idx = np.asarray(user_idx, dtype=np.int64)
        if out is None:
            out = np.empty((len(user_idx), self.n_items_), dtype=np.float32)
        out.fill(-np.inf)
        if len(user_idx) == 0:
            return out
        n = int(min(self.n_items_, int(self.n_candidates) + self.history_len_[user_idx].max()))
        ids, sims = search(self.index_, self.user_vec_[user_idx], n)
        ok = ids >= 0
        rows = np.broadcast_to(np.arange(len(user_idx))[:, None], ids.shape)
        out[rows[ok], ids[ok]] = sims[ok]
        return out


class OptionalFaiss(FaissRetrieval):
    """For profile methods (``clip-mean``, ``clip-recent``): dense exact scoring by default,
    or retrieval through a faiss index when ``index`` is set ("flat", "ivf", "hnsw").

    The index settings other than ``index`` and ``n_candidates`` are class-level defaults
    (a subclass or ``set_params`` may change them).
    """

    nlist: int | None = None
    nprobe: int = 8
    m: int = 32
    ef_search: int = 128
    device: str = "auto"
    seed: int = 0

    def _maybe_index(self, train, profile: np.ndarray, item_emb: np.ndarray) -> None:
        if self.index is not None:
            self._fit_index(profile, item_emb, np.asarray(train.matrix.getnnz(axis=1)))

    def _scores(self, user_idx: np.ndarray, profile: np.ndarray,
                item_emb: np.ndarray) -> np.ndarray:
        if self.index is None:
            return profile[user_idx] @ item_emb.T
        return FaissRetrieval.score(self, user_idx)
