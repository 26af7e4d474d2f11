"""The ``rerank`` protocol: reorder a first stage's short candidate list.

ImageGem's reranking table: a first-stage recommender (ItemKNN, SASRec, ...) retrieves
candidates, a second stage (a VLM) reorders a short list, and Recall@5 / NDCG@5 are read
off that list. Two ways to build the list (``mode``); docs/rerank.md explains both.

``mode="top"`` (default; protocol ``rerank-<first stage>-c<n>``): the list is exactly
what a deployed first stage would hand over.

1. Test users are the users with at least one held-out item. ``rng =
   numpy.random.default_rng(seed)``; with ``max_users`` the users are
   ``sorted(rng.choice(eligible, max_users, replace=False))`` (the only random draw).
2. The first stage scores the whole catalogue; the user's fit (train) items are masked;
   held-out items are *not* masked and nothing is inserted. The list is its top
   ``n_candidates`` in the first stage's order (ties: lower item index first, as
   everywhere in gembench). A row short of items (tiny catalogue) is padded with -1.
3. Relevant items are all of the user's held-out items (``|rel|`` = their number, the
   recall denominator of :mod:`benchmark.metrics`); a user whose list holds none of them
   scores 0 on every metric. ``positive`` is the first relevant item of the list (-1: none).

``mode="inserted"`` (ImageGem's paper protocol; protocol ``rerank-inserted-<first
stage>-c<n>``): the held-out positive is *guaranteed* to be in the list. Kept for
comparison only: it is biased (docs/rerank.md): the negatives are by construction the
items the first stage preferred to the positive, so reversing the first stage's order
wins it.

1. Users as above. The positive: ``r = rng.random(n_users)``; a user with held-out items
   ``h_0 < h_1 < ...`` (item index order) gets ``h_floor(r * |h|)`` (with leave-last-out,
   the single one); it is the only relevant item.
2. The first stage's scores with fit items *and all held-out items* masked; its top
   ``top_n`` are taken.
3. Negatives, ``n_candidates - 1`` of them: ``negatives="top"`` (default) takes the
   first ones of that top-N in order (the hardest negatives); ``negatives="sample"``
   draws them uniformly without replacement from the top-N (``rng.random((n, top_n))``
   keys, smallest first).
4. The list ``[positive, negatives...]`` is shuffled per user with keys
   ``rng.random((n, n_candidates))`` (stable argsort), so the positive's position leaks
   nothing; padding (-1) stays at the end.

All random draws are taken up front for all users in that order, so the lists do not
depend on chunk sizes or memory budgets.

Both modes record, per user, ``first_stage_hit``: whether the first stage's train-masked
top-``n_candidates`` holds a held-out item (the same quantity in both modes). Metrics
are reported over all test users and, as ``cond_<metric>``, over the users with a hit
(:func:`evaluate_rerank`). With one held-out item and ``negatives="top"``, a hit user's
inserted list is the same set as its top list, so the conditional view agrees between
the modes for any score-based reranker.

Any ranking method is a reranker: one with ``rerank(user_idx, items) -> float[n, C]``
(e.g. ``vlm-rerank``) is called with the lists; any other is scored with ``score(user_idx)``
and its scores are gathered at the candidates. Rerankers order by score descending, ties
by lower item index, so a score-based reranker's result does not depend on the order in
which the list is handed over. So the protocol runs on synthetic data (first stage
itself, ``clip-mean``, ``oracle``) without a VLM. The control ``reversed-first-stage``
(:class:`ReversedFirstStage`, minus the first stage's scores) exposes a biased list.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.core.params import build, jsonable
from benchmark.errors import GembenchError, NotApplicable
from benchmark.metrics import parse_metric, ranking_metrics
from benchmark.progress import progress_bar
from benchmark.protocols import RankingMethod
from benchmark.ranking import topk

__all__ = [
    "CANDIDATE_MODES",
    "CONTROL_METHOD",
    "RERANK_METRICS",
    "Candidates",
    "RerankEvaluation",
    "ReversedFirstStage",
    "evaluate_rerank",
    "hit_metric",
    "make_candidates",
    "protocol_name",
    "rerank_scores",
    "rerank_records",
]

#: metrics reported by the protocol (those with k > n_candidates are dropped); over all
#: test users, and with the prefix ``cond_`` over the users whose list holds a held-out item
RERANK_METRICS: tuple[str, ...] = ("recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10")
CONDITIONAL_PREFIX = "cond_"
PROTOCOL = "rerank"
#: how the candidate list is built: the first stage's own top-N, or ImageGem's inserted positive
CANDIDATE_MODES: tuple[str, ...] = ("top", "inserted")
#: the control reranker: minus the first stage's scores (exposes a list biased against it)
CONTROL_METHOD = "reversed-first-stage"


def protocol_name(first_stage: str, n_candidates: int, mode: str = "top") -> str:
    """``rerank-<first stage>-c<n>`` (top lists) or ``rerank-inserted-<first stage>-c<n>``.

    One leaderboard table per candidate-list configuration.
    """
    _check_mode(mode)
    base = PROTOCOL if mode == "top" else f"{PROTOCOL}-{mode}"
    return f"{base}-{first_stage.replace(':', '_').replace('/', '_')}-c{n_candidates}"


def hit_metric(n_candidates: int) -> str:
    """``first_stage_hit@<n>``: share of test users with a held-out item in the first stage's
    train-masked top-``n``."""
    return f"first_stage_hit@{n_candidates}"


def _check_mode(mode: str) -> None:
    if mode not in CANDIDATE_MODES:
        raise ValueError(f"candidate mode is one of {list(CANDIDATE_MODES)}, got {mode!r}")


@dataclass
class Candidates:
    """Per test user a short candidate list (dense item indices, -1 padded).

    ``is_relevant[u, j]``: whether ``items[u, j]`` counts as relevant; ``n_relevant[u]``: the
    user's ``|rel|`` (recall denominator); ``first_stage_hit[u]``: whether the first stage's
    train-masked top-``n_candidates`` held a held-out item. Left out, they follow from
    ``positive`` (the one relevant item, which is in the list).
    """

    user_idx: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n, n_candidates]
    positive: np.ndarray  # int64 [n]; top mode: the first relevant item of the list, or -1
    params: dict[str, Any] = field(default_factory=dict)
    is_relevant: np.ndarray | None = None  # bool [n, n_candidates]
    n_relevant: np.ndarray | None = None  # int64 [n], >= 1
    first_stage_hit: np.ndarray | None = None  # bool [n]

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.positive = np.asarray(self.positive, dtype=np.int64)
        if self.is_relevant is None:
            self.is_relevant = (self.items == self.positive[:, None]) & (self.items >= 0)
        self.is_relevant = np.asarray(self.is_relevant, dtype=bool)
        if self.n_relevant is None:
            self.n_relevant = np.ones(len(self.items), dtype=np.int64)
        self.n_relevant = np.asarray(self.n_relevant, dtype=np.int64)
        if self.first_stage_hit is None:
            self.first_stage_hit = self.is_relevant.any(axis=1)
        self.first_stage_hit = np.asarray(self.first_stage_hit, dtype=bool)
        if self.is_relevant.shape != self.items.shape:
            raise ValueError(f"is_relevant {self.is_relevant.shape} and items "
                             f"{self.items.shape} differ")

    @property
    def n_candidates(self) -> int:
        return int(self.items.shape[1])

    @property
    def hit_rate(self) -> float:
        """``first_stage_hit@n``: share of users whose first-stage top-n holds a held-out item."""
        return float(self.first_stage_hit.mean()) if len(self.first_stage_hit) else 0.0

    def positive_in_top_n(self) -> float:
        """inserted mode: share of users whose positive the first stage itself had in its
        top-N (recall@N); NaN in top mode."""
        return float(self.params.get("first_stage_recall@top_n", float("nan")))


def _first_stage_scores(first_stage: RankingMethod | np.ndarray, chunk: np.ndarray
                        ) -> np.ndarray:
    if isinstance(first_stage, np.ndarray):
        return np.array(first_stage[chunk], dtype=np.float32)
    return np.array(first_stage.score(chunk), dtype=np.float32)


def _held_at(held: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    """bool ``[m, C]``: is ``cols[r, j]`` a stored entry of row ``r`` of ``held`` (-1: no)."""
    out = np.zeros(cols.shape, dtype=bool)
    if cols.size == 0:
        return out
    rows = np.repeat(np.arange(cols.shape[0]), cols.shape[1])
    found = np.asarray(held[rows, np.maximum(cols, 0).ravel()]).ravel() != 0
    return found.reshape(cols.shape) & (cols >= 0)


def make_candidates(
    first_stage: RankingMethod | np.ndarray,
    exclude: sp.csr_matrix,
    relevant: sp.csr_matrix,
    n_candidates: int = 10,
    top_n: int = 50,
    seed: int = 0,
    negatives: str = "top",
    max_users: int | None = None,
    chunk_users: int = 1024,
    progress: bool = False,
    *,
    mode: str = "top",
) -> Candidates:
    """Candidate lists for the rerank protocol (rules in the module docstring).

    ``first_stage`` is a fitted ranking method or a float score matrix ``[n_users,
    n_items]``; ``exclude`` the fit (train) interactions, ``relevant`` the held-out ones.
    ``mode="top"``: the first stage's own top-``n_candidates`` (``top_n`` and ``negatives``
    unused); ``mode="inserted"``: ImageGem's positive + first-stage negatives.
    """
    _check_mode(mode)
    inserted = mode == "inserted"
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2, got {n_candidates}")
    if inserted and top_n < n_candidates - 1:
        raise ValueError(f"top_n ({top_n}) must be >= n_candidates - 1 ({n_candidates - 1})")
    if inserted and negatives not in ("top", "sample"):
        raise ValueError(f"negatives is 'top' or 'sample', got {negatives!r}")
    exclude, relevant = exclude.tocsr(), relevant.tocsr()
    relevant.sort_indices()
    if exclude.shape != relevant.shape:
        raise ValueError(f"exclude {exclude.shape} and relevant {relevant.shape} differ")
    rng = np.random.default_rng(seed)
    counts = np.diff(relevant.indptr)
    users = np.flatnonzero(counts > 0)
    if max_users is not None and max_users < len(users):
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    n = len(users)
    c = n_candidates
    if inserted:
        pick = np.floor(rng.random(n) * counts[users]).astype(np.int64)
        positive = relevant.indices[relevant.indptr[users] + pick].astype(np.int64)
        sample_keys = rng.random((n, top_n)) if negatives == "sample" else None
        shuffle_keys = rng.random((n, c))
        neg = np.full((n, c - 1), -1, dtype=np.int64)
        found = np.zeros(n, dtype=bool)
    top_items = np.full((n, c), -1, dtype=np.int64)
    top_relevant = np.zeros((n, c), dtype=bool)
    with progress_bar(total=n, desc="candidates", unit="user", enabled=progress) as bar:
        for start in range(0, n, chunk_users):
            chunk = users[start : start + chunk_users]
            sl = slice(start, start + len(chunk))
            scores = _first_stage_scores(first_stage, chunk)
            if scores.shape != (len(chunk), relevant.shape[1]):
                raise GembenchError(f"first stage returned scores of shape {scores.shape}, "
                                    f"expected {(len(chunk), relevant.shape[1])}")
            rows = np.arange(len(chunk))
            mask = exclude[chunk]
            scores[np.repeat(rows, np.diff(mask.indptr)), mask.indices] = -np.inf
            held = relevant[chunk]
            top, _ = topk(scores, c)  # the first stage's own list: train masked only
            top_items[sl] = top
            top_relevant[sl] = _held_at(held, top)
            if inserted:
                # was the positive in the first stage's top-N (train masked, held-out not)?
                pos_score = scores[rows, positive[sl]]
                found[sl] = (scores > pos_score[:, None]).sum(axis=1) < top_n
                scores[np.repeat(rows, np.diff(held.indptr)), held.indices] = -np.inf
                top, _ = topk(scores, top_n)
                if sample_keys is None:
                    neg[sl] = top[:, : c - 1]
                else:
                    keys = np.where(top >= 0, sample_keys[sl], np.inf)
                    chosen = np.argsort(keys, axis=1, kind="stable")[:, : c - 1]
                    neg[sl] = np.take_along_axis(top, chosen, axis=1)
            bar.update(len(chunk))
    hit = top_relevant.any(axis=1)
    name = first_stage.name if isinstance(first_stage, RankingMethod) else "scores"
    params: dict[str, Any] = {"mode": mode, "first_stage": name, "n_candidates": c,
                              "seed": seed, "max_users": max_users}
    if inserted:
        items = np.concatenate([positive[:, None], neg], axis=1)
        keys = np.where(items >= 0, shuffle_keys, np.inf)  # padding stays at the end
        items = np.take_along_axis(items, np.argsort(keys, axis=1, kind="stable"), axis=1)
        is_relevant = items == positive[:, None]
        n_relevant = np.ones(n, dtype=np.int64)
        params |= {"top_n": top_n, "negatives": negatives,
                   "first_stage_recall@top_n": float(found.mean()) if n else float("nan")}
    else:
        items, is_relevant = top_items, top_relevant
        n_relevant = counts[users].astype(np.int64)
        first = np.argmax(is_relevant, axis=1)
        positive = np.where(hit, items[np.arange(n), first], -1).astype(np.int64)
    return Candidates(user_idx=users.astype(np.int64), items=items, positive=positive,
                      params=params, is_relevant=is_relevant, n_relevant=n_relevant,
                      first_stage_hit=hit)


class ReversedFirstStage(RankingMethod):
    """Control reranker ``reversed-first-stage``: minus a fitted first stage's scores.

    On an unbiased candidate list it must not beat the first stage's own order; on the
    inserted list it wins (docs/rerank.md). Items the first stage cannot score (-inf or
    NaN) stay at -inf.
    """

    name = CONTROL_METHOD

    def __init__(self, first_stage: RankingMethod | None = None):
        self.first_stage = first_stage

    def get_params(self) -> dict[str, Any]:
        fs = self.first_stage
        return {"first_stage": getattr(fs, "name", None) if fs is not None else None}

    def fit(self, train: Any, side: Any) -> ReversedFirstStage:
        if self.first_stage is None:
            raise NotApplicable(f"{CONTROL_METHOD} wraps the rerank protocol's fitted first "
                                "stage; it runs only under --protocol rerank")
        return self  # the first stage is already fitted

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        s = np.asarray(self.first_stage.score(user_idx), dtype=np.float32)
        return np.where(np.isfinite(s), -s, -np.inf).astype(np.float32)


def rerank_scores(reranker: RankingMethod, user_idx: np.ndarray, items: np.ndarray
                  ) -> np.ndarray:
    """Scores ``float32 [n, C]`` of a fitted reranker for the candidate ``items`` (-1: -inf).

    ``reranker.rerank(user_idx, items)`` when it has one, else ``score(user_idx)``
    gathered at the candidates.
    """
    if hasattr(reranker, "rerank"):
        scores = np.asarray(reranker.rerank(user_idx, items), dtype=np.float32)
    else:
        full = np.asarray(reranker.score(user_idx), dtype=np.float32)
        scores = np.take_along_axis(full, np.maximum(items, 0), axis=1)
    if scores.shape != items.shape:
        raise GembenchError(f"reranker {reranker.name!r} returned shape {scores.shape}, "
                            f"expected {items.shape} (rule: one score per candidate)")
    scores = np.where(items >= 0, scores, -np.inf).astype(np.float32)
    if np.isnan(scores).any():
        row, col = np.argwhere(np.isnan(scores))[0]
        raise GembenchError(f"reranker {reranker.name!r} returned NaN (user index "
                            f"{user_idx[row]}, candidate {items[row, col]}) "
                            "(rule: scores are finite or -inf)")
    return scores


def _order(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Column permutation per row: score descending, ties by lower item index, -1 last."""
    tie = np.where(items >= 0, items, np.iinfo(np.int64).max)
    return np.lexsort((tie, -scores.astype(np.float64)), axis=1)


def order_candidates(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidates sorted by score descending, ties by lower item index, padding (-1) last."""
    return np.take_along_axis(items, _order(items, scores), axis=1)


@dataclass
class RerankEvaluation:
    user_idx: np.ndarray
    ranked: np.ndarray  # int64 [n, C], the reordered candidate lists
    per_user: dict[str, np.ndarray]  # the headline metrics over all test users
    summary: dict[str, float]  # headline, cond_<metric> and first_stage_hit@C
    stats: dict[str, Any]
    first_stage_hit: np.ndarray | None = None  # bool [n]

    @property
    def n_users_evaluated(self) -> int:
        return int(len(self.user_idx))

    @property
    def n_users_conditional(self) -> int:
        """Users of the conditional view: a held-out item in the first stage's list."""
        hit = self.first_stage_hit
        return int(hit.sum()) if hit is not None else self.n_users_evaluated

    def conditional_per_user(self) -> dict[str, np.ndarray]:
        """``cond_<metric>``: the per-user values of the users with a first-stage hit."""
        hit = (self.first_stage_hit if self.first_stage_hit is not None
               else np.ones(len(self.user_idx), dtype=bool))
        return {CONDITIONAL_PREFIX + k: v[hit] for k, v in self.per_user.items()}


def evaluate_rerank(
    reranker: RankingMethod,
    candidates: Candidates,
    metric_names: tuple[str, ...] | None = None,
    batch_users: int = 256,
    progress: bool = True,
) -> RerankEvaluation:
    """Reorder every candidate list with ``reranker`` and score it, two ways.

    Per user, with the list's relevant entries as hits and ``|rel| = n_relevant``
    (benchmark.metrics definitions; with one relevant item Recall@k = ``1[rank <= k]``
    and NDCG@k = ``1[rank <= k] / log2(rank + 1)``; a list without a relevant item scores 0).

    * ``summary[m]``: the mean over all test users (the headline);
    * ``summary["cond_" + m]``: the mean over the users with ``first_stage_hit`` (0 when
      there are none); with one held-out item ``recall@k = first_stage_hit@C *
      cond_recall@k``;
    * ``summary["first_stage_hit@C"]``: the share of users with a hit.

    ``stats`` holds ``n_model_calls`` and ``seconds_per_call`` (0 and None for a
    reranker that calls no model) and whatever else the reranker reports in ``stats_``.
    """
    c = candidates.n_candidates
    names = tuple(m for m in (metric_names or RERANK_METRICS) if parse_metric(m)[1] <= c)
    if not names:
        raise ValueError(f"no metric with k <= n_candidates ({c}) in {metric_names}")
    n = len(candidates.user_idx)
    order = np.empty_like(candidates.items)
    before = dict(getattr(reranker, "stats_", {}) or {})
    t0 = time.perf_counter()
    with progress_bar(total=n, desc=f"rerank {reranker.name}", unit="user",
                      enabled=progress) as bar:
        for start in range(0, n, batch_users):
            sl = slice(start, start + batch_users)
            scores = rerank_scores(reranker, candidates.user_idx[sl], candidates.items[sl])
            order[sl] = _order(candidates.items[sl], scores)
            bar.update(len(candidates.user_idx[sl]))
    seconds = time.perf_counter() - t0
    ranked = np.take_along_axis(candidates.items, order, axis=1)
    hits = np.take_along_axis(candidates.is_relevant, order, axis=1)
    per_user = ranking_metrics(hits, candidates.n_relevant, names)
    hit = candidates.first_stage_hit
    summary = {k: float(v.mean()) if n else 0.0 for k, v in per_user.items()}
    summary |= {CONDITIONAL_PREFIX + k: float(v[hit].mean()) if hit.any() else 0.0
                for k, v in per_user.items()}
    summary[hit_metric(c)] = candidates.hit_rate
    after = dict(getattr(reranker, "stats_", {}) or {})
    calls = int(after.get("n_model_calls", 0)) - int(before.get("n_model_calls", 0))
    model_s = float(after.get("model_seconds", 0.0)) - float(before.get("model_seconds", 0.0))
    stats = {**{k: v for k, v in after.items() if k not in ("n_model_calls", "model_seconds")},
             "n_model_calls": calls, "model_seconds": round(model_s, 4),
             "seconds_per_call": round(model_s / calls, 6) if calls else None,
             "rerank_seconds": round(seconds, 4)}
    return RerankEvaluation(candidates.user_idx, ranked, per_user, summary, stats,
                            first_stage_hit=hit)


def rerank_records(
    dataset: str | os.PathLike = "synthetic-small",
    tracks: list[str] | None = None,
    methods: list[str] | None = None,
    first_stage: str = "itemknn",
    n_candidates: int = 10,
    top_n: int = 50,
    negatives: str = "top",
    max_users: int | None = None,
    split_protocol: str = "leave-last-out",
    seed: int = 0,
    data_dir: str | os.PathLike = "data",
    results_dir: str | os.PathLike = "results",
    method_params: dict[str, Any] | None = None,
    images: str | os.PathLike | None = None,
    progress: bool = True,
    echo=print,
    candidates: str = "top",
) -> dict[str, Any]:
    """The rerank records of ``gembench run --protocol rerank`` (the tables are the run
    layer's: :func:`benchmark.run.benchmark.run_rerank`): candidates from ``first_stage``, then
    each method.

    ``candidates``: ``"top"`` (default, protocol ``rerank-<first stage>-c<n>``) hands each
    test user the first stage's own top-``n_candidates``; ``"inserted"`` (ImageGem's,
    ``rerank-inserted-<first stage>-c<n>``) inserts the positive among ``negatives`` from the
    first stage's top-``top_n`` (``top_n``/``negatives`` apply to it only) and always adds
    the ``reversed-first-stage`` control row, which exposes that protocol's bias.
    ``methods`` default to the first stage alone (its own order of the short list); the
    name ``reversed-first-stage`` is the control (minus the first stage's scores).
    ``method_params`` are set on every method that has such a parameter (e.g.
    ``{"model": "HuggingFaceTB/SmolVLM-256M-Instruct"}``); ``images`` (a folder or table of
    image files) reaches methods through ``SideInfo.extra["images"]``. Records go to
    ``results/<dataset>/<protocol>/<track>/<method>.json``; the record's fingerprint hashes
    the split's with the candidate-list parameters. Each record's metrics hold the headline
    (all test users), ``cond_<metric>`` (users whose list holds a held-out item) and
    ``first_stage_hit@<n>``; ``rerank_views`` gives the users of each view.
    """
    from benchmark.data.resolve import resolve_dataset
    from benchmark.ranking_data import track_data, track_side
    from benchmark.registry import resolve_method
    from benchmark.results import (
        bootstrap_interval,
        make_record,
        method_figures,
        record_path,
        seeded_protocol,
        write_record,
    )
    from benchmark.splits import SplitConfig, prepare_split
    from benchmark.tasks import get_track
    from benchmark.views import side_for

    _check_mode(candidates)
    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=progress)
    tracks = tracks or ["lora-rec", "image-rec"]
    config = SplitConfig(protocol=split_protocol, tracks=tuple(tracks), seed=seed)
    split = prepare_split(ds, config, data_dir, progress=progress)
    names = list(methods or [first_stage])
    if candidates == "inserted" and CONTROL_METHOD not in names:
        names.append(CONTROL_METHOD)  # the bias of the inserted lists, shown beside them
    written, skipped = [], []
    for track_name in tracks:
        track = get_track(track_name)
        kind = split.meta["tracks"].get(track_name, {}).get("interaction_kind")
        if kind is None:
            skipped.append((track_name, "*", "the data set has no interactions for this track"))
            continue
        fit, relevant = track_data(split, track.item_kind, "test")
        extra = {"images": str(images)} if images is not None else {}
        side = track_side(ds, split, track.item_kind, "test", fit, seed=seed, extra=extra)
        fs_name, fs_cls = resolve_method(first_stage)
        fs = _build(fs_cls, seed, {})
        t0 = time.perf_counter()
        fs.fit(fit, side_for(fs_name, fs_cls, side, ds))
        cands = make_candidates(fs, fit.matrix, relevant, n_candidates, top_n, seed,
                                negatives=negatives, max_users=max_users, progress=progress,
                                mode=candidates)
        cand_seconds = time.perf_counter() - t0
        protocol = seeded_protocol(protocol_name(fs_name, n_candidates, candidates), seed)
        hit_name = hit_metric(n_candidates)
        hit = cands.first_stage_hit
        echo(f"{track_name:10s} first stage {fs_name}: a held-out item in its top "
             f"{n_candidates} for {int(hit.sum())} of {len(hit)} test users "
             f"({hit_name}={cands.hit_rate:.4f}); protocol {protocol}")
        for method_name in names:
            if method_name == CONTROL_METHOD:
                display, cls = CONTROL_METHOD, ReversedFirstStage
                method: RankingMethod = ReversedFirstStage(fs)
            else:
                display, cls = resolve_method(method_name)
                method = fs if display == fs_name else _build(cls, seed, method_params or {})
            t1 = time.perf_counter()
            try:
                if method is not fs:
                    method.fit(fit, side_for(display, cls, side, ds))
                t2 = time.perf_counter()
                evaluation = evaluate_rerank(method, cands, progress=progress)
            except NotApplicable as e:
                skipped.append((track_name, display, str(e)))
                echo(f"skipped {display} on {track_name}: {e}")
                continue
            t3 = time.perf_counter()
            record = make_record(
                track=track_name,
                dataset=ds.record_block(),
                split={"protocol": protocol,
                       "base_protocol": split.meta["protocol"],
                       "fingerprint": hashlib.sha256(json.dumps(
                           [split.track_fingerprint(track_name), cands.params], sort_keys=True,
                           default=str).encode()).hexdigest(),
                       "split_fingerprint": split.fingerprint, "part": "test",
                       "fit_on": "train+valid", "interaction_kind": kind,
                       "config": split.meta.get("params"),
                       "candidates": {k: v for k, v in cands.params.items()
                                      if k != "first_stage"} | {"first_stage": fs_name}},
                method={"name": display, "class": f"{cls.__module__}:{cls.__qualname__}",
                        "params": jsonable(_safe_params(method)), "tuned": False,
                        "tuned_on": None},
                summary=evaluation.summary,
                per_user=evaluation.per_user,
                user_ids=list(fit.user_ids[evaluation.user_idx]),
                counts={"n_users_evaluated": evaluation.n_users_evaluated,
                        "n_users_skipped": int(fit.n_users - evaluation.n_users_evaluated)},
                seed=seed,
                timing={"candidates": cand_seconds, "fit": t2 - t1, "evaluate": t3 - t2},
                extra=method_figures(method, warn=echo),
            )
            # intervals of the conditional view (its users only) and of the hit rate
            views = {**evaluation.conditional_per_user(), hit_name: hit.astype(np.float64)}
            record["intervals"] |= {k: [round(v, 8) for v in bootstrap_interval(x, seed=seed)]
                                    for k, x in views.items()}
            record["rerank_views"] = {
                "candidates": candidates,
                "all": {"n_users": evaluation.n_users_evaluated,
                        "metrics": list(evaluation.per_user),
                        "users": "every test user; a user without a held-out item in the "
                                 "list scores 0"},
                "conditional": {"n_users": evaluation.n_users_conditional,
                                "metrics": list(evaluation.conditional_per_user()),
                                "users": f"test users with a held-out item in the first "
                                         f"stage's train-masked top {n_candidates}"},
                hit_name: cands.hit_rate,
                # per user (aligned with per_user.user_id): the conditional view's users
                "first_stage_hit": hit.astype(int).tolist(),
            }
            # counts stay in the record; seconds are the run's (timing_s, in <method>.run)
            seconds = ("model_seconds", "rerank_seconds", "seconds_per_call")
            record["rerank"] = {k: v for k, v in evaluation.stats.items() if k not in seconds}
            record["n_model_calls"] = evaluation.stats["n_model_calls"]
            record["timing_s"].update({k: evaluation.stats[k] for k in seconds})
            path = write_record(record, record_path(results_dir, record))
            written.append(path)
            shown = " ".join(f"{k}={evaluation.summary[k]:.4f}" for k in
                             ("recall@5", "ndcg@5", "cond_recall@5", "cond_ndcg@5")
                             if k in evaluation.summary)
            echo(f"{track_name:10s} {display:20s} {shown} "
                 f"({evaluation.stats['n_model_calls']} model calls)")
    result: dict[str, Any] = {"dataset": ds, "split": split, "records": written,
                              "skipped": skipped}
    return result


def _build(cls: type, seed: int, params: dict[str, Any]) -> RankingMethod:
    return build(cls, seed, params, only_known=True)


def _safe_params(method: RankingMethod) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict))
                else str(v)) for k, v in method.get_params().items()}

