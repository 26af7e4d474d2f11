"""The ``rerank`` protocol: reorder a short candidate list built from a first stage.

ImageGem's reranking table: a first-stage recommender (ItemKNN, SASRec, ...) retrieves
candidates, a second stage (a VLM) reorders a short list, and Recall@5 / NDCG@5 are read
off that list. Because the held-out positive is *guaranteed* to be in the list, the
numbers measure the second stage alone (given the first stage's hard negatives), not
retrieval; they are not comparable with full-ranking numbers.

Candidate lists (:func:`make_candidates`), exactly:

1. Test users are the users with at least one held-out item. ``rng =
   numpy.random.default_rng(seed)``; with ``max_users`` the users are
   ``sorted(rng.choice(eligible, max_users, replace=False))``.
2. The positive: ``r = rng.random(n_users)``; a user with held-out items ``h_0 < h_1 < ...``
   (item index order) gets ``h_floor(r * |h|)`` (with leave-last-out, the single one).
3. The first stage scores the whole catalogue; the user's fit (train) items and *all*
   their held-out items are masked, and its top ``top_n`` are taken (ties: lower item
   index first, as everywhere in gembench).
4. Negatives, ``n_candidates - 1`` of them: ``negatives="top"`` (default) takes the
   first ones of that top-N in order (the hardest negatives); ``negatives="sample"``
   draws them uniformly without replacement from the top-N (``rng.random((n, top_n))``
   keys, smallest first).
5. The list ``[positive, negatives...]`` is shuffled per user with keys
   ``rng.random((n, n_candidates))`` (stable argsort), so the positive's position leaks
   nothing. A row short of negatives (tiny catalogue) is padded with -1 at the end.

All random draws are taken up front for all users in that order, so the lists do not
depend on chunk sizes or memory budgets.

Any ranking method is a reranker: one with ``rerank(user_idx, items) -> float[n, C]``
(e.g. ``vlm-rerank``) is called with the lists; any other is scored with ``score(user_idx)``
and its scores are gathered at the candidates. So the protocol runs on synthetic data
(first stage itself, ``clip-mean``) without a VLM.
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

from benchmark.errors import GembenchError, NotApplicable
from benchmark.metrics import parse_metric, ranking_metrics
from benchmark.progress import progress_bar
from benchmark.protocols import RankingMethod
from benchmark.ranking import topk

__all__ = [
    "RERANK_METRICS",
    "Candidates",
    "RerankEvaluation",
    "evaluate_rerank",
    "make_candidates",
    "rerank_scores",
    "run_rerank",
]

#: metrics reported by the protocol (those with k > n_candidates are dropped)
RERANK_METRICS: tuple[str, ...] = ("recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10")
PROTOCOL = "rerank"


def protocol_name(first_stage: str, n_candidates: int) -> str:
    """``rerank-<first stage>-c<n>``: one leaderboard table per candidate-list configuration."""
    return f"{PROTOCOL}-{first_stage.replace(':', '_').replace('/', '_')}-c{n_candidates}"


@dataclass
class Candidates:
    """Per test user a short candidate list (dense item indices, -1 padded) and its positive."""

    user_idx: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n, n_candidates]
    positive: np.ndarray  # int64 [n]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        return int(self.items.shape[1])

    def positive_in_top_n(self) -> float:
        """Share of users whose positive the first stage itself had in its top-N (recall@N)."""
        return float(self.params.get("first_stage_recall@top_n", float("nan")))


def _first_stage_scores(first_stage: RankingMethod | np.ndarray, chunk: np.ndarray
                        ) -> np.ndarray:
    if isinstance(first_stage, np.ndarray):
        return np.array(first_stage[chunk], dtype=np.float32)
    return np.array(first_stage.score(chunk), dtype=np.float32)


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
) -> Candidates:
    """Candidate lists for the rerank protocol (rules in the module docstring).

    ``first_stage`` is a fitted ranking method or a float score matrix ``[n_users,
    n_items]``; ``exclude`` the fit (train) interactions, ``relevant`` the held-out ones.
    """
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2, got {n_candidates}")
    if top_n < n_candidates - 1:
        raise ValueError(f"top_n ({top_n}) must be >= n_candidates - 1 ({n_candidates - 1})")
    if negatives not in ("top", "sample"):
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
    pick = np.floor(rng.random(n) * counts[users]).astype(np.int64)
    positive = relevant.indices[relevant.indptr[users] + pick].astype(np.int64)
    sample_keys = rng.random((n, top_n)) if negatives == "sample" else None
    shuffle_keys = rng.random((n, n_candidates))

    n_neg = n_candidates - 1
    neg = np.full((n, n_neg), -1, dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    with progress_bar(total=n, desc="candidates", unit="user", enabled=progress) as bar:
        for start in range(0, n, chunk_users):
            chunk = users[start : start + chunk_users]
            scores = _first_stage_scores(first_stage, chunk)
            if scores.shape != (len(chunk), relevant.shape[1]):
                raise GembenchError(f"first stage returned scores of shape {scores.shape}, "
                                    f"expected {(len(chunk), relevant.shape[1])}")
            rows = np.arange(len(chunk))
            # was the positive in the first stage's own top-N (before masking it)?
            pos_score = scores[rows, positive[start : start + len(chunk)]]
            mask = exclude[chunk]
            scores[np.repeat(rows, np.diff(mask.indptr)), mask.indices] = -np.inf
            better = (scores > pos_score[:, None]).sum(axis=1)
            found[start : start + len(chunk)] = better < top_n
            held = relevant[chunk]
            scores[np.repeat(rows, np.diff(held.indptr)), held.indices] = -np.inf
            top, _ = topk(scores, top_n)
            if sample_keys is None:
                neg[start : start + len(chunk)] = top[:, :n_neg]
            else:
                keys = np.where(top >= 0, sample_keys[start : start + len(chunk)], np.inf)
                chosen = np.argsort(keys, axis=1, kind="stable")[:, :n_neg]
                neg[start : start + len(chunk)] = np.take_along_axis(top, chosen, axis=1)
            bar.update(len(chunk))
    items = np.concatenate([positive[:, None], neg], axis=1)
    keys = np.where(items >= 0, shuffle_keys, np.inf)  # padding stays at the end
    items = np.take_along_axis(items, np.argsort(keys, axis=1, kind="stable"), axis=1)
    name = first_stage.name if isinstance(first_stage, RankingMethod) else "scores"
    params = {"first_stage": name, "n_candidates": n_candidates, "top_n": top_n,
              "seed": seed, "negatives": negatives, "max_users": max_users,
              "first_stage_recall@top_n": float(found.mean()) if n else float("nan")}
    return Candidates(user_idx=users.astype(np.int64), items=items, positive=positive,
                      params=params)


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


def order_candidates(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidates sorted by score descending, ties by lower item index, padding (-1) last."""
    tie = np.where(items >= 0, items, np.iinfo(np.int64).max)
    order = np.lexsort((tie, -scores.astype(np.float64)), axis=1)
    return np.take_along_axis(items, order, axis=1)


@dataclass
class RerankEvaluation:
    user_idx: np.ndarray
    ranked: np.ndarray  # int64 [n, C], the reordered candidate lists
    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    stats: dict[str, Any]

    @property
    def n_users_evaluated(self) -> int:
        return int(len(self.user_idx))


def evaluate_rerank(
    reranker: RankingMethod,
    candidates: Candidates,
    metric_names: tuple[str, ...] | None = None,
    batch_users: int = 256,
    progress: bool = True,
) -> RerankEvaluation:
    """Reorder every candidate list with ``reranker`` and score it against the positive.

    With one relevant item per list (``|rel| = 1``): Recall@k = ``1[rank(pos) <= k]`` and
    NDCG@k = ``1[rank(pos) <= k] / log2(rank(pos) + 1)`` (benchmark.metrics definitions).
    ``stats`` holds ``n_model_calls`` and ``seconds_per_call`` (0 and None for a
    reranker that calls no model) and whatever else the reranker reports in ``stats_``.
    """
    c = candidates.n_candidates
    names = tuple(m for m in (metric_names or RERANK_METRICS) if parse_metric(m)[1] <= c)
    if not names:
        raise ValueError(f"no metric with k <= n_candidates ({c}) in {metric_names}")
    n = len(candidates.user_idx)
    ranked = np.empty_like(candidates.items)
    before = dict(getattr(reranker, "stats_", {}) or {})
    t0 = time.perf_counter()
    with progress_bar(total=n, desc=f"rerank {reranker.name}", unit="user",
                      enabled=progress) as bar:
        for start in range(0, n, batch_users):
            sl = slice(start, start + batch_users)
            scores = rerank_scores(reranker, candidates.user_idx[sl], candidates.items[sl])
            ranked[sl] = order_candidates(candidates.items[sl], scores)
            bar.update(len(candidates.user_idx[sl]))
    seconds = time.perf_counter() - t0
    hits = ranked == candidates.positive[:, None]
    per_user = ranking_metrics(hits, np.ones(n, dtype=np.int64), names)
    summary = {k: float(v.mean()) if n else 0.0 for k, v in per_user.items()}
    after = dict(getattr(reranker, "stats_", {}) or {})
    calls = int(after.get("n_model_calls", 0)) - int(before.get("n_model_calls", 0))
    model_s = float(after.get("model_seconds", 0.0)) - float(before.get("model_seconds", 0.0))
    stats = {**{k: v for k, v in after.items() if k not in ("n_model_calls", "model_seconds")},
             "n_model_calls": calls, "model_seconds": round(model_s, 4),
             "seconds_per_call": round(model_s / calls, 6) if calls else None,
             "rerank_seconds": round(seconds, 4)}
    return RerankEvaluation(candidates.user_idx, ranked, per_user, summary, stats)


def run_rerank(
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
    leaderboard_dir: str | os.PathLike | None = "leaderboards",
    method_params: dict[str, Any] | None = None,
    images: str | os.PathLike | None = None,
    progress: bool = True,
    echo=print,
) -> dict[str, Any]:
    """``gembench run --protocol rerank``: candidates from ``first_stage``, then each method.

    ``methods`` default to the first stage alone (its own order of the short list).
    ``method_params`` are set on every method that has such a parameter (e.g.
    ``{"model": "HuggingFaceTB/SmolVLM-256M-Instruct"}``); ``images`` (a folder or table of
    image files) reaches methods through ``SideInfo.extra["images"]``. Records go to
    ``results/<dataset>/rerank-<first stage>-c<n>/<track>/<method>.json``; the record's
    fingerprint hashes the split's with the candidate-list parameters.
    """
    from benchmark.leaderboard import write_leaderboards
    from benchmark.protocols import SideInfo
    from benchmark.registry import resolve_method
    from benchmark.results import make_record, record_path, seeded_protocol, write_record
    from benchmark.runner import _jsonable, prepare_split, resolve_dataset, track_data
    from benchmark.splits import SplitConfig
    from benchmark.tasks import get_track

    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=progress)
    tracks = tracks or ["lora-rec", "image-rec"]
    config = SplitConfig(protocol=split_protocol, tracks=tuple(tracks), seed=seed)
    split = prepare_split(ds, config, data_dir, progress=progress)
    names = methods or [first_stage]
    written, skipped = [], []
    for track_name in tracks:
        track = get_track(track_name)
        kind = split.meta["tracks"].get(track_name, {}).get("interaction_kind")
        if kind is None:
            skipped.append((track_name, "*", "the data set has no interactions for this track"))
            continue
        fit, relevant = track_data(split, track.item_kind, "test")
        extra = {"images": str(images)} if images is not None else {}
        side = SideInfo(dataset=ds, item_kind=track.item_kind, seed=seed, extra=extra)
        fs_name, fs_cls = resolve_method(first_stage)
        fs = _build(fs_cls, seed, {})
        t0 = time.perf_counter()
        fs.fit(fit, side)
        cands = make_candidates(fs, fit.matrix, relevant, n_candidates, top_n, seed,
                                negatives=negatives, max_users=max_users, progress=progress)
        cand_seconds = time.perf_counter() - t0
        for method_name in names:
            display, cls = resolve_method(method_name)
            method = fs if display == fs_name else _build(cls, seed, method_params or {})
            t1 = time.perf_counter()
            try:
                if method is not fs:
                    method.fit(fit, side)
                t2 = time.perf_counter()
                evaluation = evaluate_rerank(method, cands, progress=progress)
            except NotApplicable as e:
                skipped.append((track_name, display, str(e)))
                echo(f"skipped {display} on {track_name}: {e}")
                continue
            t3 = time.perf_counter()
            record = make_record(
                track=track_name,
                dataset={"name": ds.name, "path": str(ds.path),
                         "files_sha256": split.meta["dataset"]["files_sha256"]},
                split={"protocol": seeded_protocol(protocol_name(fs_name, n_candidates), seed),
                       "base_protocol": split.meta["protocol"],
                       "fingerprint": hashlib.sha256(json.dumps(
                           [split.fingerprint, cands.params], sort_keys=True,
                           default=str).encode()).hexdigest(),
                       "split_fingerprint": split.fingerprint, "part": "test",
                       "fit_on": "train+valid", "interaction_kind": kind,
                       "config": split.meta.get("params"),
                       "candidates": {k: v for k, v in cands.params.items()
                                      if k != "first_stage"} | {"first_stage": fs_name}},
                method={"name": display, "class": f"{cls.__module__}:{cls.__qualname__}",
                        "params": _jsonable(_safe_params(method)), "tuned": False,
                        "tuned_on": None},
                summary=evaluation.summary,
                per_user=evaluation.per_user,
                user_ids=list(fit.user_ids[evaluation.user_idx]),
                counts={"n_users_evaluated": evaluation.n_users_evaluated,
                        "n_users_skipped": int(fit.n_users - evaluation.n_users_evaluated)},
                seed=seed,
                timing={"candidates": cand_seconds, "fit": t2 - t1, "evaluate": t3 - t2},
            )
            record["rerank"] = evaluation.stats
            record["n_model_calls"] = evaluation.stats["n_model_calls"]
            record["seconds_per_call"] = evaluation.stats["seconds_per_call"]
            path = write_record(record, record_path(results_dir, record))
            written.append(path)
            echo(f"{track_name:10s} {display:12s} recall@5={evaluation.summary['recall@5']:.4f}"
                 f" ndcg@5={evaluation.summary['ndcg@5']:.4f} "
                 f"(first stage {fs_name}, {evaluation.stats['n_model_calls']} model calls)")
    result: dict[str, Any] = {"dataset": ds, "split": split, "records": written,
                              "skipped": skipped}
    if leaderboard_dir is not None:
        files, tables, notes = write_leaderboards(results_dir, leaderboard_dir)
        result.update(leaderboard_files=files, tables=tables, notes=notes)
    return result


def _build(cls: type, seed: int, params: dict[str, Any]) -> RankingMethod:
    from benchmark.runner import _init_params

    accepted = _init_params(cls)
    method = cls(seed=seed) if "seed" in accepted else cls()
    mine = {k: v for k, v in params.items() if k in accepted}
    return method.set_params(**mine) if mine else method


def _safe_params(method: RankingMethod) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict))
                else str(v)) for k, v in method.get_params().items()}

