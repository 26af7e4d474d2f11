"""Rating metrics and splits for the ``preference`` track (PAMELA-style per-user ratings).

A ratings table is ``user_id, image_id, rating`` (schema table ``ratings``). A method follows
the preference protocol (docs/DESIGN.md): ``fit(train, side) -> self`` and
``score(user_ids, image_ids) -> float32[n]``; here its scores are compared with each user's
ratings by rank (Spearman, SROCC) and linearly (Pearson, PLCC), per user, then averaged over
users, as PAMELA reports them, together with pairwise accuracy over differently rated pairs.
Seen and unseen (held-out) users are reported separately, each with a 95% bootstrap interval
over users.

Every user is counted: a user with >= 2 test ratings that are not all equal is scored by all
three metrics, and one whose scores are constant gets Spearman = Pearson = 0 and pair accuracy
0.5 (the tie rule), never dropped (dropping them let a method that is constant on the hard
users report the accuracy of the easy ones). A user with < 2 test ratings or constant test
ratings has no order to predict: excluded from all three, and counted by reason in the record.

:class:`RatingSplit` mirrors :class:`benchmark.tracks.preference.track.PreferenceSplit`: per-user
train / valid / test rows, a seeded share of held-out users reachable only through
:meth:`RatingSplit.few_shot` (nested k), or the source's own split (PAMELA's
``train / val_seen / val_unseen / test_seen / test_unseen``) via :func:`rating_split_from_column`.
:func:`ratings_to_pairs` turns ratings into pairs (the higher-rated image preferred) so that
pairwise methods train and run on rating data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.metrics import pairwise_accuracy
from benchmark.per_user import (
    PAIR_COLUMNS,
    PerUserSplit,
    PreferenceMethod,
    fit_then_score,
    per_user_parts,
    per_user_side,
    read_split_folder,
)
from benchmark.protocols import SideInfo
from benchmark.results import (
    N_BOOTSTRAP,
    bootstrap_interval,
    make_record,
    record_path,
    seeded_protocol,
    write_record,
)

RATING_COLUMNS = ["user_id", "image_id", "rating"]
#: columns of a split part: the rating, "order" (rank in the user's seeded permutation) and
#: "unseen" (the user is held out)
RATING_PART_COLUMNS = [*RATING_COLUMNS, "order", "unseen"]
PARTS = ("train", "valid", "test")
#: rating records are filed under the preference track (the rating spec's ``record_track``)
TRACK = "preference"
#: why a user gets no rating metric at all: fewer than 2 test ratings, or all test ratings
#: equal (no order to predict: correlation undefined, no pair of differently rated images)
EXCLUDE_REASONS = ("fewer_than_2", "constant_rating")
#: Spearman / Pearson of a user whose scores are constant (ratings not): the method predicts
#: no association, so it is scored as no association (pair accuracy: 0.5, the tie rule)
CONSTANT_SCORE_CORRELATION = 0.0


# --------------------------------------------------------------------------------------------
# per-user correlations


@dataclass(frozen=True)
class PerUserCorrelation:
    """Correlation of each scored user, and how many users were excluded and why.

    ``user_ids`` / ``values`` / ``n`` / ``constant_score`` list the scored users (sorted by
    id): every user with >= 2 rows and ratings that are not all equal. A scored user whose
    scores are all equal has value :data:`CONSTANT_SCORE_CORRELATION` (0) and
    ``constant_score`` True. ``excluded`` counts the other users by reason
    (:data:`EXCLUDE_REASONS`, first matching reason wins).
    """

    user_ids: np.ndarray
    values: np.ndarray
    n: np.ndarray
    excluded: dict[str, int]
    constant_score: np.ndarray

    @property
    def mean(self) -> float:
        """Mean over scored users (constant-score users count as 0); nan when none is."""
        return float(self.values.mean()) if len(self.values) else float("nan")

    @property
    def n_excluded(self) -> int:
        return int(sum(self.excluded.values()))

    @property
    def n_scored(self) -> int:
        return int(len(self.values))

    @property
    def n_users(self) -> int:
        """Every user given, scored or excluded."""
        return self.n_scored + self.n_excluded

    @property
    def n_constant_score(self) -> int:
        return int(self.constant_score.sum())


def _codes(user_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of the users (sorted unique order) and those unique ids."""
    codes, uniq = pd.factorize(np.asarray(user_ids, dtype=object), sort=True)
    return codes.astype(np.int64), np.asarray(uniq, dtype=object)


def _check(user_ids: Any, y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    u = np.asarray(user_ids, dtype=object)
    if not (t.ndim == 1 and t.shape == s.shape == u.shape):
        raise ValueError(f"user_ids, y_true and y_score must be 1-D of equal length, got "
                         f"{u.shape}, {t.shape}, {s.shape}")
    if not (np.isfinite(t).all() and np.isfinite(s).all()):
        raise ValueError("ratings and scores must be finite")
    return u, t, s


def _grouped_pearson(codes: np.ndarray, n_groups: int, x: np.ndarray, y: np.ndarray,
                     uniq: np.ndarray) -> PerUserCorrelation:
    """Pearson r per group through bincount sums (x: ratings, y: scores).

    Exclusion (n < 2, constant x) and the constant-y convention are decided on exact
    ``min == max``. r is scale-free, so each group's values are first divided by a power of
    two near their largest magnitude (exact; the sums cannot overflow) and their deviations
    by the largest deviation, so any non-constant group has ``sum dx^2 >= 1`` (no 0/0). The
    deviations are centred twice (a corrected two-pass mean), so scores that differ only in
    their last digits keep their r.
    """
    n = np.bincount(codes, minlength=n_groups).astype(np.float64)

    def deviations(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(n_groups, np.inf)
        hi = np.full(n_groups, -np.inf)
        np.minimum.at(lo, codes, v)
        np.maximum.at(hi, codes, v)
        constant = lo == hi
        # divide by a power of two near the group's largest |v| (exact): sums cannot overflow
        _, exponent = np.frexp(np.maximum(np.abs(lo), np.abs(hi)))
        v = np.ldexp(v, -exponent[codes])
        mean = np.bincount(codes, weights=v, minlength=n_groups) / np.maximum(n, 1)
        d = v - mean[codes]
        # second pass: subtract the mean of the deviations (the float mean's rounding error)
        d -= (np.bincount(codes, weights=d, minlength=n_groups) / np.maximum(n, 1))[codes]
        scale = np.zeros(n_groups)
        np.maximum.at(scale, codes, np.abs(d))
        scale[constant | (scale == 0)] = 1.0
        return d / scale[codes], constant

    dx, const_x = deviations(x)
    dy, const_y = deviations(y)
    sxy = np.bincount(codes, weights=dx * dy, minlength=n_groups)
    sxx = np.bincount(codes, weights=dx * dx, minlength=n_groups)
    syy = np.bincount(codes, weights=dy * dy, minlength=n_groups)
    few = n < 2
    const_true = ~few & const_x
    keep = ~(few | const_true)
    const_score = keep & const_y
    r = np.full(n_groups, CONSTANT_SCORE_CORRELATION)
    ok = keep & ~const_score & (sxx * syy > 0)  # > 0 whenever not constant (see above)
    r[ok] = np.clip(sxy[ok] / np.sqrt(sxx[ok] * syy[ok]), -1.0, 1.0)
    return PerUserCorrelation(
        user_ids=uniq[keep], values=r[keep], n=n[keep].astype(np.int64),
        excluded={"fewer_than_2": int(few.sum()), "constant_rating": int(const_true.sum())},
        constant_score=const_score[keep])


def pearson_per_user(user_ids: Any, y_true: Any, y_score: Any) -> PerUserCorrelation:
    """Pearson correlation (PLCC) of scores with ratings, one per user.

    For user u with rows i = 1..n_u: ``r_u = sum_i (t_i - t̄)(s_i - s̄) /
    sqrt(sum_i (t_i - t̄)^2 · sum_i (s_i - s̄)^2)``. Every user with n_u >= 2 and ratings not
    all equal is scored; if their scores are all equal (``s_i = s̄``: the formula is 0/0) then
    ``r_u = 0`` (:data:`CONSTANT_SCORE_CORRELATION`: no linear association is predicted) and
    the user is flagged ``constant_score``. Users with n_u < 2 or constant ratings have no
    order to predict: excluded and counted by reason in ``excluded``. The reported figure is
    ``(1/|U|) sum_{u in U} r_u`` over the scored users U (:attr:`PerUserCorrelation.mean`).
    """
    u, t, s = _check(user_ids, y_true, y_score)
    codes, uniq = _codes(u)
    return _grouped_pearson(codes, len(uniq), t, s, uniq)


def group_ranks(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; ties share the mean of their positions) within each group."""
    return (pd.Series(values).groupby(codes, sort=False).rank(method="average")
            .to_numpy(np.float64))


def spearman_per_user(user_ids: Any, y_true: Any, y_score: Any) -> PerUserCorrelation:
    """Spearman rank correlation (SROCC) of scores with ratings, one per user.

    ``rho_u = Pearson(rank(t), rank(s))`` over the user's rows, ranks averaged over ties
    (equal to ``1 - 6 sum d_i^2 / (n (n^2 - 1))`` when there are no ties; the tie-corrected
    form otherwise, as ``scipy.stats.spearmanr``). Partly tied scores are ranked that way
    too (defined whenever not all scores are equal). All scores equal: ``rho_u = 0``; users
    with n_u < 2 or constant ratings excluded; both as :func:`pearson_per_user` (a rank is
    constant exactly when the value is).
    """
    u, t, s = _check(user_ids, y_true, y_score)
    codes, uniq = _codes(u)
    return _grouped_pearson(codes, len(uniq), group_ranks(codes, t), group_ranks(codes, s),
                            uniq)


def pair_accuracy_per_user(user_ids: Any, y_true: Any, y_score: Any,
                           max_pairs_per_user: int | None = None, seed: int = 0
                           ) -> pd.DataFrame:
    """Per-user pairwise accuracy over the user's pairs of differently rated images.

    ``acc_u = (1/|P_u|) sum_{(i, j) in P_u} credit_ij`` over P_u, the user's pairs with
    ``t_i != t_j`` (pairs of equal ratings are dropped, as ``ratings_to_pairs(ties="drop")``
    drops them for training; at most ``max_pairs_per_user`` of them, a seeded sample), with
    :func:`benchmark.metrics.pairwise_accuracy`'s tie rule at threshold 0: credit 1 when
    ``sign(s_i - s_j) = sign(t_i - t_j)``, 0.5 when ``s_i = s_j``, 0 otherwise. A user with
    constant scores therefore gets exactly 0.5. Columns ``user_id, pair_accuracy, n_pairs``;
    users without such a pair (n_u < 2 or constant ratings: exactly the users
    :func:`spearman_per_user` excludes) are absent.
    """
    if max_pairs_per_user is not None and max_pairs_per_user < 1:
        raise ValueError(f"max_pairs_per_user must be >= 1 or None, got {max_pairs_per_user}")
    u, t, s = _check(user_ids, y_true, y_score)
    frame = pd.DataFrame({"user_id": u, "image_id": np.arange(len(u)), "rating": t})
    pairs = ratings_to_pairs(frame, ties="drop", max_pairs_per_user=max_pairs_per_user,
                             seed=seed)
    if len(pairs) == 0:
        return pd.DataFrame({"user_id": np.array([], dtype=object),
                             "pair_accuracy": np.array([], dtype=np.float64),
                             "n_pairs": np.array([], dtype=np.int64)})
    a = pairs["image_a"].to_numpy(np.int64)
    b = pairs["image_b"].to_numpy(np.int64)
    credit = pairwise_accuracy(s[a], s[b], pairs["label"].to_numpy(float), 0.0)
    return (pd.DataFrame({"user_id": pairs["user_id"].to_numpy(object), "c": credit})
            .groupby("user_id", sort=True)
            .agg(pair_accuracy=("c", "mean"), n_pairs=("c", "size")).reset_index())


# --------------------------------------------------------------------------------------------
# ratings -> pairs


def ratings_to_pairs(ratings: pd.DataFrame, *, ties: str = "drop",
                     max_pairs_per_user: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Every within-user pair of rated images as a preference pair (higher rating preferred).

    Rows of each user are put in a seeded random order; for positions i < j the pair is
    ``(image_a = row i, image_b = row j)`` with label 1 if ``r_i > r_j``, 0 if ``r_i < r_j``,
    and 0.5 for equal ratings (``ties="keep"``; ``ties="drop"`` leaves them out). The random
    order keeps labels balanced. ``max_pairs_per_user`` keeps a seeded sample of each user's
    pairs. Returns ``PAIR_COLUMNS``. Memory is sum_u n_u (n_u - 1) / 2 pairs before the cap.
    """
    if ties not in ("drop", "keep"):
        raise ValueError(f"ties must be 'drop' or 'keep', got {ties!r}")
    missing = [c for c in RATING_COLUMNS if c not in ratings]
    if missing:
        raise DataError(f"ratings lack columns {missing}",
                        rule=f"ratings have columns {RATING_COLUMNS}")
    rng = np.random.default_rng(seed)
    codes, uniq = _codes(ratings["user_id"].to_numpy(object))
    order = np.lexsort((rng.random(len(codes)), codes))
    codes = codes[order]
    images = ratings["image_id"].to_numpy(object)[order]
    rating = ratings["rating"].to_numpy(np.float64)[order]
    n = np.bincount(codes, minlength=len(uniq))
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    # all i < j within each user: enumerate pair k of user u as (i, j) via triangular numbers
    m = n * (n - 1) // 2
    total = int(m.sum())
    pair_user = np.repeat(np.arange(len(uniq)), m)
    k = np.arange(total) - np.repeat(np.concatenate([[0], np.cumsum(m)[:-1]]), m)
    # j = floor((1 + sqrt(1 + 8k)) / 2), i = k - j (j - 1) / 2  (pairs listed by j, then i)
    j = np.floor((1 + np.sqrt(1 + 8 * k.astype(np.float64))) / 2).astype(np.int64)
    j -= (j * (j - 1) // 2 > k)
    j += ((j + 1) * j // 2 <= k)
    i = k - j * (j - 1) // 2
    ia, ib = start[pair_user] + i, start[pair_user] + j
    ra, rb = rating[ia], rating[ib]
    label = np.where(ra > rb, 1.0, np.where(ra < rb, 0.0, 0.5))
    keep = label != 0.5 if ties == "drop" else np.ones(total, bool)
    ia, ib, label, pair_user = ia[keep], ib[keep], label[keep], pair_user[keep]
    if max_pairs_per_user is not None and len(ia):
        key = rng.random(len(ia))
        o = np.lexsort((key, pair_user))
        pu = pair_user[o]
        first = np.searchsorted(pu, pu, side="left")
        rank = np.arange(len(pu)) - first
        sel = np.sort(o[rank < max_pairs_per_user])
        ia, ib, label, pair_user = ia[sel], ib[sel], label[sel], pair_user[sel]
    return pd.DataFrame({"user_id": uniq[pair_user], "image_a": images[ia],
                         "image_b": images[ib], "label": label})[PAIR_COLUMNS]


# --------------------------------------------------------------------------------------------
# splits


class RatingSplit(PerUserSplit):
    """Per-user train / valid / test ratings (``RATING_COLUMNS``), plus held-out users.

    :meth:`few_shot` follows the preference split's ``few_shot``; with a
    source split (PAMELA) unseen users have no training rows, so every k gives them nothing.
    """

    columns: ClassVar[list[str]] = RATING_COLUMNS


def _clean_ratings(frame: pd.DataFrame, source: str = "<ratings>") -> pd.DataFrame:
    missing = [c for c in RATING_COLUMNS if c not in frame]
    if missing:
        raise DataError(f"ratings lack columns {missing}", path=source,
                        rule=f"ratings have columns {RATING_COLUMNS}")
    out = pd.DataFrame({c: frame[c].astype(str).to_numpy(dtype=object)
                        for c in ("user_id", "image_id")})
    out["rating"] = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(out["rating"].to_numpy()))
    if len(bad):
        raise DataError(f"rating {frame['rating'].iloc[bad[0]]!r} is not a finite number",
                        path=source, row=int(bad[0]) + 1, rule="ratings are numbers")
    for c in ("order", "unseen", "split"):
        if c in frame:
            out[c] = frame[c].to_numpy()
    return out


def rating_fingerprint(parts: dict[str, pd.DataFrame]) -> str:
    """sha256 of the byte-sorted lines ``part\\tgroup\\tuser_id\\timage_id\\trating\\n``.

    ``group`` is ``seen`` or ``unseen``; ``rating`` is written with ``repr(float)``.
    """
    lines: list[bytes] = []
    for name in PARTS:
        f = parts[name]
        groups = np.where(f["unseen"].to_numpy(bool), "unseen", "seen")
        for g, u, i, r in zip(groups, f["user_id"], f["image_id"], f["rating"].astype(float),
                              strict=True):
            lines.append(f"{name}\t{g}\t{u}\t{i}\t{r!r}\n".encode())
    lines.sort()
    return hashlib.sha256(b"".join(lines)).hexdigest()


def _finish(parts: dict[str, pd.DataFrame], protocol: str, params: dict[str, Any],
            dataset: str | None) -> RatingSplit:
    users = pd.concat([p["user_id"] for p in parts.values()]).unique()
    unseen = pd.concat([p.loc[p["unseen"], "user_id"] for p in parts.values()]).unique()
    meta = {
        "track": TRACK,
        "protocol": protocol,
        "params": params,
        "counts": {name: len(p) for name, p in parts.items()}
        | {"users": len(users), "unseen_users": len(unseen)},
        "dataset": dataset,
        "fingerprint": rating_fingerprint(parts),
    }
    return RatingSplit(**parts, meta=meta)


def _ratings_of(source: Dataset | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, Dataset):
        return _clean_ratings(source.table("ratings"), str(source.path / "ratings.parquet"))
    return _clean_ratings(source)


def make_rating_split(
    source: Dataset | pd.DataFrame,
    *,
    valid_ratio: float = 0.2,
    test_ratio: float = 0.2,
    unseen_ratio: float = 0.2,
    min_ratings: int = 5,
    seed: int = 0,
) -> RatingSplit:
    """Seeded per-user split of the ratings (the rule of ``make_preference_split``).

    Users with fewer than ``min_ratings`` ratings are dropped; each user's rows are permuted;
    the last ``max(1, round(test_ratio n))`` are test, the ``max(1, round(valid_ratio n))``
    before them valid, the rest train. A seeded ``unseen_ratio`` share of users is held out.
    """
    if not (0 < valid_ratio < 1 and 0 < test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise ValueError("valid_ratio and test_ratio must lie in (0, 1) and sum below 1")
    if not 0 <= unseen_ratio < 1:
        raise ValueError(f"unseen_ratio must lie in [0, 1), got {unseen_ratio}")
    frame, part, _, _ = per_user_parts(_ratings_of(source)[RATING_COLUMNS], RATING_COLUMNS,
                                       min_ratings, valid_ratio, test_ratio, unseen_ratio, seed)
    parts = {name: frame.loc[part == name, RATING_PART_COLUMNS].reset_index(drop=True)
             for name in PARTS}
    params = {"valid_ratio": valid_ratio, "test_ratio": test_ratio,
              "unseen_ratio": unseen_ratio, "min_ratings": min_ratings, "seed": seed}
    return _finish(parts, "per-user-ratings", params,
                   source.name if isinstance(source, Dataset) else None)


#: a source split name -> (part, unseen)
SOURCE_SPLITS: dict[str, tuple[str, bool]] = {
    "train": ("train", False),
    "val_seen": ("valid", False),
    "val_unseen": ("valid", True),
    "test_seen": ("test", False),
    "test_unseen": ("test", True),
}


def rating_split_from_column(source: Dataset | pd.DataFrame, column: str = "split",
                             seed: int = 0) -> RatingSplit:
    """The source's own split (PAMELA): ``column`` holds one of :data:`SOURCE_SPLITS`.

    ``val_*`` rows are valid, ``test_*`` rows test; ``*_unseen`` users are flagged unseen.
    ``order`` is a seeded per-user permutation rank (for few-shot views).
    """
    if isinstance(source, Dataset):
        path = str(source.path / "ratings.parquet")
        frame = _clean_ratings(source.arrow("ratings").to_pandas(), path)
    else:
        path = "<ratings>"
        frame = _clean_ratings(source)
    if column not in frame:
        raise DataError(f"ratings have no {column!r} column", path=path,
                        rule="a source split needs the split of each row")
    names = frame[column].astype(str).to_numpy(object)
    bad = np.flatnonzero(~np.isin(names, list(SOURCE_SPLITS)))
    if len(bad):
        raise DataError(f"unknown split {names[bad[0]]!r}", path=path, row=int(bad[0]) + 1,
                        rule=f"split is one of {list(SOURCE_SPLITS)}")
    rng = np.random.default_rng(seed)
    # canonical row order first, so the seeded permutation does not depend on file order
    frame = frame.sort_values(["user_id", "image_id", "rating", column], kind="stable")
    frame["_key"] = rng.random(len(frame))
    frame = frame.sort_values(["user_id", "_key"], kind="stable").reset_index(drop=True)
    names = frame[column].astype(str).to_numpy(object)
    part = np.array([SOURCE_SPLITS[s][0] for s in SOURCE_SPLITS])[
        pd.Index(list(SOURCE_SPLITS)).get_indexer(names)]
    frame["unseen"] = np.char.endswith(names.astype(str), "_unseen")
    frame["order"] = frame.groupby("user_id", sort=False).cumcount().to_numpy(np.int64)
    parts = {name: frame.loc[part == name, RATING_PART_COLUMNS].reset_index(drop=True)
             for name in PARTS}
    return _finish(parts, f"source-{column}", {"column": column, "seed": seed},
                   source.name if isinstance(source, Dataset) else None)


def load_rating_split(path: str | os.PathLike) -> RatingSplit:
    """Read a folder written by :meth:`RatingSplit.save`; refuses edited rows."""
    return read_split_folder(path, RatingSplit, _clean_ratings, rating_fingerprint, "rating")


# --------------------------------------------------------------------------------------------
# evaluation


def _score(method: PreferenceMethod, frame: pd.DataFrame) -> np.ndarray:
    if len(frame) == 0:
        return np.zeros(0)
    s = np.asarray(method.score(frame["user_id"].to_numpy(object),
                                frame["image_id"].to_numpy(object)), dtype=np.float64)
    if s.shape != (len(frame),):
        raise ValueError(f"score must return shape ({len(frame)},), got {s.shape}")
    return s


def _rating_metrics(users: np.ndarray, t: np.ndarray, s: np.ndarray, max_pairs: int | None,
                    seed: int) -> tuple[dict[str, float], pd.DataFrame, dict[str, Any]]:
    """The three metrics over one group of users, the per-user frame and the user counts.

    The three metrics score the same users (n >= 2 ratings, not all equal), so one
    ``n_users_scored`` holds for all of them.
    """
    sp = spearman_per_user(users, t, s)
    pe = pearson_per_user(users, t, s)
    acc = pair_accuracy_per_user(users, t, s, max_pairs, seed)
    per_user = pd.DataFrame({"user_id": sp.user_ids, "spearman": sp.values,
                             "pearson": pe.values, "n_ratings": sp.n,
                             "constant_score": sp.constant_score})
    per_user = per_user.merge(acc, on="user_id", how="left")
    if len(acc) != len(per_user) or per_user["pair_accuracy"].isna().any():
        raise RuntimeError("pair accuracy and correlations scored different users")
    metrics = {"spearman": sp.mean, "pearson": pe.mean,
               "pair_accuracy": float(per_user["pair_accuracy"].mean())
               if len(per_user) else float("nan")}
    counts = {"n_users": sp.n_users, "n_users_scored": sp.n_scored,
              "n_users_excluded": sp.n_excluded, "excluded": dict(sp.excluded),
              "n_users_constant_score": sp.n_constant_score}
    return metrics, per_user, counts


def evaluate_ratings(
    method: PreferenceMethod,
    split: RatingSplit,
    k: int | str = "all",
    *,
    side: SideInfo | None = None,
    dataset: Dataset | None = None,
    method_name: str | None = None,
    results_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
    who: str = "unseen",
    fit_on: str = "pairs",
    max_pairs_per_user: int | None = 1000,
) -> dict[str, Any]:
    """Fit ``method`` on ``split.few_shot(k)``, score the test ratings, correlate per user.

    ``fit_on="pairs"`` trains on :func:`ratings_to_pairs` of the training ratings (any
    pairwise method runs); ``"ratings"`` passes the ratings frame itself. The training
    ratings are also in ``side.extra["train_ratings"]``. Metrics, each the mean over users
    of a per-user value, for all / ``_seen`` / ``_unseen`` users with a 95% bootstrap
    interval over users: ``spearman`` (SROCC), ``pearson`` (PLCC), ``pair_accuracy``
    (:func:`pair_accuracy_per_user`, at most ``max_pairs_per_user`` seeded pairs per user).

    Every user with >= 2 test ratings that are not all equal is scored by all three metrics;
    a user the method gives constant scores counts as Spearman = Pearson = 0 and pair
    accuracy 0.5 (flagged ``constant_score``). Users with < 2 test ratings or constant test
    ratings have no order to predict: excluded, and counted by reason. The record carries
    ``n_users`` (users with test ratings), ``n_users_scored`` (= ``n_users_evaluated``, the
    same for every metric), ``n_users_excluded`` and ``n_users_excluded_<reason>``,
    ``n_users_constant_score``, and per group (all / seen / unseen) ``user_counts`` and
    ``excluded_users``. Returns ``metrics``, ``intervals``, ``per_user``, ``excluded``
    (group -> reason -> count), ``user_counts``, ``record`` and ``path``.
    """
    if fit_on not in ("pairs", "ratings"):
        raise ValueError(f"fit_on must be 'pairs' or 'ratings', got {fit_on!r}")
    side, dataset = per_user_side(method, method_name, side, dataset, seed)
    train_ratings = split.few_shot(k, who=who)
    side.extra["train_ratings"] = train_ratings
    train = (ratings_to_pairs(train_ratings, ties="drop", seed=seed,
                              max_pairs_per_user=max_pairs_per_user)
             if fit_on == "pairs" else train_ratings)
    test = split.test
    scores, timing = fit_then_score(method, train, side, lambda: _score(method, test))
    users = test["user_id"].to_numpy(object)
    truth = test["rating"].to_numpy(np.float64)
    unseen = test["unseen"].to_numpy(bool)
    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    user_counts: dict[str, dict[str, Any]] = {}
    per_user_parts = []
    for suffix, mask in (("_seen", ~unseen), ("_unseen", unseen), ("", None)):
        m = np.ones(len(test), bool) if mask is None else mask
        if not m.any():
            continue
        values, per_user, group_counts = _rating_metrics(users[m], truth[m], scores[m],
                                                         max_pairs_per_user, seed)
        user_counts[suffix.lstrip("_") or "all"] = group_counts
        for name, v in values.items():
            metrics[name + suffix] = v
            col = per_user[name].to_numpy(float)
            lo, hi = bootstrap_interval(col[np.isfinite(col)], n_boot=n_boot, seed=seed)
            intervals[name + suffix] = [round(lo, 8), round(hi, 8)]
        if mask is not None:
            per_user_parts.append(per_user.assign(unseen=suffix == "_unseen"))
    per_user = (pd.concat(per_user_parts, ignore_index=True).sort_values("user_id")
                .reset_index(drop=True) if per_user_parts else
                pd.DataFrame(columns=["user_id", "spearman", "pearson", "n_ratings",
                                      "constant_score", "pair_accuracy", "n_pairs", "unseen"]))
    excluded = {g: c["excluded"] for g, c in user_counts.items()}
    every = user_counts.get("all", {"n_users": 0, "n_users_scored": 0, "n_users_excluded": 0,
                                    "excluded": dict.fromkeys(EXCLUDE_REASONS, 0),
                                    "n_users_constant_score": 0})
    unseen_counts = user_counts.get("unseen", {"n_users": 0, "n_users_scored": 0})
    name = method_name or str(getattr(method, "name", type(method).__name__))
    params = method.get_params() if hasattr(method, "get_params") else {}
    record = make_record(
        track=TRACK,
        dataset={"name": dataset.name if dataset is not None
                 else str(split.meta.get("dataset") or "ratings")},
        split={"protocol": seeded_protocol(split.meta.get("protocol", "per-user-ratings"), seed)
               + f"-k{k}",
               "fingerprint": split.fingerprint, "k": k, "few_shot_users": who,
               "params": split.meta.get("params", {}), "fit_on": fit_on},
        method={"name": name, "class": f"{type(method).__module__}:{type(method).__qualname__}",
                "params": params},
        summary={m: v for m, v in metrics.items() if np.isfinite(v)},
        per_user={c: per_user[c].to_numpy(float) for c in ("spearman", "pearson")},
        user_ids=per_user["user_id"].tolist(),
        counts={"n_users": every["n_users"], "n_users_scored": every["n_users_scored"],
                "n_users_evaluated": every["n_users_scored"],
                "n_users_excluded": every["n_users_excluded"],
                **{f"n_users_excluded_{reason}": n for reason, n in every["excluded"].items()},
                "n_users_constant_score": every["n_users_constant_score"],
                "n_users_unseen": unseen_counts["n_users"],
                "n_users_scored_unseen": unseen_counts["n_users_scored"],
                "n_ratings_train": int(len(train_ratings)), "n_ratings_test": int(len(test))},
        seed=seed,
        timing=timing,
    )
    record["intervals"] = intervals
    record["interval_method"] = (f"percentile bootstrap over users, {n_boot} resamples, 95%")
    record["excluded_users"] = excluded
    record["user_counts"] = user_counts
    record["per_user"]["pair_accuracy"] = [round(float(v), 8) if np.isfinite(v) else None
                                           for v in per_user["pair_accuracy"].to_numpy(float)]
    record["per_user"]["unseen"] = per_user["unseen"].astype(bool).tolist()
    record["per_user"]["constant_score"] = per_user["constant_score"].astype(bool).tolist()
    path = None
    if results_dir is not None:
        path = write_record(record, record_path(results_dir, record))
    return {"metrics": metrics, "intervals": intervals, "per_user": per_user,
            "excluded": excluded, "user_counts": user_counts, "record": record, "path": path}
