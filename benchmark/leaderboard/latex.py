"""Booktabs LaTeX tables for papers (names escaped)."""

from __future__ import annotations

from typing import Any

from benchmark.leaderboard.escape import _latex_escape
from benchmark.leaderboard.tables import _marks, _reference_note, provenance, significance_note

_LATEX_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hit": "HR", "mrr": "MRR",
                "precision": "Prec", "map": "MAP"}


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


