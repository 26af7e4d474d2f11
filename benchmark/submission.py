"""Scoring a predictions file: ``user_id,item_id,rank`` rows against a split.

Rules (each violation is one :class:`SubmissionError` naming the file, the row
— 1-based, header excluded — and the rule; nothing is written on error):

1. the file is CSV or parquet and has the columns ``user_id``, ``item_id``, ``rank``;
2. no empty values; ``rank`` is an integer;
3. every ``user_id`` is a user of the split (for the track's item kind) and every
   ``item_id`` is in the split's catalogue;
4. no (user_id, item_id) pair appears twice;
5. each user's ranks are exactly 1..n with n <= K (50);
6. no recommended item is one of the user's training (train + valid) items.

Users of the test part that the file omits count as empty lists (all metrics 0).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmark.errors import SubmissionError
from benchmark.evaluate import metrics_from_ranked
from benchmark.runner import track_data
from benchmark.splits import Split
from benchmark.tasks import RankingTrack

MAX_K = 50
COLUMNS = ("user_id", "item_id", "rank")


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
    return table.select(list(COLUMNS)).to_pandas()


def validate_submission(
    frame: pd.DataFrame, split: Split, track: RankingTrack, path: str = "<submission>",
    k: int = MAX_K,
) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Check the rules; return (user_idx, item_idx, rank) arrays and the fit/test data."""
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
             f"{sizes[users[too_long[0]]]} rows", f"at most K={k} rows per user")
    leaked = np.flatnonzero(np.asarray(fit.matrix[users, items]).ravel() > 0)
    if len(leaked):
        fail(leaked, f"item {frame['item_id'].iloc[leaked[0]]!r} is a training item of user "
             f"{frame['user_id'].iloc[leaked[0]]!r}", "never recommend a training item")
    return users, items, rank, (fit, relevant)


def evaluate_submission(
    path: str | os.PathLike, split: Split, track: RankingTrack, k: int = MAX_K
) -> dict[str, Any]:
    """Validate and score a rankings file; returns the JSON-ready result."""
    frame = read_submission(path)
    users, items, rank, (fit, relevant) = validate_submission(frame, split, track, str(path), k)
    test_users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    position = np.full(fit.n_users, -1, dtype=np.int64)
    position[test_users] = np.arange(len(test_users))
    ranked = np.full((len(test_users), k), -1, dtype=np.int64)
    in_test = position[users] >= 0
    ranked[position[users[in_test]], rank[in_test] - 1] = items[in_test]
    per_user, extra = metrics_from_ranked(ranked, relevant[test_users], track.metrics)
    submitted = np.zeros(fit.n_users, dtype=bool)
    submitted[users] = True
    return {
        "track": track.name,
        "split_fingerprint": split.fingerprint,
        "submission": str(path),
        "submission_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "metrics": {name: round(float(v.mean()), 8) for name, v in per_user.items()},
        "list_metrics": {n: round(v, 8) for n, v in extra.items()},
        "n_users_evaluated": int(len(test_users)),
        "n_users_missing": int((~submitted[test_users]).sum()),
        "n_rows": int(len(frame)),
    }
