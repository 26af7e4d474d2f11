"""``gembench leaderboard``: rebuild the leaderboards from the result records.

Writes the Markdown / JSON / HTML tables, or prints one LaTeX table; its many table options
live here, apart from the commands that produce the records.
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import csv_list, guard


def leaderboard(
    results_dir: Annotated[Path, typer.Option(help="Result records.")] = Path("results"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("leaderboards"),
    format: Annotated[str, typer.Option(
        help="files (Markdown + JSON + index.html under --out) or latex (print only).")]
    = "files",
    track: Annotated[str | None, typer.Option(
        help="latex: the track; files: the track whose tables take --metrics (default: "
             "lora-rec and image-rec).")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="Comma-separated columns, e.g. recall@100,ndcg@100 (cut-offs up to the track's "
             "max K): of the full-ranking tables (files) or of the LaTeX table.")] = None,
    dataset: Annotated[str | None, typer.Option(help="latex: only this data set.")] = None,
    protocol: Annotated[str | None, typer.Option(help="latex: only this protocol.")] = None,
    intervals: Annotated[bool, typer.Option(
        "--intervals", help="latex: 95% intervals in brackets.")] = False,
    pm: Annotated[bool, typer.Option(
        "--pm", help="latex: ± half-width of the 95% interval (the default).")] = False,
    seeds: Annotated[bool, typer.Option(
        "--seeds", help="latex: the mean ± sd over seeds table (needs runs of 2+ seeds; "
                        "--metrics optional).")] = False,
) -> None:
    """Rebuild every leaderboard from the result records alone (or print a LaTeX table)."""

    def body() -> None:
        from benchmark import api
        from benchmark.leaderboard import seeds_to_markdown, to_markdown

        if format == "latex":
            if intervals and pm:
                raise ValueError("choose one of --intervals and --pm")
            latex = api.leaderboard(results_dir, out, format="latex", track=track,
                                    metrics=csv_list(metrics), dataset=dataset,
                                    protocol=protocol, style="intervals" if intervals else "pm",
                                    seeds=seeds)
            typer.echo(latex["text"], nl=False)
            for note in latex["notes"]:
                typer.echo(f"note: {note}", err=True)
            return
        result = api.leaderboard(results_dir, out, format=format, track=track,
                                 metrics=csv_list(metrics))
        for table in result["tables"]:
            typer.echo(to_markdown(table))
        for table in result["seed_tables"]:
            typer.echo(seeds_to_markdown(table))
        for note in result["notes"]:
            typer.echo(f"note: {note}")

    guard(body)
