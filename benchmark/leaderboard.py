"""Leaderboards rebuilt from result records alone (same records -> byte-identical files).

One table per (data set, split protocol, track): a Markdown file and a JSON file
under ``leaderboards/<dataset>/<protocol>/``. Records whose split fingerprint
differs from the table's are left out and reported, never mixed in.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.data.store import atomic_write_text
from benchmark.results import load_records

TABLE_METRICS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50",
                 "hit@10", "mrr@10")
SORT_METRIC = "ndcg@10"


def build_tables(results_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Group records into tables; returns (tables, notes about records left out)."""
    groups: dict[tuple[str, str, str], list[tuple[Path, dict]]] = defaultdict(list)
    for path, record in load_records(results_dir):
        key = (record["dataset"]["name"], record["split"]["protocol"], record["track"])
        groups[key].append((path, record))
    tables, notes = [], []
    for (dataset, protocol, track), members in sorted(groups.items()):
        # the table's split is the one most records share (ties: lexicographically first)
        counts: dict[str, int] = defaultdict(int)
        for _, r in members:
            counts[r["split"]["fingerprint"]] += 1
        fingerprint = sorted(counts, key=lambda f: (-counts[f], f))[0]
        rows = []
        for path, r in members:
            if r["split"]["fingerprint"] != fingerprint:
                notes.append(f"{path}: split fingerprint {r['split']['fingerprint'][:12]} differs "
                             f"from the table's {fingerprint[:12]}; left out")
                continue
            rows.append(
                {
                    "method": r["method"]["name"],
                    "params": r["method"].get("params", {}),
                    "tuned": r["method"].get("tuned", False),
                    "metrics": r["metrics"],
                    "intervals": r["intervals"],
                    "list_metrics": r.get("list_metrics", {}),
                    "n_users_evaluated": r["n_users_evaluated"],
                }
            )
        rows.sort(key=lambda row: (-row["metrics"].get(SORT_METRIC, 0.0), row["method"]))
        first = members[0][1]
        tables.append(
            {
                "dataset": dataset,
                "dataset_checksum": first["dataset"].get("files_sha256"),
                "protocol": protocol,
                "track": track,
                "split_fingerprint": fingerprint,
                "gembench_version": __version__,
                "interval_method": first.get("interval_method"),
                "rows": rows,
            }
        )
    return tables, notes


def _cell(row: dict[str, Any], metric: str) -> str:
    if metric not in row["metrics"]:
        return "–"
    low, high = row["intervals"].get(metric, [float("nan"), float("nan")])
    return f"{row['metrics'][metric]:.4f} ({low:.4f}–{high:.4f})"


def to_markdown(table: dict[str, Any], metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    header = ["method", *metrics, "users"]
    lines = [
        f"## {table['track']} — {table['dataset']} ({table['protocol']} split)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in table["rows"]:
        cells = [row["method"], *(_cell(row, m) for m in metrics), str(row["n_users_evaluated"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean over evaluated users; in brackets the 95% interval ({table['interval_method']}). "
        f"Sorted by {SORT_METRIC}.",
        f"gembench {table['gembench_version']}; data set {table['dataset']} "
        f"(files sha256 {str(table['dataset_checksum'])[:16]}); "
        f"split fingerprint {table['split_fingerprint'][:16]}.",
        "",
    ]
    return "\n".join(lines)


def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str]]:
    """Rebuild every table under ``out_dir`` from the records in ``results_dir``."""
    tables, notes = build_tables(results_dir)
    written = []
    for table in tables:
        folder = Path(out_dir) / table["dataset"] / table["protocol"]
        md = folder / f"{table['track']}.md"
        js = folder / f"{table['track']}.json"
        atomic_write_text(md, to_markdown(table))
        atomic_write_text(js, json.dumps(table, indent=1, sort_keys=True) + "\n")
        written += [md, js]
    return written, tables, notes
