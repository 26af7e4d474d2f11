"""``gembench edit run``: the lora-edit track (edit LoRAs toward a user's taste).

The ``edit`` sub-app, a group even with one command so ``edit run`` always parses; the
track, the judge and the leaderboard code are imported only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Quiet, TrustCode, guard

edit_app = typer.Typer(help="The lora-edit track: edit LoRAs toward a user's taste.",
                       no_args_is_help=True)


@edit_app.callback()
def _edit() -> None:
    """The lora-edit track (a group even with one command, so ``edit run`` always parses)."""


@edit_app.command("run")
def edit_run(
    dataset: Annotated[str, typer.Option(help="Registered data set name or folder.")]
    = "synthetic-small",
    methods: Annotated[str | None, typer.Option(help="Comma-separated editing methods.")] = None,
    steps: Annotated[str, typer.Option(help="Comma-separated step sizes.")] = "0.25,0.5,1,2",
    default_step: Annotated[float, typer.Option(help="Step of the headline metrics.")] = 1.0,
    bank: Annotated[Path | None, typer.Option(help="Bank index (default: synthetic).")] = None,
    components: Annotated[int, typer.Option(help="PCA components.")] = 32,
    n_users: Annotated[int, typer.Option(help="Evaluated users (seeded sample).")] = 200,
    loras_per_user: Annotated[int, typer.Option(help="Edited LoRAs per user.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Data sets, splits and banks.")] = Path("data"),
    results_dir: Annotated[Path, typer.Option(help="Where records go.")] = Path("results"),
    leaderboard_dir: Annotated[Path | None, typer.Option(
        help="Rebuild the leaderboards here afterwards (empty string: do not).")]
    = Path("leaderboards"),
    judge: Annotated[Path | None, typer.Option(
        help="Judge edits with this saved preference model (gembench judge fit) instead of "
             "the synthetic truth; its records form a table of their own.")] = None,
    quiet: Quiet = False,
    trust_code: TrustCode = False,
) -> None:
    """Run the lora-edit track: one record per method, with the gain-vs-fidelity curve."""

    def body() -> None:
        from benchmark.lora.track import run_lora_edit

        judge_kw = {}
        if judge is not None:
            from benchmark.judge import EmbeddingJudge, load_judge

            model = load_judge(judge, trust_code=trust_code)
            judge_kw = {"judge": EmbeddingJudge(model),
                        "judge_name": model.judge_meta_["method"]["name"]}
        names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        result = run_lora_edit(
            dataset, methods=names, steps=[float(s) for s in steps.split(",") if s.strip()],
            default_step=default_step, results_dir=results_dir, data_dir=data_dir, bank=bank,
            n_components=components, n_users=n_users, loras_per_user=loras_per_user,
            seed=seed, progress=not quiet, echo=typer.echo, **judge_kw,
        )
        table = result["curve"]
        at = table[table["step"] == default_step]
        typer.echo(at[["method", "gain", "gain_low", "gain_high", "win_rate", "fidelity",
                       "distance"]].round(4).to_string(index=False))
        for p in result["paths"]:
            typer.echo(f"wrote {p}")
        if leaderboard_dir is not None and str(leaderboard_dir):
            from benchmark.leaderboard import write_leaderboards

            files, _, notes = write_leaderboards(results_dir, leaderboard_dir)
            for note in notes:
                typer.echo(f"note: {note}")
            typer.echo(f"leaderboards rebuilt under {leaderboard_dir}/ ({len(files)} files)")

    guard(body)
