"""Leaderboards rebuilt from result records alone (same records -> byte-identical files).

One table per (data set, split protocol, track): a Markdown file and a JSON file
under ``leaderboards/<dataset>/<protocol>/``, plus one static page
``leaderboards/index.html`` with every table (sortable, inline JS) and a plot of
the sort metric with its intervals per method (inline SVG, drawn here). Records
whose split fingerprint differs from the table's are left out and reported,
never mixed in. Every metric's best method is compared with each other method by
a paired test over users (:mod:`benchmark.significance`, Holm-corrected).
"""

from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.data.store import atomic_write_text
from benchmark.results import load_records
from benchmark.significance import ALPHA, TEST_DESCRIPTIONS, compare_with_best

TABLE_METRICS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50",
                 "hit@10", "mrr@10")
SORT_METRIC = "ndcg@10"
TEST = "wilcoxon"
DAGGER = "†"
#: metrics where higher is not simply better: no "best", no significance test
NOT_RANKED = ("avg_popularity",)


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
        # the table's split is the one most records share (ties: lexicographically first)
        counts: dict[str, int] = defaultdict(int)
        for _, r in members:
            counts[r["split"]["fingerprint"]] += 1
        fingerprint = sorted(counts, key=lambda f: (-counts[f], f))[0]
        rows, vectors = [], {}
        for path, r in members:
            if r["split"]["fingerprint"] != fingerprint:
                notes.append(f"{path}: split fingerprint {r['split']['fingerprint'][:12]} differs "
                             f"from the table's {fingerprint[:12]}; left out")
                continue
            name = r["method"]["name"]
            if name in vectors:
                notes.append(f"{path}: a second record of method {name!r}; left out")
                continue
            vectors[name] = r.get("per_user", {})
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
                    "n_users_evaluated": r["n_users_evaluated"],
                    "significance": {},
                }
            )
        _add_significance(rows, vectors, test)
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
                "significance_test": significance_note(test),
                "rows": rows,
            }
        )
    return tables, notes


#: rows shown for reference (the synthetic truth), left out of "best" and of the tests
REFERENCE_METHODS = frozenset({"oracle"})


def _reference_note(table: dict[str, Any]) -> str:
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


def to_markdown(table: dict[str, Any], metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """One table as Markdown, with intervals, significance marks and provenance."""
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
        f"Bold: best per metric; {DAGGER}: not significantly different from the best "
        f"({table.get('significance_test', significance_note())}). `oracle` (the synthetic "
        "truth) is a reference ceiling, left out of the comparison.",
        provenance(table),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- LaTeX

_LATEX_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hit": "HR", "mrr": "MRR",
                "precision": "Prec", "map": "MAP"}


def _latex_escape(text: str) -> str:
    out = text
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                       ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        out = out.replace(char, repl)
    return out


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
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _latex_escape(
            f"{table['track']} on {table['dataset']}, {table['protocol']} split "
            f"(fingerprint {table['split_fingerprint'][:12]}). "
            f"Mean over evaluated users"
            + {"pm": " ± half-width of the 95% interval",
               "intervals": " with the 95% interval",
               "none": ""}[style]
            + f" ({table['interval_method']}). "
        ).replace("±", r"$\pm$") + r"Bold: best; \dag: not significantly different from the best ("
        + _latex_escape(table.get("significance_test", significance_note())) + "). "
        + _reference_note(table) + _latex_escape(provenance(table)) + "}",
        r"\label{tab:" + f"{table['dataset']}-{table['protocol']}-{table['track']}" + "}",
        r"\begin{tabular}{l" + "r" * len(metrics) + "}",
        r"\toprule",
        "Method & " + " & ".join(_latex_metric(m) for m in metrics) + r" \\",
        r"\midrule",
    ]
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
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML

def _svg_plot(table: dict[str, Any], metric: str = SORT_METRIC) -> str:
    """Mean with its 95% interval per method, as a horizontal dot-and-whisker SVG."""
    rows = [r for r in table["rows"] if metric in r["metrics"]]
    label_w, plot_w, row_h, top, bottom = 150, 420, 22, 28, 34
    height = top + row_h * len(rows) + bottom
    width = label_w + plot_w + 20
    highs = [r["intervals"].get(metric, [0.0, r["metrics"][metric]])[1] for r in rows]
    xmax = max([*highs, *(r["metrics"][metric] for r in rows), 1e-9]) * 1.05

    def x(v: float) -> float:
        return label_w + plot_w * max(0.0, v) / xmax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(metric)} per method with 95% intervals">',
             f'<text x="{label_w}" y="16" font-size="13" font-weight="bold">'
             f'{html.escape(metric)} (mean, 95% interval)</text>']
    axis_y = top + row_h * len(rows)
    for i in range(6):
        v = xmax * i / 5
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


def to_html(tables: list[dict[str, Any]], metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """One static page with every table (rendered and sorted by inline JS) and plots."""
    payload = [
        {"metrics": list(metrics),
         "rows": [{k: row[k] for k in ("method", "metrics", "intervals", "significance",
                                       "n_users_evaluated")} for row in t["rows"]]}
        for t in tables
    ]
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    sections = []
    for i, t in enumerate(tables):
        title = f"{t['track']} — {t['dataset']} ({t['protocol']} split)"
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["method", *metrics, "users"])
        sections.append(
            f'<section id="{html.escape(t["dataset"])}-{html.escape(t["protocol"])}-'
            f'{html.escape(t["track"])}">\n<h2>{html.escape(title)}</h2>\n'
            f'<table class="lb" id="table-{i}"><thead><tr>{head}</tr></thead>'
            f'<tbody></tbody></table>\n'
            f'<p class="note">Mean over evaluated users; in brackets the 95% interval '
            f'({html.escape(str(t["interval_method"]))}). Click a header to sort. '
            f'Bold: best per metric; {DAGGER}: not significantly different from the best '
            f'({html.escape(t.get("significance_test", significance_note()))}). '
            f'oracle (the synthetic truth) is a reference ceiling, left out of the comparison.<br>'
            f'{html.escape(provenance(t))}</p>\n{_svg_plot(t)}\n</section>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>gembench leaderboards</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"<h1>gembench leaderboards</h1>\n<p class=\"note\">Rebuilt from result records by "
        f"<code>gembench leaderboard</code> (gembench {__version__}); {len(tables)} table(s)."
        "</p>\n<noscript><p>The tables need JavaScript; the Markdown and JSON files next to "
        "this page hold the same numbers.</p></noscript>\n"
        + "\n".join(sections)
        + f'\n<script type="application/json" id="lb-data">{data}</script>\n'
        f"<script>\n{_JS}\n</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- files

def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str]]:
    """Rebuild every table under ``out_dir`` (and ``index.html``) from ``results_dir``."""
    tables, notes = build_tables(results_dir)
    written = []
    for table in tables:
        folder = Path(out_dir) / table["dataset"] / table["protocol"]
        md = folder / f"{table['track']}.md"
        js = folder / f"{table['track']}.json"
        atomic_write_text(md, to_markdown(table))
        atomic_write_text(js, json.dumps(table, indent=1, sort_keys=True) + "\n")
        written += [md, js]
    index = Path(out_dir) / "index.html"
    atomic_write_text(index, to_html(tables))
    written.append(index)
    return written, tables, notes


def select_tables(tables: list[dict[str, Any]], track: str | None = None,
                  dataset: str | None = None, protocol: str | None = None
                  ) -> list[dict[str, Any]]:
    """The tables matching the given track / data set / protocol (None: any)."""
    return [t for t in tables
            if (track is None or t["track"] == track)
            and (dataset is None or t["dataset"] == dataset)
            and (protocol is None or t["protocol"] == protocol)]


def table_fingerprint(results_dir: str | os.PathLike, dataset: str, protocol: str,
                      track: str) -> str | None:
    """The split fingerprint of the existing table for (dataset, protocol, track), if any."""
    counts: dict[str, int] = defaultdict(int)
    for _, r in load_records(results_dir):
        if (r["dataset"]["name"], r["split"]["protocol"], r["track"]) == (dataset, protocol,
                                                                           track):
            counts[r["split"]["fingerprint"]] += 1
    if not counts:
        return None
    return sorted(counts, key=lambda f: (-counts[f], f))[0]
