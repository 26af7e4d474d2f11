"""Leaderboard tables from records: grouping, columns, significance, Markdown."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.errors import DataError
from benchmark.leaderboard.escape import _latex_escape, md_cell
from benchmark.registry import METHODS
from benchmark.results import (
    load_records,
    most_common_key,
    record_split_key,
)
from benchmark.significance import ALPHA, TEST_DESCRIPTIONS, compare_with_best
from benchmark.tracks import SPECS, spec_for_table

#: every track's columns, main score and ranked metrics come from its spec
#: (benchmark.tracks); these names are kept for readers of this module
TABLE_METRICS = SPECS["lora-rec"].columns
SORT_METRIC = SPECS["lora-rec"].main_score
RANKING_TABLE_METRICS: dict[str, tuple[str, ...]] = {"image-rec": SPECS["image-rec"].columns}
TRACK_METRICS: dict[str, tuple[str, ...]] = {n: SPECS[n].columns
                                             for n in ("preference", "lora-edit")}
TRACK_SORT_METRIC: dict[str, str] = {n: SPECS[n].main_score for n in ("preference", "lora-edit")}
RATING_METRICS = SPECS["rating"].columns
RATING_SORT_METRIC = SPECS["rating"].main_score
#: why a rating record left a user out (``benchmark.tracks.rating.track.EXCLUDE_REASONS``), in words
RATING_EXCLUSIONS = {"fewer_than_2": "with fewer than 2 test ratings",
                     "constant_rating": "whose test ratings are all equal"}


def _rating_users(record: dict[str, Any]) -> dict[str, Any] | None:
    """The user counts of a rating record, None for any other record.

    ``n_users``: users with test ratings; ``n_users_scored``: those every metric scores;
    ``excluded``: reason -> users with no order to predict; ``n_users_constant_score``:
    scored users the method gave one score for all their images (counted as ties).
    """
    if "n_ratings_test" not in record:
        return None
    n_users = int(record.get("n_users", record.get("n_users_evaluated", 0)))
    return {"n_users": n_users,
            "n_users_scored": int(record.get("n_users_scored", n_users)),
            "n_users_excluded": int(record.get("n_users_excluded", 0)),
            "excluded": {k.removeprefix("n_users_excluded_"): int(v)
                         for k, v in sorted(record.items())
                         if k.startswith("n_users_excluded_")},
            "n_users_constant_score": int(record.get("n_users_constant_score", 0))}


def _users_note(table: dict[str, Any]) -> str:
    """The sentence under a rating table that states how many users count and who is out."""
    users = [row["users"] for row in table["rows"] if "users" in row]
    if not users:
        return ""
    if len({json.dumps(u["excluded"], sort_keys=True) for u in users}) == 1:
        why = ", ".join(f"{n} {RATING_EXCLUSIONS.get(k, k)}" for k, n in
                        users[0]["excluded"].items())
        out = (f"{users[0]['n_users_excluded']} of {users[0]['n_users']} users with test "
               f"ratings excluded from every metric ({why}: no order to predict)")
    else:
        out = ("users excluded from every metric (fewer than 2 test ratings, or all equal: "
               "no order to predict) in the excluded column")
    return (f"Users: scored of those with test ratings; {out}. Constant scores: scored users "
            "the method gave one score for all their images, counted as Spearman = Pearson "
            "= 0 and pair accuracy 0.5 (ties).")


RERANK_METRICS = SPECS["rerank"].columns


def _is_rerank(protocol: str | None) -> bool:
    return spec_for_table("", protocol) is SPECS["rerank"]


def table_metrics(track: str, protocol: str | None = None) -> tuple[str, ...]:
    """A table's default columns: its track spec's."""
    return spec_for_table(track, protocol).columns


#: columns of ranking tables besides the ranking metrics ``<name>@<k>``: the lists' mean
#: popularity, and the rerank protocol's first-stage hit rate; ``cond_<name>@<k>`` is the
#: rerank protocol's conditional view of a ranking metric
_EXTRA_COLUMNS = ("avg_popularity", "first_stage_hit")
_COLUMN_PREFIXES = ("cond_",)


def _column(name: str) -> tuple[str, int]:
    """A ranking table's column name in canonical form, and its cut-off (ValueError)."""
    from benchmark.metrics import RANKING_METRICS, parse_metric

    text = name.strip().lower() if isinstance(name, str) else ""
    base, _, k = text.partition("@")
    prefix = next((p for p in _COLUMN_PREFIXES if base.startswith(p)), "")
    if base[len(prefix):] in _EXTRA_COLUMNS and not prefix and k.isdigit() and int(k) >= 1:
        return f"{base}@{int(k)}", int(k)
    try:
        metric, cut = parse_metric(f"{base[len(prefix):]}@{k}")
    except ValueError:
        raise ValueError(
            f"unknown metric {name!r}: expected '<name>@<k>' with k >= 1 and name one of "
            f"{sorted(RANKING_METRICS)} "
            f"(e.g. 'ndcg@10'), or {', '.join(f'{c}@<k>' for c in _EXTRA_COLUMNS)}, "
            "cond_<name>@<k> (rerank)") from None
    return f"{prefix}{metric}@{cut}", cut


def check_columns(metrics: list[str] | tuple[str, ...] | str,
                  track: str | None = None) -> tuple[str, ...]:
    """Asked columns of ranking tables, checked like ``gembench run --metrics``: a known
    metric name and a cut-off within the track's ``max_k`` (every ranking track's when
    ``track`` is None). A non-ranking ``track`` (preference, lora-edit) takes its own
    metric names as given."""
    from benchmark.tasks import TRACKS

    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise ValueError("no metrics given")
    if track is not None and track not in TRACKS:
        return tuple(dict.fromkeys(m.strip() for m in metrics))
    out: list[str] = []
    for name in metrics:
        column, cut = _column(name)
        for spec in ([TRACKS[track]] if track is not None else list(TRACKS.values())):
            if cut > spec.max_k:
                raise ValueError(f"metric {name!r}: cut-off {cut} is above the {spec.name} "
                                 f"track's max K = {spec.max_k}")
        if column not in out:
            out.append(column)
    return tuple(out)


def with_columns(tables: list[dict[str, Any]], metrics: list[str] | tuple[str, ...] | None,
                 track: str | None = None) -> list[dict[str, Any]]:
    """``tables`` with ``metrics`` as the columns of every full-ranking table (lora-rec,
    image-rec), or of ``track``'s tables only when given (any track); rerank tables keep
    their short-list columns. Copies; the input is not changed."""
    from benchmark.tasks import TRACKS

    if not metrics:
        return tables
    return [{**t, "metrics": list(metrics)}
            if (t["track"] == track if track is not None else t["track"] in TRACKS)
            and not _is_rerank(t.get("protocol")) else t
            for t in tables]


def sort_metric(track: str, protocol: str | None = None) -> str:
    """A table's sort key: its track spec's main score."""
    return spec_for_table(track, protocol).main_score
TEST = "wilcoxon"
DAGGER = "†"
#: metrics where higher is not simply better: no "best", no significance test
#: metric-name prefixes that describe or cost rather than score (every spec's ``not_ranked``)
NOT_RANKED = tuple(sorted({p for spec in SPECS.values() for p in spec.not_ranked}))


def _ranked(metric: str) -> bool:
    return not metric.startswith(NOT_RANKED)


def significance_note(test: str = TEST, alpha: float = ALPHA) -> str:
    """The sentence under every table that states the test."""
    return (f"{TEST_DESCRIPTIONS[test]}, Holm-corrected across methods, alpha = {alpha}")


def build_tables(results_dir: str | os.PathLike, test: str = TEST
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """Group records into tables; returns (tables, notes about records left out)."""
    groups: dict[tuple[str, str, str], list[tuple[Path, dict]]] = defaultdict(list)
    for path, record in load_records(results_dir):
        key = (record["dataset"]["name"], record["split"]["protocol"], record["track"])
        groups[key].append((path, record))
    tables, notes = [], []
    for (dataset, protocol, track), members in sorted(groups.items()):
        # the table's split and data: the (track fingerprint, data set checksum) most
        # records share (ties: lexicographically first)
        fingerprint, checksum = most_common_key([record_split_key(r) for _, r in members])
        rows, vectors, kept = [], {}, []
        for path, r in members:
            if record_split_key(r) != (fingerprint, checksum):
                what = ("split fingerprint", r["split"]["fingerprint"], fingerprint)
                if r["split"]["fingerprint"] == fingerprint:
                    what = ("data set checksum", str(record_split_key(r)[1]), str(checksum))
                notes.append(f"{path}: {what[0]} {what[1][:12]} differs from the table's "
                             f"{what[2][:12]}; left out")
                continue
            name = r["method"]["name"]
            if name in vectors:
                notes.append(f"{path}: a second record of method {name!r}; left out")
                continue
            vectors[name] = r.get("per_user", {})
            kept.append((path, r))
            users = _rating_users(r)
            rows.append(
                {
                    "method": name,
                    "params": r["method"].get("params", {}),
                    "tuned": r["method"].get("tuned", False),
                    "source": "predictions" if r["method"].get("submission_sha256")
                    else "code",
                    "metrics": r["metrics"],
                    "intervals": r["intervals"],
                    "list_metrics": r.get("list_metrics", {}),
                    "n_users_evaluated": r.get("n_users_evaluated", r.get("n_users")),
                    "significance": {},
                    **({"users": users} if users else {}),
                }
            )
        _add_significance(rows, vectors, test)
        seed = _table_seed(kept, notes)
        spec = spec_for_table(track, protocol, [r for _, r in kept])
        key = spec.main_score
        rows.sort(key=lambda row: (-row["metrics"].get(key, 0.0), row["method"]))
        first = members[0][1]
        tables.append(
            {
                "dataset": dataset,
                "dataset_checksum": checksum,
                "protocol": protocol,
                "track": track,
                "split_fingerprint": fingerprint,
                "gembench_version": __version__,
                "interval_method": first.get("interval_method"),
                "significance_test": significance_note(test),
                "metrics": list(spec.columns),
                "sort_metric": key,
                "rows": rows,
                "seed": seed,
            }
        )
    return tables, notes


def _record_seed(path: Path, record: dict[str, Any]) -> int:
    """A record's integer seed (records written before seeds were recorded: 0)."""
    seed = record.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed {seed!r} is not an integer", path=str(path),
                        rule="a result record's seed is an integer")
    return seed


def _table_seed(kept: list[tuple[Path, dict[str, Any]]], notes: list[str]) -> int:
    """The seed of a table: the one its records share (the seed is part of the protocol).

    Should records of one split disagree anyway, the most common seed wins (ties: the
    smallest) and each other record is named in a note.
    """
    seeds = [_record_seed(path, r) for path, r in kept]
    if not seeds:
        return 0
    counts: dict[int, int] = defaultdict(int)
    for s in seeds:
        counts[s] += 1
    seed = sorted(counts, key=lambda s: (-counts[s], s))[0]
    notes += [f"{path}: seed {s} differs from the table's seed {seed} (same split); kept"
              for (path, _), s in zip(kept, seeds, strict=True) if s != seed]
    return seed


#: rows shown for reference (the synthetic truth; the rerank control), left out of "best"
#: and of the tests
REFERENCE_METHODS = frozenset({name for name, m in METHODS.items() if m.reference}
                              | {name for spec in SPECS.values() for name in spec.references})


def _rerank_note(table: dict[str, Any]) -> str:
    """What a rerank table's columns mean; for the inserted protocol, its bias."""
    protocol = str(table["protocol"])
    hit_key, hit, n_users = None, None, None
    for row in table["rows"]:
        for key, value in row["metrics"].items():
            if key.startswith("first_stage_hit@"):
                hit_key = key
                hit = value.get("mean") if isinstance(value, dict) else value
                n_users = row.get("n_users_evaluated")
                break
        if hit_key:
            break
    if hit_key is None:
        return ("Rerank records without first_stage_hit (written before the conditional "
                "view): read them with docs/rerank.md. ")
    users = (f"{round(hit * n_users)} of the {n_users} test users" if n_users
             else "the test users")
    cond = (f"cond_ columns (no significance marks): over the {users} whose first-stage "
            f"top {hit_key.partition('@')[2]} holds a held-out item ({hit_key} = {hit:.4f}). ")
    methods = {r["method"] for r in table["rows"]}
    control = ("reversed-first-stage (minus the first stage's scores) is a control, left "
               "out of the comparison. " if "reversed-first-stage" in methods else "")
    if protocol.startswith("rerank-inserted-"):
        oracle = ("oracle (the synthetic truth) is shown for reference; it is no ceiling "
                  "on these lists. " if "oracle" in methods else "")
        top = "rerank-" + protocol.removeprefix("rerank-inserted-")
        return _latex_escape(
            "Inserted protocol (ImageGem's): the held-out positive is inserted among the "
            "first stage's top negatives; for every user the first stage missed, each "
            "negative is an item it ranked above the positive. Biased: reversing the first "
            "stage's order wins (see reversed-first-stage), so the headline columns do not "
            f"rank rerankers; the cond_ users' lists are those of {top}. "
            + cond + oracle + control
            + "See docs/rerank.md. ")
    oracle = ("oracle (the synthetic truth) is shown for reference, left out of the "
              "comparison. " if "oracle" in methods else "")
    return _latex_escape(
        "Candidates: the first stage's own top-N (training items masked, nothing inserted); "
        "recall@k, ndcg@k, mrr@k: over all test users, a user whose held-out item the first "
        "stage missed scores 0; " + cond + oracle + control)


def _reference_note(table: dict[str, Any]) -> str:
    if _is_rerank(table.get("protocol")):
        return _rerank_note(table)
    shown = sorted({r["method"] for r in table["rows"]} & REFERENCE_METHODS)
    if not shown:
        return ""
    return (_latex_escape(", ".join(shown)) + " (the synthetic truth) is a reference ceiling, "
            "left out of the comparison. ")


def _add_significance(rows: list[dict[str, Any]], vectors: dict[str, dict[str, list]],
                      test: str) -> None:
    """Fill ``row["significance"][metric]`` for every ranked metric all rows have."""
    metrics = sorted(set.intersection(*(set(r["metrics"]) for r in rows))) if rows else []
    for metric in filter(_ranked, metrics):
        data = {}
        for row in rows:
            if row["method"] in REFERENCE_METHODS:
                continue  # a ceiling, not a competitor: never "the best" others are tested against
            per_user = vectors[row["method"]]
            if metric not in per_user or "user_id" not in per_user:
                break
            data[row["method"]] = (per_user["user_id"], per_user[metric])
        else:
            for method, result in compare_with_best(data, test=test).items():
                next(r for r in rows if r["method"] == method)["significance"][metric] = result


def _marks(row: dict[str, Any], metric: str) -> tuple[bool, bool]:
    """(best, not significantly different from the best)."""
    sig = row.get("significance", {}).get(metric)
    if not sig:
        return False, False
    return bool(sig["best"]), bool(sig["tied_with_best"] and not sig["best"])


def _cell(row: dict[str, Any], metric: str) -> str:
    if metric not in row["metrics"]:
        return "–"
    low, high = row["intervals"].get(metric, [float("nan"), float("nan")])
    best, tied = _marks(row, metric)
    value = f"{row['metrics'][metric]:.4f}"
    value = f"**{value}**" if best else value + (DAGGER if tied else "")
    return f"{value} ({low:.4f}–{high:.4f})"


def provenance(table: dict[str, Any]) -> str:
    """gembench version, data set name and checksum, split fingerprint."""
    return (f"gembench {table['gembench_version']}; data set {table['dataset']} "
            f"(files sha256 {str(table['dataset_checksum'])[:16]}); "
            f"split fingerprint {table['split_fingerprint'][:16]}.")


def to_markdown(table: dict[str, Any], metrics: tuple[str, ...] | None = None) -> str:
    """One table as Markdown, with intervals, significance marks and provenance."""
    metrics = tuple(metrics or table.get("metrics")
                    or table_metrics(table["track"], table["protocol"]))
    rating = any("users" in row for row in table["rows"])
    header = ["method", *metrics, "users", *(["excluded", "constant scores"] if rating else [])]
    lines = [
        f"## {table['track']} — {table['dataset']} ({table['protocol']} split)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in table["rows"]:
        cells = [md_cell(row["method"]), *(_cell(row, m) for m in metrics),
                 str(row["n_users_evaluated"])]
        if rating:
            u = row.get("users")
            cells[-1:] = ([f"{u['n_users_scored']} of {u['n_users']}", str(u["n_users_excluded"]),
                           str(u["n_users_constant_score"])] if u else [cells[-1], "–", "–"])
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean over evaluated users; in brackets the 95% interval ({table['interval_method']}). "
        f"Sorted by {table.get('sort_metric', sort_metric(table['track'], table['protocol']))}.",
        f"Bold: best per metric; {DAGGER}: not significantly different from the best "
        f"({table.get('significance_test', significance_note())}). "
        + _reference_note(table).replace("\\_", "_").rstrip(),
        *([_users_note(table)] if rating else []),
        provenance(table),
        "",
    ]
    return "\n".join(lines)


