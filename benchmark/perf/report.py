"""The main run's comparison figures and its table (the GPU section's lines appended).

The ratios against the floor, RecBole and pytrec_eval, the targets met and the scaling
rows are computed from the finished report and printed as one Markdown table; this is pure
formatting of a dict, kept apart from the driver that fills it.
"""

from __future__ import annotations

from typing import Any

from benchmark.perf.gpu import format_gpu
from benchmark.perf.model import TARGETS


def _compare(report: dict[str, Any]) -> dict[str, Any]:
    g = report["gembench"]
    out: dict[str, Any] = {}
    if "wall_s" in g and report["floor"]["wall_s"]:
        out["gembench_over_floor"] = g["wall_s"] / report["floor"]["wall_s"]
        out["floor_target_met"] = out["gembench_over_floor"] <= TARGETS["floor_ratio_max"]
    if "wall_s" in g:
        out["peak_rss_gb"] = g["peak_rss_mb"] / 1024
        out["memory_target_met"] = out["peak_rss_gb"] < TARGETS["peak_rss_gb_max"]
    rb = report.get("recbole", {})
    if "wall_s" in rb and "wall_s" in g:
        out["recbole_over_gembench"] = rb["wall_s"] / g["wall_s"]
        out["recbole_target_met"] = out["recbole_over_gembench"] >= TARGETS["recbole_speedup_min"]
        ours, theirs = g.get("summary", {}), rb.get("summary", {})
        pairs = [(f"{m}@{k}", f"{r}@{k}") for m, r in (("recall", "recall"), ("ndcg", "ndcg"),
                 ("hit", "hit"), ("mrr", "mrr")) for k in (10, 20, 50)]
        diffs = [abs(ours[a] - theirs[b]) for a, b in pairs if a in ours and b in theirs]
        out["recbole_max_metric_diff"] = max(diffs) if diffs else None
    m = report.get("metrics_only", {})
    if m.get("reference_evaluate_s"):
        out["metrics_speedup_vs_reference"] = m["reference_evaluate_s"] / m["gembench_s"]
        out["metrics_target_met"] = out["metrics_speedup_vs_reference"] >= 1.0
    out["load_target_met"] = report["load"]["total_s"] < TARGETS["load_s_max"]
    runs = [r for r in report["runs"] if "wall_s" in r["gembench"]]
    if runs:
        first = runs[0]
        out["scaling"] = [
            {"fraction": r["fraction"], "cells_ratio": r["cells"] / first["cells"],
             "gembench_time_ratio": r["gembench"]["wall_s"] / first["gembench"]["wall_s"],
             "floor_time_ratio": (r.get("floor_s") or 0) / (first.get("floor_s") or 1),
             "peak_rss_mb": r["gembench"]["peak_rss_mb"]}
            for r in runs
        ]
    return out


def format_table(report: dict[str, Any]) -> str:
    if "comparison" not in report:  # --gpu: the GPU section only
        return "\n".join([f"gembench perf (GPU section) -- scale {report['scale']}, "
                          f"k={report['k']}, d={report['dim']}", *format_gpu(report)])
    c = report["comparison"]
    g, f = report["gembench"], report["floor"]
    lines = [
        f"gembench perf -- scale {report['scale']}, k={report['k']}, d={report['dim']}, "
        f"memory budget {report['memory_budget_mb']:g} MB, load average "
        f"{report['load_average_start']} -> {report.get('load_average_end')}",
        "",
        "| measurement | wall s | peak RSS MB | note |",
        "| --- | ---: | ---: | --- |",
    ]

    def row(name, res, note=""):
        if "wall_s" in res:
            lines.append(f"| {name} | {res['wall_s']:.2f} | {res.get('peak_rss_mb', 0):.0f} | "
                         f"{note} |")
        else:
            lines.append(f"| {name} | - | - | {res.get('error', 'not run')[:120]!r} |")

    row("floor: torch matmul + topk", f["torch"], f"chunks of {f['torch'].get('chunk_users')}")
    row("floor: faiss IndexFlatIP", f["faiss"], f"{f['faiss'].get('threads')} threads")
    row("gembench full evaluation", g,
        f"chunks of {g.get('chunk_users')} users; exact vs floor selection: "
        f"{g.get('exactness', {}).get('identical')}")
    if "recbole" in report:
        rb = report["recbole"]
        row("RecBole Trainer.evaluate (full sort)", rb,
            f"{rb.get('users_per_batch')} users/batch; setup {rb.get('setup_s', 0):.1f}s")
    m = report["metrics_only"]
    lines.append(f"| metrics only: gembench | {m.get('gembench_s', float('nan')):.3f} | | "
                 f"{m.get('n_users')} users x {m.get('k')} |")
    if m.get("reference"):
        lines.append(f"| metrics only: {m['reference']} evaluate() | "
                     f"{m['reference_evaluate_s']:.3f} | | with building its dicts: "
                     f"{m['reference_with_inputs_s']:.2f}s; max |diff| {m['max_abs_diff']:.1e} |")
    ld = report["load"]
    lines.append(f"| loading: split ({'cached' if ld['split_cached'] else 'built'}) + "
                 f"sparse train matrix | {ld['total_s']:.2f} | | split {ld['split_s']:.1f}s, "
                 f"matrix {ld['matrix_s']:.1f}s |")
    lines += ["", "| target | figure | met |", "| --- | --- | --- |"]

    def target(name, key, fmt, met_key):
        if key in c:
            lines.append(f"| {name} | {fmt.format(c[key])} | {c.get(met_key)} |")

    target("gembench / floor <= 1.5", "gembench_over_floor", "{:.2f}x", "floor_target_met")
    target("RecBole / gembench >= 5", "recbole_over_gembench", "{:.1f}x", "recbole_target_met")
    target("peak RSS < 3 GB", "peak_rss_gb", "{:.2f} GB", "memory_target_met")
    target("metrics: reference / gembench >= 1", "metrics_speedup_vs_reference", "{:.1f}x",
           "metrics_target_met")
    lines.append(f"| loading < 60 s | {ld['total_s']:.1f} s | {c.get('load_target_met')} |")
    if c.get("recbole_max_metric_diff") is not None:
        lines.append(f"\nRecBole vs gembench metric values: max |diff| "
                     f"{c['recbole_max_metric_diff']:.2e}")
    if c.get("scaling"):
        lines += ["", "scaling (relative to the smallest run):", "",
                  "| users x items | cells ratio | gembench time ratio | floor time ratio | "
                  "gembench s | floor s | peak RSS MB |", "| --- | ---: | ---: | ---: | ---: | "
                  "---: | ---: |"]
        for s, r in zip(c["scaling"], [r for r in report["runs"] if "wall_s" in r["gembench"]],
                        strict=True):
            lines.append(f"| {r['users']} x {r['items']} (1/{1 / r['fraction']:g}) | "
                         f"{s['cells_ratio']:.1f} | {s['gembench_time_ratio']:.1f} | "
                         f"{s['floor_time_ratio']:.1f} | {r['gembench']['wall_s']:.2f} | "
                         f"{r.get('floor_s', float('nan')):.2f} | {s['peak_rss_mb']:.0f} |")
    lines += format_gpu(report)
    return "\n".join(lines)
