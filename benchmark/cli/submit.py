"""``gembench evaluate`` and ``gembench validate``: check and score a rankings file.

The two commands a submitter runs on their own file against a split: ``validate`` lists
every violated rule, ``evaluate`` scores it (and may write a record for the leaderboards).
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Metrics, csv_list, guard


def evaluate(
    track: Annotated[str, typer.Option(help="lora-rec or image-rec.")],
    split: Annotated[Path, typer.Option(help="A split folder.")],
    submission: Annotated[Path, typer.Option(help="CSV or parquet: user_id,item_id,rank.")],
    out: Annotated[Path | None, typer.Option(help="Write the result JSON here.")] = None,
    record: Annotated[bool, typer.Option(
        help="Also write a result record (needs --name) for the leaderboards.")] = False,
    name: Annotated[str | None, typer.Option(help="Method name of the record.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where the record is written.")]
    = Path("results"),
    metrics: Metrics = None,
) -> None:
    """Score a rankings file against a split's test part; invalid files exit 2.

    A file ranks at most the track's max K items per user (100).
    """

    def body() -> None:
        from benchmark import api

        typer.echo(json.dumps(api.evaluate(track, split, submission, out, record=record,
                                           name=name, results_dir=results_dir,
                                           metrics=csv_list(metrics)), indent=2))

    guard(body)


def validate(
    submission: Annotated[Path, typer.Argument(help="CSV or parquet: user_id,item_id,rank.")],
    track: Annotated[str, typer.Option(help="lora-rec or image-rec.")],
    split: Annotated[Path, typer.Option(help="A split folder.")],
) -> None:
    """Check a rankings file against every rule; list each violated rule with its rows.

    Exit 0 when valid, 2 when any rule is violated.
    """

    def body() -> None:
        from benchmark import api

        report = api.validate(track, split, submission)
        typer.echo(report["text"])
        if not report["valid"]:
            raise typer.Exit(2)

    guard(body)
