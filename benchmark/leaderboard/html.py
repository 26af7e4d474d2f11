"""The one-page HTML leaderboard (tables, interval plots as inline SVG)."""

from __future__ import annotations

import html
import json
from typing import Any

from benchmark import __version__
from benchmark.leaderboard.curves import curve_svg
from benchmark.leaderboard.seeds import _seeds_html
from benchmark.leaderboard.tables import (
    DAGGER,
    _marks,
    _reference_note,
    _users_note,
    provenance,
    significance_note,
    sort_metric,
    table_metrics,
)


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


