"""The ``preference`` track: which of two images does this user prefer?

A :class:`PreferenceSplit` splits a data set's ``preferences`` table (``user_id, image_a,
image_b, label``; label 1 = a preferred, 0 = b, 0.5 = tie) per user into train / valid / test.
A seeded share of users is held out ("unseen"): none of their pairs are in the training set;
:meth:`PreferenceSplit.few_shot` lends a method k of their training judgements (nested:
the k=5 set is a subset of the k=10 set). Their valid/test pairs are the same for every k, so
the accuracy-vs-k curve compares like with like.

A method follows the preference protocol (docs/DESIGN.md): ``fit(train_pairs, side) -> self``
and ``score(user_ids, image_ids) -> float32[n]``, the utility of each image for its user;
pair i is judged by ``d_i = s(u_i, a_i) - s(u_i, b_i)``, ``p(a) = sigmoid(d_i)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.params import build
from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.metrics import auc, pairwise_accuracy
from benchmark.per_user import (  # noqa: F401  (the shared pieces, importable from here too)
    PAIR_COLUMNS,
    PARTS,
    PerUserSplit,
    PreferenceMethod,
    fit_then_score,
    one_blas_thread,
    per_user_parts,
    per_user_side,
    read_split_folder,
)
from benchmark.protocols import SideInfo
from benchmark.results import N_BOOTSTRAP, make_record, record_path, seeded_protocol, write_record
from benchmark.views import preference_view, side_for

TRACK = "preference"
#: columns of a split part: the pair, "order" (rank in the user's seeded permutation) and
#: "unseen" (the user is held out)
PART_COLUMNS = [*PAIR_COLUMNS, "order", "unseen"]
DEFAULT_KS: tuple[int | str, ...] = (0, 5, 10, 20, "all")
DEFAULT_ENCODER = "synthetic-clip"


class PreferenceSplit(PerUserSplit):
    """Per-user train / valid / test pairs (``PAIR_COLUMNS``), plus held-out users."""


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: frame[c].astype(str).to_numpy(dtype=object)
                        for c in ("user_id", "image_a", "image_b")})
    out["label"] = frame["label"].to_numpy(dtype=np.float64)
    for c in ("order", "unseen"):
        if c in frame:
            out[c] = frame[c].to_numpy()
    return out


def preference_fingerprint(parts: dict[str, pd.DataFrame]) -> str:
    """sha256 of the byte-sorted lines ``part\\tgroup\\tuser_id\\timage_a\\timage_b\\tlabel\\n``.

    ``group`` is ``seen`` or ``unseen``; ``label`` is written with ``repr(float)`` (``1.0``).
    """
    lines: list[bytes] = []
    for name in PARTS:
        f = parts[name]
        groups = np.where(f["unseen"].to_numpy(bool), "unseen", "seen")
        for g, u, a, b, lab in zip(groups, f["user_id"], f["image_a"], f["image_b"],
                                   f["label"].astype(float), strict=True):
            lines.append(f"{name}\t{g}\t{u}\t{a}\t{b}\t{lab!r}\n".encode())
    lines.sort()
    return hashlib.sha256(b"".join(lines)).hexdigest()


def make_preference_split(
    source: Dataset | pd.DataFrame,
    *,
    valid_ratio: float = 0.2,
    test_ratio: float = 0.2,
    unseen_ratio: float = 0.2,
    min_pairs: int = 5,
    seed: int = 0,
) -> PreferenceSplit:
    """Seeded per-user split of the preference pairs.

    Users with fewer than ``min_pairs`` pairs are dropped. Each user's pairs are permuted
    (seeded); with n pairs the last ``max(1, round(test_ratio n))`` are test, the
    ``max(1, round(valid_ratio n))`` before them valid, the rest train (``order`` = rank in the
    permutation). A seeded ``unseen_ratio`` share of users is held out: their train part is
    only reachable through :meth:`PreferenceSplit.few_shot`.
    """
    if not (0 < valid_ratio < 1 and 0 < test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise ValueError("valid_ratio and test_ratio must lie in (0, 1) and sum below 1")
    if not 0 <= unseen_ratio < 1:
        raise ValueError(f"unseen_ratio must lie in [0, 1), got {unseen_ratio}")
    frame = source.table("preferences", PAIR_COLUMNS) if isinstance(source, Dataset) else source
    missing = [c for c in PAIR_COLUMNS if c not in frame]
    if missing:
        raise DataError(f"preference pairs lack columns {missing}",
                        rule=f"pairs have columns {PAIR_COLUMNS}")
    frame, part, users, n_unseen = per_user_parts(
        _clean(frame), PAIR_COLUMNS, min_pairs, valid_ratio, test_ratio, unseen_ratio, seed)
    parts = {name: frame.loc[part == name, PART_COLUMNS].reset_index(drop=True)
             for name in PARTS}
    meta = {
        "track": TRACK,
        "protocol": "per-user-pairs",
        "params": {"valid_ratio": valid_ratio, "test_ratio": test_ratio,
                   "unseen_ratio": unseen_ratio, "min_pairs": min_pairs, "seed": seed},
        "counts": {name: len(p) for name, p in parts.items()}
        | {"users": len(users), "unseen_users": n_unseen},
        "dataset": source.name if isinstance(source, Dataset) else None,
        "fingerprint": preference_fingerprint(parts),
    }
    return PreferenceSplit(**parts, meta=meta)


def load_preference_split(path: str | os.PathLike) -> PreferenceSplit:
    """Read a folder written by :meth:`PreferenceSplit.save`; refuses edited rows."""
    return read_split_folder(path, PreferenceSplit, lambda frame, _: _clean(frame),
                             preference_fingerprint, "preference")


# --------------------------------------------------------------------------------------------
# evaluation


def pair_scores(method: PreferenceMethod, pairs: pd.DataFrame) -> np.ndarray:
    """``d = s(u, a) - s(u, b)`` for every pair (float64)."""
    if len(pairs) == 0:
        return np.zeros(0)
    users = pairs["user_id"].to_numpy(dtype=object)
    both = method.score(np.concatenate([users, users]),
                        np.concatenate([pairs["image_a"].to_numpy(dtype=object),
                                        pairs["image_b"].to_numpy(dtype=object)]))
    both = np.asarray(both, dtype=np.float64)
    if both.shape != (2 * len(pairs),):
        raise ValueError(f"score must return shape ({2 * len(pairs)},), got {both.shape}")
    return both[: len(pairs)] - both[len(pairs):]


def tune_tie_threshold(diff: np.ndarray, label: np.ndarray,
                       quantiles: Iterable[float] = (0.01, 0.02, 0.05, 0.1, 0.2)) -> float:
    """Tie threshold t maximising valid accuracy over ``{0} ∪ quantiles of |d|``.

    Ties are broken toward the smaller t, so t = 0 (no predicted ties) unless ties pay off.
    """
    if len(diff) == 0:
        return 0.0
    grid = [0.0, *np.quantile(np.abs(diff), list(quantiles)).tolist()]
    zeros = np.zeros_like(diff)
    acc = [pairwise_accuracy(diff, zeros, label, t).mean() for t in grid]
    return float(grid[int(np.argmax(acc))])


def _auc(diff: np.ndarray, label: np.ndarray) -> float:
    """AUC of d vs label over the non-tie labels; nan with a single class."""
    hard = label != 0.5
    try:
        return auc(diff[hard], label[hard].astype(int))
    except ValueError:
        return float("nan")


def _pair_metrics(diff: np.ndarray, label: np.ndarray, users: np.ndarray, t: float
                  ) -> dict[str, float]:
    acc = pairwise_accuracy(diff, np.zeros_like(diff), label, t)
    plain = pairwise_accuracy(diff, np.zeros_like(diff), label, 0.0)
    codes = users if users.dtype.kind in "iu" else pd.factorize(users)[0]
    n = np.bincount(codes)
    per_user = np.bincount(codes, weights=acc)[n > 0] / n[n > 0]
    return {"accuracy": float(acc.mean()), "accuracy_plain": float(plain.mean()),
            "user_accuracy": float(per_user.mean()), "auc": _auc(diff, label)}


def _weighted_auc(diff: np.ndarray, label: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of d vs label for each row of pair ``weights`` (n_draws, n_pairs), non-tie labels.

    ``AUC_b = sum_{i pos} w_bi (N_b(d < d_i) + N_b(d == d_i) / 2) / (W_b,pos W_b,neg)``, where
    ``N_b`` sums the weights of negative pairs; with 0/1 weights it is :func:`_auc`. nan where a
    draw has one class only.
    """
    hard = label != 0.5
    d, pos, w = diff[hard], label[hard] > 0.5, weights[:, hard]
    if d.size == 0:
        return np.full(len(weights), np.nan)
    order = np.argsort(d, kind="stable")
    d, pos, w = d[order], pos[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])  # tie groups of equal d
    group = np.cumsum(np.r_[True, d[1:] != d[:-1]]) - 1
    neg_in_group = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_in_group, axis=1) - neg_in_group
    credit = (w * pos * (neg_below[:, group] + 0.5 * neg_in_group[:, group])).sum(axis=1)
    w_pos, w_neg = (w * pos).sum(axis=1), (w * ~pos).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w_pos > 0) & (w_neg > 0), credit / (w_pos * w_neg), np.nan)


def _cluster_bootstrap(diff: np.ndarray, label: np.ndarray, users: np.ndarray, t: float,
                       n_boot: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals of every pair metric, resampling users with replacement.

    Vectorised: draw b picks each user ``c_bu`` times, so every pair of user u carries weight
    ``c_bu`` and a repeated user counts twice in ``user_accuracy`` (the resampled users are
    distinct clusters). Same draws and values as resampling the pairs one draw at a time.
    """
    codes, uniq = pd.factorize(users)
    n_users = len(uniq)
    if n_users == 0:
        return {}
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.integers(0, n_users, n_users) for _ in range(n_boot)])
    copies = np.zeros((n_boot, n_users))
    np.add.at(copies, (np.repeat(np.arange(n_boot), n_users), picks.ravel()), 1.0)
    n_pairs = np.bincount(codes, minlength=n_users).astype(np.float64)
    zeros = np.zeros_like(diff)
    draws: dict[str, np.ndarray] = {}
    for name, t_used in (("accuracy", t), ("accuracy_plain", 0.0)):
        credit = np.bincount(codes, weights=pairwise_accuracy(diff, zeros, label, t_used),
                             minlength=n_users)
        draws[name] = copies @ credit / (copies @ n_pairs)
        if name == "accuracy":
            draws["user_accuracy"] = copies @ (credit / n_pairs) / n_users
    block = max(1, (1 << 22) // max(1, len(diff)))  # draws per block: ~32 MB of weights
    draws["auc"] = np.concatenate([_weighted_auc(diff, label, copies[b:b + block, codes])
                                   for b in range(0, n_boot, block)])
    out = {}
    for name in ("accuracy", "accuracy_plain", "user_accuracy", "auc"):
        v = draws[name][~np.isnan(draws[name])]
        out[name] = ([round(float(x), 8) for x in np.quantile(v, [0.025, 0.975])]
                     if len(v) else [float("nan"), float("nan")])
    return out


def evaluate_preference(
    method: PreferenceMethod,
    split: PreferenceSplit,
    k: int | str = "all",
    *,
    side: SideInfo | None = None,
    dataset: Dataset | None = None,
    method_name: str | None = None,
    results_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
    who: str = "unseen",
) -> dict[str, Any]:
    """Fit ``method`` on ``split.few_shot(k)``, tune the tie threshold on valid, score test.

    Metrics over the test pairs (``d = s(u,a) - s(u,b)``, tie threshold t from valid):
    ``accuracy`` = mean tie-aware credit ``1 - |pred_t(d) - label|``; ``accuracy_plain`` the
    same with t = 0; ``user_accuracy`` = mean over users of the user's accuracy; ``auc`` = AUC
    of d vs label (non-tie labels). Each also for ``_seen`` and ``_unseen`` users, each with a
    95% bootstrap interval over users. Returns a dict with ``metrics``, ``intervals``,
    ``per_user`` (DataFrame), ``tie_threshold``, ``record`` and ``path`` (when
    ``results_dir`` is given, the record is written there).
    """
    side, dataset = per_user_side(method, method_name, side, dataset, seed)
    train = split.few_shot(k, who=who)
    test = split.test

    def score() -> tuple[float, np.ndarray]:
        tie = tune_tie_threshold(pair_scores(method, split.valid),
                                 split.valid["label"].to_numpy(float))
        return tie, pair_scores(method, test)

    (tie, diff), timing = fit_then_score(method, train, side, score)
    label = test["label"].to_numpy(float)
    users = test["user_id"].to_numpy(dtype=object)
    unseen = test["unseen"].to_numpy(bool)
    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    for suffix, mask in (("", np.ones(len(test), bool)), ("_seen", ~unseen),
                         ("_unseen", unseen)):
        if not mask.any():
            continue
        for name, v in _pair_metrics(diff[mask], label[mask], users[mask], tie).items():
            metrics[name + suffix] = v
        boot = _cluster_bootstrap(diff[mask], label[mask], users[mask], tie, n_boot, seed)
        for name, v in boot.items():
            intervals[name + suffix] = v
    credit = pairwise_accuracy(diff, np.zeros_like(diff), label, tie)
    plain = pairwise_accuracy(diff, np.zeros_like(diff), label, 0.0)
    per_user = (pd.DataFrame({"user_id": users, "user_accuracy": credit,
                              "user_accuracy_plain": plain, "unseen": unseen})
                .groupby("user_id", sort=True)
                .agg(user_accuracy=("user_accuracy", "mean"),
                     user_accuracy_plain=("user_accuracy_plain", "mean"),
                     unseen=("unseen", "first"), n_pairs=("unseen", "size"))
                .reset_index())
    name = method_name or str(getattr(method, "name", type(method).__name__))
    params = method.get_params() if hasattr(method, "get_params") else {}
    metrics = {m: (v if np.isfinite(v) else float("nan")) for m, v in metrics.items()}
    record = make_record(
        track=TRACK,
        dataset=dataset_info(dataset) if dataset is not None
        else {"name": str(split.meta.get("dataset") or "pairs")},
        split={"protocol": seeded_protocol(split.meta.get("protocol", "per-user-pairs"), seed)
               + f"-k{k}",
               "fingerprint": split.fingerprint, "k": k, "few_shot_users": who,
               "params": split.meta.get("params", {})},
        method={"name": name, "class": f"{type(method).__module__}:{type(method).__qualname__}",
                "params": params},
        summary={m: v for m, v in metrics.items() if np.isfinite(v)},
        per_user={c: per_user[c].to_numpy(float)
                  for c in ("user_accuracy", "user_accuracy_plain")},
        user_ids=per_user["user_id"].tolist(),
        counts={"n_users_evaluated": int(len(per_user)), "n_users": int(len(per_user)),
                "n_users_unseen": int(per_user["unseen"].sum()),
                "n_pairs_train": int(len(train)), "n_pairs_test": int(len(test))},
        seed=seed,
        timing=timing,
        extra={"tie_threshold": tie},
    )
    record["intervals"].update(intervals)
    record["per_user"]["unseen"] = per_user["unseen"].astype(bool).tolist()
    path = None
    if results_dir is not None:
        path = write_record(record, record_path(results_dir, record))
    return {"metrics": metrics, "intervals": intervals, "per_user": per_user,
            "tie_threshold": tie, "record": record, "path": path}


def dataset_info(dataset: Dataset, absolute: bool = False) -> dict[str, Any]:
    """The record's ``dataset`` block (:meth:`benchmark.data.store.Dataset.record_block`)."""
    return dataset.record_block(absolute)


def prepare_preference_split(dataset: Dataset, data_dir: str | os.PathLike = "data",
                             seed: int = 0, **params: Any) -> PreferenceSplit:
    """The preference split of ``dataset``, cached under ``data_dir/splits`` and reused."""
    from benchmark.splits import cached_split

    return cached_split(dataset, "per-user-pairs", [seed, params], data_dir,
                        load_preference_split,
                        lambda: make_preference_split(dataset, seed=seed, **params))


def run_preference(
    dataset: Dataset,
    methods: list[str] | None = None,
    ks: Iterable[int | str] = DEFAULT_KS,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike = "data",
    results_dir: str | os.PathLike = "results",
    n_boot: int = N_BOOTSTRAP,
    echo: Callable[[str], Any] = print,
) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """Every (method, k) of the preference track on ``dataset``: one record each.

    The split protocol of a record is ``per-user-pairs-k<k>``, so each k is its own
    leaderboard table and the accuracy-vs-k curve is drawn across them. Returns (record
    paths, skipped (track, method, why)).
    """
    from benchmark.errors import NotApplicable
    from benchmark.registry import METHODS, resolve_method

    if not dataset.has_table("preferences"):
        return [], [(TRACK, "*", "the data set has no preferences table")]
    split = prepare_preference_split(dataset, data_dir, seed=seed)
    side = SideInfo(view=preference_view(dataset), item_kind="image", seed=seed)
    names = methods or [n for n, spec in METHODS.items() if spec.runs_by_default(TRACK)]
    written, skipped = [], []
    for name in names:
        display, cls = resolve_method(name, track=TRACK)
        for k in ks:
            method = build(cls, seed)
            try:
                out = evaluate_preference(method, split, k,
                                          side=side_for(display, cls, side, dataset),
                                          dataset=dataset,
                                          method_name=display, results_dir=results_dir,
                                          seed=seed, n_boot=n_boot)
            except NotApplicable as e:
                echo(f"skipped {display} on {TRACK}: {e}")
                skipped.append((TRACK, display, str(e)))
                break
            m, t = out["metrics"], out["record"]["timing_s"]
            echo(f"{TRACK:10s} {display:15s} k={k!s:4s} accuracy={m['accuracy']:.4f} "
                 f"unseen={m.get('accuracy_unseen', float('nan')):.4f} "
                 f"(fit {t['fit']:.1f}s, score {t['score']:.1f}s)")
            written.append(out["path"])
    return written, skipped


def accuracy_vs_k(
    method_factory: Callable[[], PreferenceMethod],
    split: PreferenceSplit,
    ks: Iterable[int | str] = DEFAULT_KS,
    **kwargs: Any,
) -> pd.DataFrame:
    """One row per k: every summary metric of :func:`evaluate_preference` with a fresh method.

    Columns: ``k``, the metrics (``accuracy``, ``accuracy_seen``, ``accuracy_unseen``, ...)
    and ``<metric>_low`` / ``<metric>_high`` from the bootstrap intervals.
    """
    rows = []
    for k in ks:
        out = evaluate_preference(method_factory(), split, k, **kwargs)
        row: dict[str, Any] = {"k": k, **out["metrics"], "tie_threshold": out["tie_threshold"]}
        for m, (lo, hi) in out["intervals"].items():
            row[f"{m}_low"], row[f"{m}_high"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def image_embeddings(side: SideInfo, encoder: str = DEFAULT_ENCODER
                     ) -> tuple[pd.Index, np.ndarray]:
    """(image ids, embedding matrix) for a preference method.

    ``side.extra["image_ids"]`` + ``side.extra["image_embeddings"]`` take precedence (hand-made
    data); otherwise the data set's ``embeddings/<encoder>/image.npy`` in ``ids('images')``
    order.
    """
    if "image_embeddings" in side.extra:
        ids = pd.Index(np.asarray(side.extra["image_ids"], dtype=object))
        return ids, np.asarray(side.extra["image_embeddings"], dtype=np.float32)
    if side.dataset is None:
        raise DataError("a preference baseline needs image embeddings (no data set given)")
    return side.dataset.ids("images"), side.dataset.embeddings(encoder, "image")


def lookup(ids: pd.Index, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted id in ``ids``; DataError naming the first unknown id."""
    rows = ids.get_indexer(np.asarray(wanted, dtype=object))
    if (rows < 0).any():
        bad = np.asarray(wanted, dtype=object)[int(np.flatnonzero(rows < 0)[0])]
        raise DataError(f"image {bad!r} has no embedding")
    return rows
