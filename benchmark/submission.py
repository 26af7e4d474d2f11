"""Scoring a predictions file: ``user_id,item_id,rank`` rows against a split.

Rules (each violation is one :class:`SubmissionError` naming the file, the row
— 1-based, header excluded — and the rule; nothing is written on error):

1. the file is CSV or parquet and has the columns ``user_id``, ``item_id``, ``rank``;
2. no empty values; ``rank`` is an integer;
3. every ``user_id`` is a user of the split (for the track's item kind) and every
   ``item_id`` is in the split's catalogue;
4. no (user_id, item_id) pair appears twice;
5. each user's ranks are exactly 1..n with n <= the track's max K
   (:attr:`benchmark.tasks.RankingTrack.max_k`: 100 for lora-rec and image-rec);
6. no recommended item is one of the user's training (train + valid) items.

Users of the test part that the file omits count as empty lists (all metrics 0). The
metrics (the track's defaults, or ``metrics``) are computed on each list's top K, K
being the largest cut-off asked: a code run and the same lists submitted as a file get
the same numbers, coverage@K included.

:func:`evaluate_submission` stops at the first broken rule; :func:`find_violations`
(``gembench validate``) lists every broken rule with all its rows; and
:func:`submission_record` turns a valid file into a result record (same schema
as ``gembench run``'s) for the leaderboards.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmark.errors import SubmissionError
from benchmark.evaluate import max_k, metrics_from_ranked
from benchmark.ranking_data import metrics_of, track_data
from benchmark.splits import Split
from benchmark.tasks import RankingTrack
from benchmark.views import pairs_in

COLUMNS = ("user_id", "item_id", "rank")


def _limit(track: RankingTrack, k: int | None) -> int:
    """The most rows a user may have: ``k``, else the track's ``max_k``."""
    return track.max_k if k is None else int(k)


def _too_long_rule(track: RankingTrack, k: int) -> str:
    """The rule's text; it names the track's limit when that is the one applied."""
    if k == track.max_k:
        return f"at most K={k} rows per user (the {track.name} track's max K)"
    return f"at most K={k} rows per user"


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SubmissionError("file not found", path=str(path))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"user_id": pa.string(), "item_id": pa.string()},
                    strings_can_be_null=True,
                ),
            )
        else:
            raise SubmissionError(f"unknown file type {path.suffix!r}", path=str(path),
                                  rule="a submission is .csv or .parquet")
    except (pa.ArrowInvalid, OSError) as e:
        raise SubmissionError(f"cannot parse file: {e}", path=str(path),
                              rule="CSV with a header line, or parquet") from e
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise SubmissionError(f"missing columns {missing} (found {table.column_names})",
                              path=str(path), rule=f"columns {list(COLUMNS)}")
    if table.num_rows == 0:
        raise SubmissionError("no rankings (the file has a header and no rows)", path=str(path),
                              rule="a submission ranks items for at least one user")
    return table.select(list(COLUMNS)).to_pandas()


def validate_submission(
    frame: pd.DataFrame, split: Split, track: RankingTrack, path: str = "<submission>",
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Check the rules; return (user_idx, item_idx, rank) arrays and the fit/test data.

    ``k``: the most rows per user (None: the track's ``max_k``).
    """
    k = _limit(track, k)
    fit, relevant = track_data(split, track.item_kind, "test")

    def fail(rows: np.ndarray, message: str, rule: str) -> None:
        raise SubmissionError(message, path=path, row=int(rows[0]) + 1, rule=rule)

    for col in COLUMNS:
        null = np.flatnonzero(frame[col].isna().to_numpy())
        if len(null):
            fail(null, f"empty {col}", "no empty values")
    rank = pd.to_numeric(frame["rank"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(rank) | (rank != np.round(rank)))
    if len(bad):
        fail(bad, f"rank {frame['rank'].iloc[bad[0]]!r} is not an integer", "rank is an integer")
    rank = rank.astype(np.int64)
    users = fit.user_ids.get_indexer(frame["user_id"].astype(str).to_numpy())
    bad = np.flatnonzero(users < 0)
    if len(bad):
        fail(bad, f"unknown user_id {frame['user_id'].iloc[bad[0]]!r}",
             f"user_id is a user of the split's {track.item_kind} part")
    items = fit.item_ids.get_indexer(frame["item_id"].astype(str).to_numpy())
    bad = np.flatnonzero(items < 0)
    if len(bad):
        fail(bad, f"unknown item_id {frame['item_id'].iloc[bad[0]]!r}",
             f"item_id is in the split's {track.item_kind} catalogue")
    pair = users.astype(np.int64) * fit.n_items + items
    dup = np.flatnonzero(pd.Series(pair).duplicated().to_numpy())
    if len(dup):
        fail(dup, f"duplicate row for user {frame['user_id'].iloc[dup[0]]!r}, item "
             f"{frame['item_id'].iloc[dup[0]]!r}", "one row per (user_id, item_id)")
    order = np.lexsort((rank, users))
    sizes = np.bincount(users, minlength=fit.n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    expected = np.arange(len(order)) - np.repeat(starts, sizes) + 1
    bad = order[rank[order] != expected]
    if len(bad):
        row = np.array([bad.min()])
        fail(row, f"ranks of user {frame['user_id'].iloc[row[0]]!r} are not 1..n",
             "each user's ranks are exactly 1, 2, ..., n")
    too_long = np.flatnonzero(sizes[users] > k)
    if len(too_long):
        fail(too_long, f"user {frame['user_id'].iloc[too_long[0]]!r} has "
             f"{sizes[users[too_long[0]]]} rows", _too_long_rule(track, k))
    leaked = np.flatnonzero(pairs_in(fit.matrix, users, items))
    if len(leaked):
        fail(leaked, f"item {frame['item_id'].iloc[leaked[0]]!r} is a training item of user "
             f"{frame['user_id'].iloc[leaked[0]]!r}", "never recommend a training item")
    return users, items, rank, (fit, relevant)


def score_submission(
    path: str | os.PathLike, split: Split, track: RankingTrack, k: int | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str], int]:
    """Validate and score a rankings file.

    ``k``: the most rows per user (None: the track's ``max_k``); ``metrics``: the metric
    set (None: the track's defaults; checked against the track's ``max_k`` first). Lists
    are scored on their top K, K the largest cut-off asked.

    Returns (JSON-ready result, per-user metric vectors, their user ids, number of
    split users without held-out items).
    """
    names = metrics_of(track, metrics)
    width = max_k(names)
    frame = read_submission(path)
    users, items, rank, (fit, relevant) = validate_submission(frame, split, track, str(path), k)
    test_users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    position = np.full(fit.n_users, -1, dtype=np.int64)
    position[test_users] = np.arange(len(test_users))
    ranked = np.full((len(test_users), width), -1, dtype=np.int64)
    in_test = (position[users] >= 0) & (rank <= width)
    ranked[position[users[in_test]], rank[in_test] - 1] = items[in_test]
    per_user, extra = metrics_from_ranked(ranked, relevant[test_users], names)
    submitted = np.zeros(fit.n_users, dtype=bool)
    submitted[users] = True
    result = {
        "track": track.name,
        "track_fingerprint": split.track_fingerprint(track.name),
        "split_fingerprint": split.fingerprint,
        "submission": str(path),
        "submission_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "metrics": {name: round(float(v.mean()), 8) for name, v in per_user.items()},
        "list_metrics": {n: round(v, 8) for n, v in extra.items()},
        "n_users_evaluated": int(len(test_users)),
        "n_users_missing": int((~submitted[test_users]).sum()),
        "n_rows": int(len(frame)),
    }
    user_ids = [str(u) for u in fit.user_ids[test_users]]
    return result, per_user, user_ids, int(fit.n_users - len(test_users))


def evaluate_submission(
    path: str | os.PathLike, split: Split, track: RankingTrack, k: int | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Validate and score a rankings file (stops at the first error); the JSON-ready result."""
    return score_submission(path, split, track, k, metrics)[0]


# --------------------------------------------------------------------------- validate

MAX_LISTED_ROWS = 20


@dataclass(frozen=True)
class Violation:
    """One broken rule: every offending row (1-based, header excluded) and a first example."""

    rule: str
    example: str
    rows: tuple[int, ...]

    def describe(self, limit: int = MAX_LISTED_ROWS) -> str:
        if not self.rows:
            return f"rule: {self.rule}\n  {self.example}"
        shown = ", ".join(map(str, self.rows[:limit]))
        more = f" and {len(self.rows) - limit} more" if len(self.rows) > limit else ""
        noun = "row" if len(self.rows) == 1 else "rows"
        return (f"rule: {self.rule} — {len(self.rows)} {noun}: {shown}{more}\n"
                f"  e.g. row {self.rows[0]}: {self.example}")


def find_violations(
    frame: pd.DataFrame, split: Split, track: RankingTrack, k: int | None = None
) -> list[Violation]:
    """Every violated rule with all its rows (not just the first), in rule order.

    A row is checked against a rule only when the rule can be judged (e.g. ranks
    are checked for users whose rows all have integer ranks). ``k``: the most rows per
    user (None: the track's ``max_k``).
    """
    k = _limit(track, k)
    fit, _ = track_data(split, track.item_kind, "test")
    found: list[Violation] = []

    def add(rows: np.ndarray, rule: str, example: str) -> None:
        if len(rows):
            found.append(Violation(rule, example, tuple(int(r) + 1 for r in np.sort(rows))))

    null = {c: frame[c].isna().to_numpy() for c in COLUMNS}
    any_null = null["user_id"] | null["item_id"] | null["rank"]
    bad = np.flatnonzero(any_null)
    if len(bad):
        col = next(c for c in COLUMNS if null[c][bad[0]])
        add(bad, "no empty values", f"empty {col}")
    rank = pd.to_numeric(frame["rank"], errors="coerce").to_numpy(dtype=np.float64)
    int_rank = np.isfinite(rank) & (rank == np.round(rank))
    bad = np.flatnonzero(~int_rank & ~null["rank"])
    if len(bad):
        add(bad, "rank is an integer", f"rank {frame['rank'].iloc[bad[0]]!r} is not an integer")
    user_str = frame["user_id"].astype(str).to_numpy()
    item_str = frame["item_id"].astype(str).to_numpy()
    users = np.where(null["user_id"], -1, fit.user_ids.get_indexer(user_str))
    items = np.where(null["item_id"], -1, fit.item_ids.get_indexer(item_str))
    bad = np.flatnonzero((users < 0) & ~null["user_id"])
    if len(bad):
        add(bad, f"user_id is a user of the split's {track.item_kind} part",
            f"unknown user_id {user_str[bad[0]]!r}")
    bad = np.flatnonzero((items < 0) & ~null["item_id"])
    if len(bad):
        add(bad, f"item_id is in the split's {track.item_kind} catalogue",
            f"unknown item_id {item_str[bad[0]]!r}")
    keyed = ~(null["user_id"] | null["item_id"])
    pairs = pd.Series(list(zip(user_str, item_str, strict=True)))
    bad = np.flatnonzero(pairs.duplicated().to_numpy() & keyed)
    if len(bad):
        add(bad, "one row per (user_id, item_id)",
            f"duplicate row for user {user_str[bad[0]]!r}, item {item_str[bad[0]]!r}")
    known = users >= 0
    # ranks: users whose rows all have an integer rank
    broken_users = np.unique(users[known & ~int_rank])
    judged = known & int_rank & ~np.isin(users, broken_users)
    idx = np.flatnonzero(judged)
    if len(idx):
        u, r = users[idx], rank[idx].astype(np.int64)
        order = np.lexsort((r, u))
        sizes = np.bincount(u, minlength=fit.n_users)
        present = sizes[np.unique(u)]
        starts = np.concatenate([[0], np.cumsum(present)[:-1]])
        expected = np.arange(len(order)) - np.repeat(starts, present) + 1
        bad = idx[order[r[order] != expected]]
        if len(bad):
            first = bad.min()
            add(bad, "each user's ranks are exactly 1, 2, ..., n",
                f"ranks of user {user_str[first]!r} are not 1..n")
    sizes = np.bincount(users[known], minlength=fit.n_users)
    bad = np.flatnonzero(known & (sizes[np.maximum(users, 0)] > k))
    if len(bad):
        add(bad, _too_long_rule(track, k),
            f"user {user_str[bad[0]]!r} has {sizes[users[bad[0]]]} rows")
    both = np.flatnonzero(known & (items >= 0))
    if len(both):
        leaked = both[pairs_in(fit.matrix, users[both], items[both])]
        if len(leaked):
            add(leaked, "never recommend a training item",
                f"item {item_str[leaked[0]]!r} is a training item of user "
                f"{user_str[leaked[0]]!r}")
    return found


def validate_file(path: str | os.PathLike, split: Split, track: RankingTrack,
                  k: int | None = None) -> dict[str, Any]:
    """Check a rankings file against every rule; ``valid`` plus the violations found."""
    try:
        frame = read_submission(path)
    except SubmissionError as e:
        violations = [Violation(e.rule or "a readable CSV or parquet file", e.message, ())]
        return {"file": str(path), "valid": False, "n_rows": None, "violations": violations}
    violations = find_violations(frame, split, track, k)
    return {"file": str(path), "valid": not violations, "n_rows": int(len(frame)),
            "n_users": int(frame["user_id"].nunique()), "violations": violations}


def format_validation(report: dict[str, Any], limit: int = MAX_LISTED_ROWS) -> str:
    """The report as text: one block per violated rule, first ``limit`` rows each."""
    if report["valid"]:
        return (f"{report['file']}: valid ({report['n_rows']} rows, "
                f"{report['n_users']} users)")
    violations = report["violations"]
    noun = "rule" if len(violations) == 1 else "rules"
    lines = [f"{report['file']}: {len(violations)} {noun} violated"]
    lines += [v.describe(limit) for v in violations]
    return "\n".join(lines)


# --------------------------------------------------------------------------- records

def submission_record(
    path: str | os.PathLike, split: Split, track: RankingTrack, name: str,
    results_dir: str | os.PathLike, k: int | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Score a rankings file into a result record (same schema as ``gembench run``'s).

    Refused (:class:`SubmissionError`) when a record of another method or another
    submission already has the name, or when the split's track fingerprint or the data
    set checksum differs from the existing table's for (data set, protocol, track).
    Returns (evaluation result, record, path to write it to); nothing is written here.
    """
    from benchmark.core.names import safe_name
    from benchmark.registry import NameCollision, all_methods, is_builtin_name
    from benchmark.results import (
        make_record,
        read_record,
        record_path,
        seeded_protocol,
        table_split,
    )

    safe_name(name, "--name")
    if is_builtin_name(name) or name in all_methods():
        owner = all_methods().get(name)
        raise NameCollision(
            f"--name {name!r} is a registered method's name (method class "
            f"{owner.target if owner else 'a RecBole model'}): its records belong to that "
            "method; a submission takes a name of its own")
    t0 = time.perf_counter()
    result, per_user, user_ids, n_skipped = score_submission(path, split, track, k, metrics)
    elapsed = time.perf_counter() - t0
    meta = split.meta
    seed = int((meta.get("params") or {}).get("seed", 0))
    protocol = seeded_protocol(meta["protocol"], seed)  # a split of seed s: its own table
    dataset = {"name": meta["dataset"]["name"], "path": meta["dataset"].get("path"),
               "files_sha256": meta["dataset"]["files_sha256"]}
    record = make_record(
        track=track.name,
        dataset=dataset,
        split={"protocol": protocol, "fingerprint": result["track_fingerprint"],
               "split_fingerprint": split.fingerprint, "part": "test",
               "fit_on": "train+valid",
               "interaction_kind": meta["tracks"][track.name]["interaction_kind"]},
        method={"name": name, "class": None, "params": {}, "tuned": False,
                "submission": Path(path).name,
                "submission_sha256": result["submission_sha256"]},
        summary={m: float(v.mean()) if len(v) else 0.0 for m, v in per_user.items()},
        per_user=per_user,
        user_ids=user_ids,
        counts={"n_users_evaluated": result["n_users_evaluated"],
                "n_users_skipped": n_skipped},
        seed=seed,
        timing={"evaluate": elapsed},
        extra=result["list_metrics"],
    )
    target = record_path(results_dir, record)
    existing = table_split(results_dir, dataset["name"], protocol, track.name)
    ours = (result["track_fingerprint"], dataset["files_sha256"])
    if existing is not None and existing != ours:
        what = ("split fingerprint" if existing[0] != ours[0] else "data set checksum")
        theirs, mine = ((existing[0], ours[0]) if existing[0] != ours[0]
                        else (str(existing[1]), str(ours[1])))
        raise SubmissionError(
            f"{what} {mine[:12]} differs from the leaderboard table's {theirs[:12]} for "
            f"({dataset['name']}, {protocol}, {track.name}); record refused", path=str(path),
            rule="a record is scored on its table's split and data set")
    if target.exists():
        old = read_record(target)
        if old["method"].get("submission_sha256") != result["submission_sha256"]:
            what = ("another submission" if old["method"].get("submission_sha256")
                    else f"method class {old['method'].get('class')}")
            raise SubmissionError(
                f"a record named {name!r} already exists ({target}, {what}); record refused",
                path=str(path), rule="a record never overwrites another method's record")
    return result, record, target
