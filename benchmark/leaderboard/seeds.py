"""Tables over seeds: mean ± sd per method, bold for the best mean."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any

import numpy as np

from benchmark import __version__
from benchmark.leaderboard.escape import _latex_escape, md_cell
from benchmark.leaderboard.latex import _latex_metric, _latex_table
from benchmark.leaderboard.tables import (
    REFERENCE_METHODS,
    _ranked,
    _reference_note,
    sort_metric,
    table_metrics,
)
from benchmark.results import (
    seeded_protocol,
    unseeded_protocol,
)

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


