"""Evaluation metrics: one pure, vectorised function per metric, formula in the docstring.

Ranking metrics take the *ranked-list form* that the full-ranking engine produces:

* ``hits``: bool ``(n_users, K)``; ``hits[u, j]`` is True iff the item at rank ``j + 1`` of
  user ``u``'s list is relevant. Lists shorter than ``K`` are padded with False.
* ``n_relevant``: int ``(n_users,)``, the number of relevant (test) items of each user,
  always >= 1 (users without test items are not evaluated).

Every ranking metric returns a float64 ``(n_users,)`` array of per-user values, so that the
caller decides how to aggregate (mean, bootstrap, per-group). Ranks are 1-based in the
formulas below; ``hit_i`` is ``hits[u, i - 1]`` and ``|rel|`` is ``n_relevant[u]``.
Definitions follow RecBole by default and trec_eval where an option says so; the test
suite checks them against ``pytrec_eval``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from functools import cached_property

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "DEFAULT_RANKING_METRICS",
    "RANKING_METRICS",
    "auc",
    "average_popularity",
    "catalogue_coverage",
    "hit_rate_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "pairwise_accuracy",
    "parse_metric",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]

DEFAULT_RANKING_METRICS: tuple[str, ...] = (
    "recall@10", "recall@20", "recall@50",
    "ndcg@10", "ndcg@20", "ndcg@50",
    "hit@10", "hit@20", "hit@50",
    "mrr@10",
    "precision@10",
    "map@10",
)  # fmt: skip

_RECALL_DENOMINATORS = ("relevant", "capped")


# ----------------------------------------------------------------------------- validation


def _as_hits(hits: np.ndarray) -> np.ndarray:
    hits = np.asarray(hits)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_users, K), got shape {hits.shape}")
    return hits.astype(bool, copy=False)


def _check_k(k: int, width: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= width:
        raise ValueError(f"k must be in [1, K={width}], got k={k}")
    return int(k)


def _as_n_relevant(n_relevant: np.ndarray, n_users: int) -> np.ndarray:
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (n_users,):
        raise ValueError(f"n_relevant must have shape ({n_users},), got {n_rel.shape}")
    if n_rel.size and n_rel.min() < 1:
        bad = int(np.flatnonzero(n_rel < 1)[0])
        raise ValueError(
            f"n_relevant must be >= 1 for every evaluated user; index {bad} has {n_rel[bad]}"
        )
    return n_rel.astype(np.int64, copy=False)


def _check_denominator(denominator: str) -> None:
    if denominator not in _RECALL_DENOMINATORS:
        raise ValueError(
            f"unknown denominator {denominator!r}; expected one of {list(_RECALL_DENOMINATORS)}"
        )


def _check_no_nan(name: str, values: np.ndarray) -> None:
    nan = np.isnan(values)
    if nan.any():
        bad = int(np.flatnonzero(nan)[0])
        raise ValueError(f"{name} contains NaN (first at index {bad})")


# ------------------------------------------------------------ shared cumulative quantities


@functools.cache
def _discounts(width: int) -> np.ndarray:
    """``1 / log2(i + 1)`` for ranks ``i = 1..width`` (read-only, cached)."""
    out = 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))
    out.flags.writeable = False
    return out


class _Prefix:
    """Prefix sums over the ranks of ``hits``, computed once on demand and shared by metrics.

    Column ``k - 1`` of each array is the quantity "within the top k", so every cut-off of
    every metric is a column lookup.
    """

    def __init__(self, hits: np.ndarray) -> None:
        self.hits = hits
        self.width = hits.shape[1]

    @cached_property
    def n_hits(self) -> np.ndarray:
        """``sum_{i<=k} hit_i``."""
        return np.cumsum(self.hits, axis=1, dtype=np.int64)

    @cached_property
    def dcg(self) -> np.ndarray:
        """``sum_{i<=k} hit_i / log2(i + 1)``."""
        return np.cumsum(self.hits * _discounts(self.width), axis=1)

    @cached_property
    def ap_sum(self) -> np.ndarray:
        """``sum_{i<=k} P@i * hit_i``."""
        ranks = np.arange(1, self.width + 1, dtype=np.float64)
        return np.cumsum(np.where(self.hits, self.n_hits / ranks, 0.0), axis=1)

    @cached_property
    def first_rank(self) -> np.ndarray:
        """1-based rank of the first hit; ``K + 1`` when there is none."""
        first = np.argmax(self.hits, axis=1) + 1
        return np.where(self.hits.any(axis=1), first, self.width + 1)


def _recall(p: _Prefix, n_rel: np.ndarray, k: int, denominator: str = "relevant") -> np.ndarray:
    denom = n_rel if denominator == "relevant" else np.minimum(n_rel, k)
    return p.n_hits[:, k - 1] / denom


def _precision(p: _Prefix, n_rel: np.ndarray | None, k: int) -> np.ndarray:
    return p.n_hits[:, k - 1] / float(k)


def _hit(p: _Prefix, n_rel: np.ndarray | None, k: int) -> np.ndarray:
    return (p.n_hits[:, k - 1] > 0).astype(np.float64)


def _mrr(p: _Prefix, n_rel: np.ndarray | None, k: int) -> np.ndarray:
    rank = p.first_rank
    return np.where(rank <= k, 1.0 / rank, 0.0)


def _ndcg(p: _Prefix, n_rel: np.ndarray, k: int) -> np.ndarray:
    idcg = np.cumsum(_discounts(k))[np.minimum(n_rel, k) - 1]
    return p.dcg[:, k - 1] / idcg


def _map(p: _Prefix, n_rel: np.ndarray, k: int, denominator: str = "capped") -> np.ndarray:
    denom = np.minimum(n_rel, k) if denominator == "capped" else n_rel
    return p.ap_sum[:, k - 1] / denom


# ------------------------------------------------------------------------ ranking metrics


def recall_at_k(
    hits: np.ndarray, n_relevant: np.ndarray, k: int, denominator: str = "relevant"
) -> np.ndarray:
    """Recall@k = ``sum_{i<=k} hit_i / D``.

    ``denominator="relevant"`` (default): ``D = |rel|``, RecBole's and trec_eval's
    definition, so a user with more test items than ``k`` can never reach 1 -- comparable
    with published RecBole numbers. ``"capped"``: ``D = min(k, |rel|)``, which makes 1
    reachable for every user (the "R-cap" variant).
    """
    _check_denominator(denominator)
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    n_rel = _as_n_relevant(n_relevant, hits.shape[0])
    return _recall(_Prefix(hits[:, :k]), n_rel, k, denominator)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@k = ``sum_{i<=k} hit_i / k``.

    Divides by ``k`` even when the list is shorter (padding counts as a miss), as trec_eval
    does, so a method cannot gain by returning fewer items.
    """
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    return _precision(_Prefix(hits[:, :k]), None, k)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """HitRate@k = ``1 if any(hit_i for i <= k) else 0`` (trec_eval's ``success_k``)."""
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    return _hit(_Prefix(hits[:, :k]), None, k)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """MRR@k = ``1 / r`` with ``r`` the rank of the first hit if ``r <= k``, else 0.

    Cut at ``k`` so that the value only depends on the top-k list the engine keeps.
    """
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    return _mrr(_Prefix(hits[:, :k]), None, k)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains: ``DCG / IDCG``.

    ``DCG = sum_{i<=k} hit_i / log2(i + 1)``; ``IDCG = sum_{i=1}^{min(k, |rel|)} 1/log2(i+1)``,
    the DCG of a list with all relevant items first, so the value is in [0, 1] and equals
    RecBole's NDCG and trec_eval's ``ndcg_cut_k``.
    """
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    n_rel = _as_n_relevant(n_relevant, hits.shape[0])
    return _ndcg(_Prefix(hits[:, :k]), n_rel, k)


def map_at_k(
    hits: np.ndarray, n_relevant: np.ndarray, k: int, denominator: str = "capped"
) -> np.ndarray:
    """MAP@k (per-user average precision) = ``sum_{i<=k} P@i * hit_i / D``.

    ``P@i = sum_{j<=i} hit_j / i``. ``denominator="capped"`` (default): ``D = min(k, |rel|)``,
    RecBole's MAP, which reaches 1 for a perfect top k. ``"relevant"``: ``D = |rel|``,
    trec_eval's ``map_cut_k``.
    """
    _check_denominator(denominator)
    hits = _as_hits(hits)
    k = _check_k(k, hits.shape[1])
    n_rel = _as_n_relevant(n_relevant, hits.shape[0])
    return _map(_Prefix(hits[:, :k]), n_rel, k, denominator)


# ------------------------------------------------------------------------------ registry

RankingMetric = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _without_n_relevant(fn: Callable[[np.ndarray, int], np.ndarray]) -> RankingMetric:
    @functools.wraps(fn)
    def wrapper(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
        return fn(hits, k)

    return wrapper


#: Base name -> metric with the uniform call ``fn(hits, n_relevant, k)`` (precision, hit and
#: mrr ignore ``n_relevant``). Recall uses ``|rel|`` and MAP ``min(k, |rel|)`` (RecBole).
RANKING_METRICS: dict[str, RankingMetric] = {
    "recall": recall_at_k,
    "precision": _without_n_relevant(precision_at_k),
    "ndcg": ndcg_at_k,
    "hit": _without_n_relevant(hit_rate_at_k),
    "mrr": _without_n_relevant(mrr_at_k),
    "map": map_at_k,
}

_KERNELS: dict[str, Callable[[_Prefix, np.ndarray, int], np.ndarray]] = {
    "recall": _recall,
    "precision": _precision,
    "ndcg": _ndcg,
    "hit": _hit,
    "mrr": _mrr,
    "map": _map,
}

_METRIC_RE = re.compile(r"^([a-z]+)@([0-9]+)$")


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ValueError naming the valid metrics otherwise."""
    match = _METRIC_RE.match(name.strip().lower()) if isinstance(name, str) else None
    if match is None or match.group(1) not in RANKING_METRICS or int(match.group(2)) < 1:
        raise ValueError(
            f"bad metric name {name!r}: expected '<name>@<k>' with k >= 1 and name one of "
            f"{sorted(RANKING_METRICS)} (e.g. 'ndcg@10')"
        )
    return match.group(1), int(match.group(2))


def ranking_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, names: Iterable[str]
) -> dict[str, np.ndarray]:
    """Per-user values of every metric in ``names`` (e.g. ``["ndcg@10", "recall@50"]``).

    Same definitions as :data:`RANKING_METRICS`; the prefix sums over ranks are computed
    once and shared by all metrics and cut-offs, so adding a cut-off costs a column lookup.
    Keys are the canonical names (``"<name>@<k>"``), in the order given.
    """
    parsed = [parse_metric(name) for name in names]
    hits = _as_hits(hits)
    n_rel = _as_n_relevant(n_relevant, hits.shape[0])
    if not parsed:
        return {}
    max_k = max(k for _, k in parsed)
    _check_k(max_k, hits.shape[1])
    prefix = _Prefix(hits[:, :max_k])
    return {f"{base}@{k}": _KERNELS[base](prefix, n_rel, k) for base, k in parsed}


# -------------------------------------------------------------------- beyond-accuracy


def _top_items(ranked_items: np.ndarray, k: int) -> np.ndarray:
    ranked_items = np.asarray(ranked_items)
    if ranked_items.ndim != 2 or not np.issubdtype(ranked_items.dtype, np.integer):
        raise ValueError(
            f"ranked_items must be a 2-D int array, got {ranked_items.dtype} {ranked_items.shape}"
        )
    k = _check_k(k, ranked_items.shape[1])
    return ranked_items[:, :k]


def catalogue_coverage(ranked_items: np.ndarray, n_items: int, k: int) -> float:
    """Coverage@k = ``|union_u top_k(u)| / n_items``, padding (-1) ignored.

    The share of the catalogue that any user is shown: a popularity ranker scores close to
    ``k / n_items``, so it exposes methods that recommend the same items to everyone.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    top = _top_items(ranked_items, k)
    items = top[top >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError(f"item index {int(items.max())} out of range for n_items={n_items}")
    seen = np.zeros(n_items, dtype=bool)
    seen[items] = True
    return float(np.count_nonzero(seen) / n_items)


def average_popularity(ranked_items: np.ndarray, item_popularity: np.ndarray, k: int) -> np.ndarray:
    """AvgPop@k = ``mean_{i in top_k(u), i != -1} popularity[i]`` per user (0 if empty).

    ``item_popularity`` is e.g. the training interaction count of each item; higher means
    the method leans on popular items (popularity bias).
    """
    top = _top_items(ranked_items, k)
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D, got shape {pop.shape}")
    valid = top >= 0
    if valid.any() and top.max() >= pop.size:
        raise ValueError(f"item index {int(top.max())} out of range for {pop.size} items")
    looked_up = pop[np.where(valid, top, 0)] if pop.size else np.zeros(top.shape)
    values = np.where(valid, looked_up, 0.0)
    count = valid.sum(axis=1)
    return np.divide(values.sum(axis=1), count, out=np.zeros(top.shape[0]), where=count > 0)


# ------------------------------------------------------------------ pairwise / scoring


def pairwise_accuracy(
    score_a: np.ndarray,
    score_b: np.ndarray,
    label: np.ndarray,
    tie_threshold: float = 0.0,
) -> np.ndarray:
    """Per-pair tie-aware accuracy (PickScore's convention): ``credit = 1 - |pred - label|``.

    ``label`` is 1.0 (a preferred), 0.0 (b preferred) or 0.5 (labelled tie). The prediction
    is ``pred = 0.5`` (tie) when ``|score_a - score_b| <= tie_threshold``, else 1.0 if
    ``score_a > score_b`` and 0.0 otherwise. Hence the rule:

    * prediction and label agree (both a, both b, or both tie): 1;
    * exactly one of prediction and label is a tie: 0.5 (half right);
    * a and b swapped: 0.

    Returns float64 ``(n_pairs,)``; the mean is the accuracy. Half credit keeps a model
    that abstains on hard pairs from being scored like one that guesses wrong.
    """
    a = np.asarray(score_a, dtype=np.float64)
    b = np.asarray(score_b, dtype=np.float64)
    lab = np.asarray(label, dtype=np.float64)
    if not (a.ndim == 1 and a.shape == b.shape == lab.shape):
        raise ValueError(
            f"score_a, score_b and label must be 1-D of equal length, got "
            f"{a.shape}, {b.shape}, {lab.shape}"
        )
    if not tie_threshold >= 0:
        raise ValueError(f"tie_threshold must be >= 0, got {tie_threshold}")
    _check_no_nan("score_a", a)
    _check_no_nan("score_b", b)
    bad = ~np.isin(lab, (0.0, 0.5, 1.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"label must be 0, 0.5 or 1; index {first} has {lab[first]}")
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinite scores, a tie
        diff = a - b
    tie = (np.abs(diff) <= tie_threshold) | (a == b)
    pred = np.where(tie, 0.5, np.where(diff > 0, 1.0, 0.0))
    return 1.0 - np.abs(pred - lab)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC = ``P(score_pos > score_neg) + 0.5 * P(score_pos == score_neg)``.

    Computed through the Mann-Whitney U statistic with average ranks for ties:
    ``AUC = (sum_{pos} rank - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)``, O(n log n) instead of
    comparing all pairs. ``labels`` are 0/1 (or bool); ValueError with a single class.
    """
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels)
    if not (s.ndim == 1 and s.shape == lab.shape):
        raise ValueError(
            f"scores and labels must be 1-D of equal length, got {s.shape}, {lab.shape}"
        )
    _check_no_nan("scores", s)
    bad = ~np.isin(lab, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be 0 or 1; index {first} has {lab[first]!r}")
    pos = lab.astype(bool)
    n_pos = int(np.count_nonzero(pos))
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positive and {n_neg} negative")
    ranks = rankdata(s, method="average")
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
