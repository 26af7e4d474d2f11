"""Curves across tables: accuracy-vs-k (preference), gain-vs-fidelity (lora-edit)."""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from benchmark.leaderboard.escape import md_cell

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


