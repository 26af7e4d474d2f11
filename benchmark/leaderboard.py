"""Leaderboards rebuilt from result records alone (same records -> byte-identical files).

One table per (data set, split protocol, track): a Markdown file and a JSON file
under ``leaderboards/<dataset>/<protocol>/``, plus one static page
``leaderboards/index.html`` with every table (sortable, inline JS) and a plot of
the sort metric with its intervals per method (inline SVG, drawn here). Records
whose split fingerprint differs from the table's are left out and reported,
never mixed in. Every metric's best method is compared with each other method by
a paired test over users (:mod:`benchmark.significance`, Holm-corrected).

A sweep over seeds (records under ``<protocol>-seed<s>``) also gets one summary table
per (data set, protocol, track): each method's metrics as mean ± sample standard
deviation over seeds (``<track>-seeds.md`` / ``.json`` next to seed 0's table).
"""

from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from benchmark import __version__
from benchmark.core.io import atomic_write_text
from benchmark.errors import DataError
from benchmark.registry import METHODS
from benchmark.results import (
    load_records,
    most_common_key,
    record_split_key,
    seeded_protocol,
    unseeded_protocol,
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
#: why a rating record left a user out (``benchmark.ratings.EXCLUDE_REASONS``), in words
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


def md_cell(text: object) -> str:
    """``text`` safe inside one Markdown table cell: ``\\`` and ``|`` escaped, line breaks
    as spaces, so a name never ends its row or adds one (a name is data, not markup)."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return "".join(" " if ch in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029" else ch for ch in out)


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


# --------------------------------------------------------------------------- LaTeX

_LATEX_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hit": "HR", "mrr": "MRR",
                "precision": "Prec", "map": "MAP"}


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "^": r"\textasciicircum{}",
                  "~": r"\textasciitilde{}", "\n": " ", "\r": " "}


def _latex_escape(text: str) -> str:
    """Every LaTeX special character of ``text`` escaped, in one pass (so the braces of
    ``\\textbackslash{}`` are not escaped again); line breaks become spaces."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_metric(metric: str) -> str:
    base, _, k = metric.partition("@")
    return f"{_LATEX_NAMES.get(base, _latex_escape(base))}@{k}" if k else _latex_escape(metric)


def to_latex(table: dict[str, Any], metrics: list[str] | tuple[str, ...],
             style: str = "pm") -> str:
    """A booktabs table: best in bold, ``style`` "pm" (± half-width) or "intervals"."""
    if style not in ("pm", "intervals", "none"):
        raise ValueError(f"unknown style {style!r}; choose pm, intervals or none")
    missing = [m for m in metrics if not any(m in r["metrics"] for r in table["rows"])]
    if missing:
        raise KeyError(f"unknown metric(s) {missing} in table {table['track']}; "
                       f"available: {sorted(table['rows'][0]['metrics']) if table['rows'] else []}")
    caption = (
        _latex_escape(
            f"{table['track']} on {table['dataset']}, {table['protocol']} split "
            f"(fingerprint {table['split_fingerprint'][:12]}). "
            f"Mean over evaluated users"
            + {"pm": " ± half-width of the 95% interval",
               "intervals": " with the 95% interval",
               "none": ""}[style]
            + f" ({table['interval_method']}). "
        ).replace("±", r"$\pm$") + r"Bold: best; \dag: not significantly different from the best ("
        + _latex_escape(table.get("significance_test", significance_note())) + "). "
        + _reference_note(table) + _latex_escape(provenance(table)))
    body = []
    for row in table["rows"]:
        cells = [_latex_escape(row["method"])]
        for metric in metrics:
            if metric not in row["metrics"]:
                cells.append("--")
                continue
            value = f"{row['metrics'][metric]:.4f}"
            best, tied = _marks(row, metric)
            value = r"\textbf{" + value + "}" if best else value + (r"\dag" if tied else "")
            low, high = row["intervals"].get(metric, [float("nan"), float("nan")])
            if style == "pm":
                value += rf" $\pm$ {(high - low) / 2:.4f}"
            elif style == "intervals":
                value += f" [{low:.4f}, {high:.4f}]"
            cells.append(value)
        body.append(cells)
    return _latex_table(caption, f"{table['dataset']}-{table['protocol']}-{table['track']}",
                        ["Method", *map(_latex_metric, metrics)], body)


def _latex_table(caption: str, label: str, header: list[str], body: list[list[str]]) -> str:
    """A booktabs ``table`` environment: caption and label (both already LaTeX), one left
    column and right-aligned numbers."""
    lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + caption + "}",
             r"\label{tab:" + label + "}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
             r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- seeds

SEED_NOTE = ("Mean ± sample standard deviation (ddof = 1) over seeds {seeds}; each seed has its "
             "own data draw (registered synthetic data), split and method seed; n: seeds a "
             "method ran on. Per-seed tables, with 95% intervals and significance tests, are "
             "under {protocols}.")


def build_seed_tables(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method's metrics as mean ± sample sd over seeds, from the per-seed tables.

    Why: one seed's table answers "which method wins on this draw"; a paper reports how
    much a number moves between draws. Tables are grouped by (data set, protocol without
    its ``-seed<s>`` part, track); a group with at least two distinct seeds gives one
    table. For a method and metric with values x_1..x_n over the n seeds it has:

        mean = (1/n) Σ x_s,   sd = sqrt( Σ (x_s − mean)² / (n − 1) )   (NaN when n = 1)

    Pure: reads only the given tables (``build_tables``' output).
    """
    groups: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for t in tables:
        base = unseeded_protocol(t["protocol"])
        seed = int(t.get("seed", 0))
        by_seed = groups[(t["dataset"], base, t["track"])]
        # two tables of one seed (e.g. an old record filed without the -seed mark): the one
        # filed under the seed's own protocol name wins
        if seed not in by_seed or t["protocol"] == seeded_protocol(base, seed):
            by_seed[seed] = t
    out = []
    for (dataset, base, track), by_seed in sorted(groups.items()):
        if len(by_seed) < 2:
            continue
        seeds = sorted(by_seed)
        metrics = list(table_metrics(track, base))
        for s in seeds:
            metrics += [m for m in by_seed[s].get("metrics", ()) if m not in metrics]
        methods = sorted({r["method"] for t in by_seed.values() for r in t["rows"]})
        # values[i, j, k]: method i, metric j, seed k (NaN where absent)
        values = np.full((len(methods), len(metrics), len(seeds)), np.nan)
        present = np.zeros((len(methods), len(seeds)), dtype=bool)
        m_index = {m: j for j, m in enumerate(metrics)}
        r_index = {name: i for i, name in enumerate(methods)}
        configs: dict[str, set[str]] = defaultdict(set)  # method -> its given parameters
        tuned_flags: dict[str, set[bool]] = defaultdict(set)
        tuned_on: dict[str, list[int]] = defaultdict(list)
        for k, s in enumerate(seeds):
            for row in by_seed[s]["rows"]:
                i = r_index[row["method"]]
                present[i, k] = True
                tuned_flags[row["method"]].add(bool(row.get("tuned")))
                if not row.get("tuned"):
                    params = {p: v for p, v in (row.get("params") or {}).items()
                              if p != "seed"}
                    configs[row["method"]].add(json.dumps(params, sort_keys=True, default=str))
                if row.get("tuned"):
                    tuned_on[row["method"]].append(s)
                for metric, v in row["metrics"].items():
                    if metric in m_index and v is not None:
                        values[i, m_index[metric], k] = float(v)
        mean, sd, n = _mean_sd(values)
        mean, sd = np.round(mean, 8), np.round(sd, 8)  # as stored: ties are ties
        ranked = np.array([_ranked(m) for m in metrics], dtype=bool)
        reference = np.array([name in REFERENCE_METHODS for name in methods], dtype=bool)
        # a mean over fewer seeds is not comparable: only methods with the metric on every
        # seed compete for bold
        partial = n < len(seeds)
        contenders = np.where(reference[:, None] | ~ranked[None, :] | partial, -np.inf,
                              np.nan_to_num(mean, nan=-np.inf))
        top = contenders.max(axis=0, initial=-np.inf)
        best = (contenders == top[None, :]) & np.isfinite(top)[None, :]
        rows = []
        for i, name in enumerate(methods):
            cells = {}
            for j, metric in enumerate(metrics):
                if n[i, j] == 0:
                    continue
                cells[metric] = {
                    "mean": float(mean[i, j]),
                    "sd": float(sd[i, j]),
                    "n_seeds": int(n[i, j]),
                    "values": {str(s): float(values[i, j, k]) for k, s in enumerate(seeds)
                               if not np.isnan(values[i, j, k])},
                }
            rows.append({"method": name, "reference": bool(reference[i]),
                         "n_seeds": int(present[i].sum()), "metrics": cells,
                         "best": [m for j, m in enumerate(metrics) if best[i, j]],
                         # not one procedure on every seed: tuned on some seeds only, or
                         # different given parameters (other than the seed). Tuned on every
                         # seed is one procedure, even where each seed's search chose
                         # differently.
                         "mixed_config": (len(tuned_flags[name]) > 1
                                          or len(configs[name]) > 1),
                         "tuned_seeds": tuned_on[name]})
        key = sort_metric(track, base)
        # methods run on every seed first, then by mean
        rows.sort(key=lambda r: (-r["n_seeds"], -r["metrics"][key]["mean"]
                                 if key in r["metrics"] else np.inf, r["method"]))
        protocols = [by_seed[s]["protocol"] for s in seeds]
        out.append({
            "kind": "seeds",
            "dataset": dataset,
            "protocol": base,
            "track": track,
            "seeds": seeds,
            "protocols": {str(s): p for s, p in zip(seeds, protocols, strict=True)},
            "split_fingerprints": {str(s): by_seed[s]["split_fingerprint"] for s in seeds},
            "dataset_checksums": {str(s): by_seed[s].get("dataset_checksum") for s in seeds},
            "gembench_version": __version__,
            "metrics": metrics,
            "sort_metric": key,
            "rows": rows,
            "note": SEED_NOTE.format(seeds=", ".join(map(str, seeds)),
                                     protocols=", ".join(protocols)),
        })
    return out


def _mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sample sd with ddof = 1, count) over the last axis, ignoring NaN."""
    have = ~np.isnan(values)
    n = have.sum(axis=-1)
    x = np.where(have, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=-1) / n
        dev = np.where(have, values - mean[..., None], 0.0)
        sd = np.sqrt((dev ** 2).sum(axis=-1) / (n - 1))
    sd = np.where(n >= 2, sd, np.nan)
    return mean, sd, n


def _finite(v: Any) -> bool:
    return v is not None and v == v and abs(v) != float("inf")


def _seed_cell(row: dict[str, Any], metric: str, bold: str = "**{}**", pm: str = "±",
               missing: str = "–") -> str:
    """``mean ± sd``; ``bold`` is the template of a best mean."""
    cell = row["metrics"].get(metric)
    if cell is None or not _finite(cell.get("mean")):
        return missing
    value = f"{cell['mean']:.4f}"
    if metric in row.get("best", ()):
        value = bold.format(value)
    sd = f"{cell['sd']:.4f}" if _finite(cell.get("sd")) else missing
    return f"{value} {pm} {sd}"


def seed_provenance(table: dict[str, Any]) -> str:
    """gembench version, data set, and each seed's data checksum and split fingerprint."""
    parts = [f"seed {s}: files sha256 {str(table['dataset_checksums'].get(str(s)))[:12]}, "
             f"split fingerprint {str(table['split_fingerprints'][str(s)])[:12]}"
             for s in table["seeds"]]
    return (f"gembench {table['gembench_version']}; data set {table['dataset']}; "
            + "; ".join(parts) + ".")


def _seed_title(table: dict[str, Any]) -> str:
    seeds = table["seeds"]
    return (f"{table['track']} — {table['dataset']} ({table['protocol']} split, "
            f"{len(seeds)} seeds: {', '.join(map(str, seeds))})")


#: under a seed table with a row whose hyper-parameters are not the same on every seed
MIXED_NOTE = ("‡: not configured the same way on every seed (tuned for some seeds only, "
              "or given different hyper-parameters; `gembench tune --seed S` tunes seed S), "
              "so its mean pools different procedures.")


def _mixed_mark(row: dict[str, Any], mark: str = " ‡") -> str:
    return mark if row.get("mixed_config") else ""


def _seed_bold_note(table: dict[str, Any]) -> str:
    mixed = any(r.get("mixed_config") for r in table["rows"])
    return (f"Methods run on every seed first, then sorted by the mean of "
            f"{table['sort_metric']}. Bold: best mean per metric among methods run on every "
            "seed (costs such as distance are not ranked). " + _reference_note(table)
            .replace("\\_", "_")).rstrip() + (" " + MIXED_NOTE if mixed else "")


def seeds_to_markdown(table: dict[str, Any]) -> str:
    """A seed table as Markdown: ``mean ± sd`` per metric, ``n`` seeds, note, provenance."""
    metrics = table["metrics"]
    header = ["method", *metrics, "n"]
    lines = [f"## {_seed_title(table)}", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in table["rows"]:
        name = (md_cell(row["method"]) + _mixed_mark(row)
                + (" (reference)" if row.get("reference") else ""))
        lines.append("| " + " | ".join([name, *(_seed_cell(row, m) for m in metrics),
                                        str(row["n_seeds"])]) + " |")
    lines += ["", table["note"], _seed_bold_note(table), seed_provenance(table), ""]
    return "\n".join(lines)


def seeds_to_latex(table: dict[str, Any], metrics: list[str] | tuple[str, ...] | None = None,
                   caption_extra: str | None = None) -> str:
    """A seed table as booktabs LaTeX: ``mean $\\pm$ sd`` per metric, best mean in bold."""
    metrics = list(metrics) if metrics else [
        m for m in table["metrics"] if any(m in r["metrics"] for r in table["rows"])]
    missing = [m for m in metrics if not any(m in r["metrics"] for r in table["rows"])]
    if missing:
        raise KeyError(f"unknown metric(s) {missing} in seed table {table['track']}; available: "
                       f"{sorted({m for r in table['rows'] for m in r['metrics']})}")
    seeds = ", ".join(map(str, table["seeds"]))
    caption = (_latex_escape(
        f"{table['track']} on {table['dataset']}, {table['protocol']} split. Mean ± sample "
        f"standard deviation (ddof = 1) over seeds {seeds}; each seed has its own data draw, "
        f"split and method seed; n: seeds a method ran on. ").replace("±", r"$\pm$")
        + "Bold: best mean among methods run on every seed. " + _reference_note(table)
        + (_latex_escape(MIXED_NOTE.replace("`", "")).replace("‡", r"\ddag") + " "
           if any(r.get("mixed_config") for r in table["rows"]) else "")
        + (_latex_escape(caption_extra.strip()) + " " if caption_extra else "")
        + _latex_escape(seed_provenance(table)))
    body = [[_latex_escape(row["method"]) + _mixed_mark(row, r" \ddag")
             + (r" (ref.)" if row.get("reference") else ""),
             *(_seed_cell(row, m, bold=r"\textbf{{{}}}", pm=r"$\pm$", missing="--")
               for m in metrics),
             str(row["n_seeds"])] for row in table["rows"]]
    return _latex_table(caption, f"{table['dataset']}-{table['protocol']}-{table['track']}-seeds",
                        ["Method", *map(_latex_metric, metrics), "$n$"], body)


def _seeds_html(table: dict[str, Any]) -> str:
    """A seed table as a static HTML section (no script needed)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["method", *table["metrics"], "n"])
    body = []
    for row in table["rows"]:
        tds = [f"<td>{html.escape(row['method'] + _mixed_mark(row))}"
               + (" <span class=\"ci\">(reference)</span>" if row.get("reference") else "")
               + "</td>"]
        for m in table["metrics"]:
            text = html.escape(_seed_cell(row, m, bold="{}"))
            tds.append(f'<td class="best">{text}</td>' if m in row.get("best", ())
                       else f"<td>{text}</td>")
        tds.append(f"<td>{row['n_seeds']}</td>")
        body.append(f'<tr data-method="{html.escape(row["method"])}">' + "".join(tds) + "</tr>")
    return (f'<section id="{html.escape(table["dataset"])}-{html.escape(table["protocol"])}-'
            f'{html.escape(table["track"])}-seeds">\n<h2>{html.escape(_seed_title(table))}</h2>\n'
            f'<table class="lb seeds"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>\n"
            f'<p class="note">{html.escape(table["note"])} '
            f'{html.escape(_seed_bold_note(table))}<br>{html.escape(seed_provenance(table))}'
            "</p>\n</section>")


def _json_null_nan(value: Any) -> Any:
    """A copy with NaN / ±inf as None, so the file is valid JSON (null)."""
    if isinstance(value, dict):
        return {k: _json_null_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_null_nan(v) for v in value]
    if isinstance(value, float) and not _finite(value):
        return None
    return value


# --------------------------------------------------------------------------- HTML

def _svg_plot(table: dict[str, Any], metric: str | None = None) -> str:
    """Mean with its 95% interval per method, as a horizontal dot-and-whisker SVG."""
    metric = metric or table.get("sort_metric") or sort_metric(table["track"], table["protocol"])
    rows = [r for r in table["rows"] if metric in r["metrics"]]
    label_w, plot_w, row_h, top, bottom = 150, 420, 22, 28, 34
    height = top + row_h * len(rows) + bottom
    width = label_w + plot_w + 20
    highs = [r["intervals"].get(metric, [0.0, r["metrics"][metric]])[1] for r in rows]
    xmax = max([*highs, *(r["metrics"][metric] for r in rows), 1e-9]) * 1.05
    lows = [r["intervals"].get(metric, [r["metrics"][metric]] * 2)[0] for r in rows]
    xmin = min([0.0, *lows, *(r["metrics"][metric] for r in rows)])
    xmin = xmin * 1.05 if xmin < 0 else 0.0  # negative values (a loss of gain) are drawn

    def x(v: float) -> float:
        return label_w + plot_w * (v - xmin) / (xmax - xmin)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(metric)} per method with 95% intervals">',
             f'<text x="{label_w}" y="16" font-size="13" font-weight="bold">'
             f'{html.escape(metric)} (mean, 95% interval)</text>']
    axis_y = top + row_h * len(rows)
    for i in range(6):
        v = xmin + (xmax - xmin) * i / 5
        parts.append(f'<line x1="{x(v):.1f}" y1="{top - 4}" x2="{x(v):.1f}" y2="{axis_y}" '
                     f'stroke="#ddd"/>'
                     f'<text x="{x(v):.1f}" y="{axis_y + 16}" font-size="11" '
                     f'text-anchor="middle">{v:.3f}</text>')
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        mean = row["metrics"][metric]
        low, high = row["intervals"].get(metric, [mean, mean])
        best, tied = _marks(row, metric)
        colour = "#c0392b" if best else ("#e67e22" if tied else "#2c3e50")
        parts.append(
            f'<g class="point" data-method="{html.escape(row["method"])}">'
            f'<text x="{label_w - 8}" y="{y + 4:.1f}" font-size="12" text-anchor="end">'
            f'{html.escape(row["method"])}</text>'
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{x(mean):.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
            f'<title>{html.escape(row["method"])}: {mean:.4f} ({low:.4f}–{high:.4f})</title>'
            f'</circle></g>')
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" '
                 f'stroke="#333"/></svg>')
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table.lb{border-collapse:collapse;margin:.5em 0;font-size:13px}
table.lb th,table.lb td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;
 white-space:nowrap}
table.lb th:first-child,table.lb td:first-child{text-align:left}
table.lb th{cursor:pointer;background:#f4f4f4;user-select:none}
table.lb th.asc::after{content:" \\25B2"} table.lb th.desc::after{content:" \\25BC"}
td .ci{color:#777;font-size:11px} td.best{font-weight:bold} .note{color:#555;font-size:12px}
""".strip()

# Renders each table from the inline JSON and sorts it on a header click.
_JS = """
(function(){
var data=JSON.parse(document.getElementById('lb-data').textContent);
function fmt(v){return (typeof v==='number')?v.toFixed(4):'\\u2013';}
function render(t,i){
  var tbl=document.getElementById('table-'+i), body=tbl.tBodies[0];
  while(body.firstChild){body.removeChild(body.firstChild);}
  t.rows.forEach(function(r){
    var tr=document.createElement('tr'); tr.setAttribute('data-method',r.method);
    var td=document.createElement('td'); td.textContent=r.method; tr.appendChild(td);
    t.metrics.forEach(function(m){
      var c=document.createElement('td'), v=r.metrics[m], ci=r.intervals[m], s=r.significance[m];
      c.textContent=fmt(v)+(s&&s.tied_with_best&&!s.best?'\\u2020':'');
      if(s&&s.best){c.className='best';}
      if(ci){var sp=document.createElement('span'); sp.className='ci';
        sp.textContent=' ('+fmt(ci[0])+'\\u2013'+fmt(ci[1])+')'; c.appendChild(sp);}
      tr.appendChild(c);
    });
    var u=document.createElement('td'); u.textContent=r.n_users_evaluated; tr.appendChild(u);
    body.appendChild(tr);
  });
}
data.forEach(function(t,i){
  render(t,i);
  var ths=document.getElementById('table-'+i).tHead.rows[0].cells;
  Array.prototype.forEach.call(ths,function(th,j){
    th.addEventListener('click',function(){
      var desc=!th.classList.contains('desc');
      Array.prototype.forEach.call(ths,function(h){h.classList.remove('asc','desc');});
      th.classList.add(desc?'desc':'asc');
      var key=function(r){return j===0?r.method:(j>t.metrics.length?r.n_users_evaluated:
        (r.metrics[t.metrics[j-1]]===undefined?-Infinity:r.metrics[t.metrics[j-1]]));};
      t.rows.sort(function(a,b){var x=key(a),y=key(b);
        var c=(x<y?-1:(x>y?1:0)); if(c===0){return a.method<b.method?-1:1;}
        return desc?-c:c;});
      render(t,i);
    });
  });
});
document.body.setAttribute('data-rendered',String(data.length));
})();
""".strip()


def to_html(tables: list[dict[str, Any]], metrics: tuple[str, ...] | None = None,
            curves: list[dict[str, Any]] | None = None,
            seed_tables: list[dict[str, Any]] | None = None) -> str:
    """One static page with every table (rendered and sorted by inline JS) and plots.

    ``metrics`` overrides every table's own columns; ``seed_tables`` (from
    :func:`build_seed_tables`) follow the per-seed tables as static tables; ``curves``
    (from :func:`build_curves`) are drawn as line plots after them.
    """
    def cols(t: dict[str, Any]) -> tuple[str, ...]:
        return tuple(metrics or t.get("metrics") or table_metrics(t["track"], t["protocol"]))

    payload = [
        {"metrics": list(cols(t)),
         "rows": [{k: row[k] for k in ("method", "metrics", "intervals", "significance",
                                       "n_users_evaluated")} for row in t["rows"]]}
        for t in tables
    ]
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    sections = []
    for i, t in enumerate(tables):
        title = f"{t['track']} — {t['dataset']} ({t['protocol']} split)"
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["method", *cols(t), "users"])
        sections.append(
            f'<section id="{html.escape(t["dataset"])}-{html.escape(t["protocol"])}-'
            f'{html.escape(t["track"])}">\n<h2>{html.escape(title)}</h2>\n'
            f'<table class="lb" id="table-{i}"><thead><tr>{head}</tr></thead>'
            f'<tbody></tbody></table>\n'
            f'<p class="note">Mean over evaluated users; in brackets the 95% interval '
            f'({html.escape(str(t["interval_method"]))}). Click a header to sort. '
            f'Bold: best per metric; {DAGGER}: not significantly different from the best '
            f'({html.escape(t.get("significance_test", significance_note()))}). '
            f'{html.escape(_reference_note(t).replace(chr(92) + "_", "_"))}'
            f'{html.escape(" " + _users_note(t)) if _users_note(t) else ""}<br>'
            f'{html.escape(provenance(t))}</p>\n{_svg_plot(t)}\n</section>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>gembench leaderboards</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"<h1>gembench leaderboards</h1>\n<p class=\"note\">Rebuilt from result records by "
        f"<code>gembench leaderboard</code> (gembench {__version__}); {len(tables)} table(s)"
        + (f" and {len(seed_tables)} summary table(s) over seeds" if seed_tables else "")
        + ".</p>\n<noscript><p>The tables need JavaScript; the Markdown and JSON files next to "
        "this page hold the same numbers.</p></noscript>\n"
        + "\n".join(sections)
        + "".join("\n" + _seeds_html(t) for t in seed_tables or [])
        + "".join(f'\n<section id="curve-{html.escape(c["id"])}">\n<h2>{html.escape(c["title"])}'
                  f'</h2>\n<p class="note">{html.escape(c["note"])}</p>\n{curve_svg(c)}\n'
                  "</section>" for c in curves or [])
        + f'\n<script type="application/json" id="lb-data">{data}</script>\n'
        f"<script>\n{_JS}\n</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- curves

_CURVE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                  "#e377c2", "#7f7f7f", "#bcbd22")


def _k_order(k: str) -> tuple[int, float]:
    return (1, 0.0) if k == "all" else (0, float(k))


def build_curves(tables: list[dict[str, Any]], metric: str = "accuracy_unseen"
                 ) -> list[dict[str, Any]]:
    """Accuracy-vs-k curves of the preference track, one per (data set, pair protocol).

    The tables of one curve are the ``<protocol>-k<k>`` tables of one data set; a point is a
    method's ``metric`` (default: accuracy on held-out users, who see only k of their own
    judgements) with its 95% interval.
    """
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for t in tables:
        base, sep, k = t["protocol"].rpartition("-k")
        if t["track"] == "preference" and sep and (k == "all" or k.isdigit()):
            groups[(t["dataset"], base)][k] = t
    curves = []
    for (dataset, base), by_k in sorted(groups.items()):
        ks = sorted(by_k, key=_k_order)
        methods = sorted({r["method"] for t in by_k.values() for r in t["rows"]})
        series = []
        for method in methods:
            points = []
            for i, k in enumerate(ks):
                row = next((r for r in by_k[k]["rows"] if r["method"] == method), None)
                if row is None or metric not in row["metrics"]:
                    continue
                lo, hi = row["intervals"].get(metric, [row["metrics"][metric]] * 2)
                points.append([i, row["metrics"][metric], lo, hi])
            if points:
                series.append({"name": method, "points": points})
        curves.append({
            "id": f"{dataset}-{base}-preference-vs-k", "dataset": dataset, "protocol": base,
            "track": "preference", "metric": metric, "x_label": "k (judgements of a held-out "
            "user the model sees)", "x_ticks": ks, "y_label": metric, "series": series,
            "title": f"preference — {dataset}: {metric} vs k",
            "note": "Held-out users: none of their pairs are in training; the model sees k of "
                    "their training judgements (nested sets). Mean over their test pairs with "
                    "the 95% interval (bootstrap over users).",
        })
    return curves + _edit_curves(tables)


def _edit_curves(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gain-vs-fidelity curves of the lora-edit track: one point per (method, step)."""
    curves = []
    for t in tables:
        if t["track"] != "lora-edit":
            continue
        series = []
        for row in sorted(t["rows"], key=lambda r: r["method"]):
            steps = sorted(float(m.partition("@")[2]) for m in row["metrics"]
                           if m.startswith("gain@"))
            points = []
            for step in steps:
                key = f"{step:g}"
                gain, fid = row["metrics"].get(f"gain@{key}"), row["metrics"].get(
                    f"fidelity@{key}")
                if gain is None or fid is None:
                    continue
                lo, hi = row["intervals"].get(f"gain@{key}", [gain, gain])
                points.append([fid, gain, lo, hi, step])
            if points:
                series.append({"name": row["method"], "points": points})
        curves.append({
            "id": f"{t['dataset']}-{t['protocol']}-lora-edit-gain-vs-fidelity",
            "dataset": t["dataset"], "protocol": t["protocol"], "track": "lora-edit",
            "metric": "gain", "x_name": "fidelity", "x_label": "fidelity (cosine of the "
            "edit's renders to the original's; 1 = unchanged)", "x_ticks": None,
            "y_label": "preference gain", "series": series,
            "title": f"lora-edit — {t['dataset']}: preference gain vs fidelity",
            "note": "One point per step size (larger steps: lower fidelity); gain = judge score "
                    "of the edit minus the original's, mean over users with its 95% interval.",
        })
    return curves


def curve_svg(curve: dict[str, Any]) -> str:
    """A line plot with interval whiskers; x is categorical (ticks) or numeric."""
    left, plot_w, plot_h, top, legend_w = 56, 420, 220, 26, 170
    width, height = left + plot_w + legend_w, top + plot_h + 44
    pts = [p for s in curve["series"] for p in s["points"]]
    ticks = curve.get("x_ticks")
    xs = [p[0] for p in pts] or [0.0]
    x0, x1 = (0.0, max(len(ticks) - 1, 1)) if ticks else (min(xs), max(xs))
    if x1 == x0:
        x1 = x0 + 1.0
    ys = [v for p in pts for v in p[1:4]] or [0.0, 1.0]
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(v: float) -> float:
        return left + plot_w * (v - x0) / (x1 - x0)

    def py(v: float) -> float:
        return top + plot_h * (1 - (v - y0) / (y1 - y0))

    label = html.escape(curve["title"])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{label}">']
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" '
                     f'y2="{py(v):.1f}" stroke="#eee"/><text x="{left - 6}" y="{py(v) + 4:.1f}" '
                     f'font-size="11" text-anchor="end">{v:.3f}</text>')
    grid = [x0 + (x1 - x0) * i / 4 for i in range(5)]
    xt = list(enumerate(ticks)) if ticks else [(v, f"{v:.3g}") for v in grid]
    for v, text in xt:
        parts.append(f'<text x="{px(v):.1f}" y="{top + plot_h + 16}" font-size="11" '
                     f'text-anchor="middle">{html.escape(str(text))}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="12" '
                 f'text-anchor="middle">{html.escape(curve["x_label"])}</text>'
                 f'<text x="12" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + plot_h / 2})">'
                 f'{html.escape(curve["y_label"])}</text>'
                 f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
                 f'stroke="#333"/>')
    for j, series in enumerate(curve["series"]):
        colour = _CURVE_COLOURS[j % len(_CURVE_COLOURS)]
        name = html.escape(series["name"])
        path = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in series["points"])
        parts.append(f'<g class="series" data-method="{name}">'
                     f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in series["points"]:
            parts.append(f'<line x1="{px(p[0]):.1f}" y1="{py(p[2]):.1f}" x2="{px(p[0]):.1f}" '
                         f'y2="{py(p[3]):.1f}" stroke="{colour}"/>'
                         f'<circle cx="{px(p[0]):.1f}" cy="{py(p[1]):.1f}" r="3" fill="{colour}">'
                         f'<title>{name}: {p[1]:.4f} ({p[2]:.4f}–{p[3]:.4f})</title></circle>')
        ly = top + 14 + 18 * j
        parts.append(f'<line x1="{left + plot_w + 12}" y1="{ly - 4}" x2="{left + plot_w + 30}" '
                     f'y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{left + plot_w + 36}" y="{ly}" font-size="12">{name}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def curve_markdown(curve: dict[str, Any]) -> str:
    """The points of a curve as a Markdown table.

    Categorical x (k): one row per method, one column per tick. Numeric x (fidelity): one
    row per point, in each method's order (step sizes ascending).
    """
    ticks = curve.get("x_ticks")
    lines = [f"## {curve['title']}", ""]
    if ticks:
        xs = [str(t) for t in ticks]
        lines += ["| method | " + " | ".join(f"{curve.get('x_name', 'k')}={x}" for x in xs)
                  + " |", "|---|" + "---:|" * len(xs)]
        for series in curve["series"]:
            cells = {str(ticks[int(p[0])]): f"{p[1]:.4f} ({p[2]:.4f}–{p[3]:.4f})"
                     for p in series["points"]}
            lines.append(f"| {md_cell(series['name'])} | "
                         + " | ".join(cells.get(x, "–") for x in xs) + " |")
    else:
        lines += [f"| method | step | {curve.get('x_name', 'x')} | {curve['y_label']} "
                  "(95% interval) |", "|---|---:|---:|---:|"]
        for series in curve["series"]:
            for p in series["points"]:
                step = f"{p[4]:g}" if len(p) > 4 else ""
                lines.append(f"| {md_cell(series['name'])} | {step} | {p[0]:.4f} | "
                             f"{p[1]:.4f} ({p[2]:.4f}–{p[3]:.4f}) |")
    lines += ["", curve["note"], ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- files

def _board_folder(out_dir: str | os.PathLike, table: dict[str, Any]) -> Path:
    """``out_dir/<dataset>/<protocol>``, its names checked and the folder inside ``out_dir``
    (the names come from records, which are files anyone can edit)."""
    from benchmark.core.names import safe_name, under_root

    safe_name(table["track"], "track name")
    return under_root(out_dir, Path(out_dir) / safe_name(table["dataset"], "data set name")
                      / safe_name(table["protocol"], "split protocol"))


@overload
def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: Literal[False] = False,
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str]]: ...


@overload
def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: Literal[True],
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str],
                                  list[dict[str, Any]]]: ...


def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: bool = False,
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None) -> tuple:
    """Rebuild every table under ``out_dir`` (and ``index.html``) from ``results_dir``.

    Returns (files, per-seed tables, notes); with ``with_seeds`` also the seed tables
    (:func:`build_seed_tables`), written to ``<dataset>/<protocol>/<track>-seeds.{md,json}``.
    A seed-0-only results folder gives the same files as before seeds existed: no
    ``-seeds`` files and no ``seed`` key in the tables' JSON. ``metrics`` (checked by
    :func:`check_columns`) are the columns of the full-ranking tables (of ``track`` only,
    when given) instead of their defaults (:func:`with_columns`).
    """
    if metrics:
        metrics = check_columns(metrics, track)
    if not Path(results_dir).is_dir():
        raise DataError("the results folder does not exist; no leaderboard was written",
                        path=str(results_dir),
                        rule="leaderboards are rebuilt from existing records")
    tables, notes = build_tables(results_dir)
    if not tables:  # never replace a board by an empty one
        raise DataError("no result records here: nothing to build a leaderboard from, so the "
                        f"boards under {out_dir} are left as they are", path=str(results_dir),
                        rule="a leaderboard is built from at least one record")
    tables = with_columns(tables, metrics, track)
    seed_tables = with_columns(build_seed_tables(tables), metrics, track)
    written = []
    for table in tables:
        folder = _board_folder(out_dir, table)
        md = folder / f"{table['track']}.md"
        js = folder / f"{table['track']}.json"
        atomic_write_text(md, to_markdown(table))
        saved = {k: v for k, v in table.items() if k != "seed" or v != 0}
        atomic_write_text(js, json.dumps(saved, indent=1, sort_keys=True) + "\n")
        written += [md, js]
    for table in seed_tables:
        folder = _board_folder(out_dir, table)
        md = folder / f"{table['track']}-seeds.md"
        js = folder / f"{table['track']}-seeds.json"
        atomic_write_text(md, seeds_to_markdown(table))
        atomic_write_text(js, json.dumps(_json_null_nan(table), indent=1, sort_keys=True,
                                         allow_nan=False) + "\n")
        written += [md, js]
    curves = build_curves(tables)
    for curve in curves:
        folder = _board_folder(out_dir, curve)
        stem = f"{curve['track']}-{curve['metric']}-vs-{curve.get('x_name', 'k')}"
        for path, text in ((folder / f"{stem}.md", curve_markdown(curve)),
                           (folder / f"{stem}.svg", curve_svg(curve) + "\n")):
            atomic_write_text(path, text)
            written.append(path)
    index = Path(out_dir) / "index.html"
    atomic_write_text(index, to_html(tables, curves=curves, seed_tables=seed_tables))
    written.append(index)
    if with_seeds:
        return written, tables, notes, seed_tables
    return written, tables, notes


def select_tables(tables: list[dict[str, Any]], track: str | None = None,
                  dataset: str | None = None, protocol: str | None = None
                  ) -> list[dict[str, Any]]:
    """The tables matching the given track / data set / protocol (None: any)."""
    return [t for t in tables
            if (track is None or t["track"] == track)
            and (dataset is None or t["dataset"] == dataset)
            and (protocol is None or t["protocol"] == protocol)]


