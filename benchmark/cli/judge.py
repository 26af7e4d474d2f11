"""``gembench judge fit`` and ``gembench judge score``: saved preference judges.

The ``judge`` sub-app: fit a preference method and save it, then score pairs or
(user, image) utilities with it (the lora-edit track can judge its edits with one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import TrustCode, guard

judge_app = typer.Typer(help="Fit, save and apply preference judges (for the lora-edit track).",
                        no_args_is_help=True)


@judge_app.command("fit")
def judge_fit(
    method: Annotated[str, typer.Option(help="A preference method (e.g. user-embedding).")],
    out: Annotated[Path, typer.Option(help="Judge folder to write.")],
    dataset: Annotated[str, typer.Option(help="Registered data set name or a data set folder.")]
    = "synthetic-small",
    k: Annotated[str, typer.Option(help="Judgements of held-out users the judge sees.")]
    = "all",
    seed: Annotated[int, typer.Option(help="Seed of data, split and method.")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Where built data sets and splits live.")]
    = Path("data"),
) -> None:
    """Fit a preference method on the preference split's training pairs and save it."""

    def body() -> None:
        from benchmark import api

        out_dir, metrics = api.fit_judge(method, out, dataset=dataset, k=k, seed=seed,
                                         data_dir=data_dir)
        typer.echo(f"judge {method} written to {out_dir}; test accuracy "
                   f"{metrics['accuracy']:.4f}, held-out users "
                   f"{metrics.get('accuracy_unseen', float('nan')):.4f}")

    guard(body)


@judge_app.command("score")
def judge_score(
    judge: Annotated[Path, typer.Argument(help="A judge folder (gembench judge fit).")],
    pairs: Annotated[Path, typer.Option(
        help="Parquet/CSV with user_id, image_a, image_b (pairs) or user_id, image_id.")],
    out: Annotated[Path | None, typer.Option(help="Write the scores here (parquet/csv).")]
    = None,
    dataset_path: Annotated[Path | None, typer.Option(
        help="Where the judge's data set lives now (if moved).")] = None,
    trust_code: TrustCode = False,
) -> None:
    """Score pairs (d = s(u,a) - s(u,b), p(a)) or (user, image) utilities with a saved judge."""

    def body() -> None:
        from benchmark import api

        scored = api.score_with_judge(judge, pairs, out=out, dataset_path=dataset_path,
                                      trust_code=trust_code)
        typer.echo(scored.head(20).to_string(index=False))
        if out is not None:
            typer.echo(f"{len(scored)} rows written to {out}")

    guard(body)
