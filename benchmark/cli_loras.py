"""``gembench loras ...`` (bank, latent space, synthetic weights) and ``gembench edit run``.

Wired into the main CLI with ``app.add_typer(loras_app, name="loras")`` and
``app.add_typer(edit_app, name="edit")``. Imports are lazy so ``gembench --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli_common import Quiet, TrustCode, guard

loras_app = typer.Typer(help="LoRA bank: index safetensors LoRAs, fit a latent weight space.",
                        no_args_is_help=True)
edit_app = typer.Typer(help="The lora-edit track: edit LoRAs toward a user's taste.",
                       no_args_is_help=True)



@edit_app.callback()
def _edit() -> None:
    """The lora-edit track (a group even with one command, so ``edit run`` always parses)."""



@loras_app.command("index")
def loras_index(
    source: Annotated[Path, typer.Argument(help="Folder of .safetensors LoRAs (recursive).")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    form: Annotated[str, typer.Option(help="Canonical form: rank1 or raw.")] = "rank1",
    quiet: Quiet = False,
) -> None:
    """Index LoRA files: canonical vectors per (base model, layout), memory-mapped."""

    def body() -> None:
        from benchmark.lora.bank import build_index

        index = build_index(source, out, form=form, progress=not quiet)
        for g in index.groups:
            typer.echo(f"group {g['group']}: {g['n']} LoRAs, base model {g['base_model']}, "
                       f"dim {index.layout(g['group']).dim}")
        for s in index.skipped:
            typer.echo(f"skipped {s['path']}: {s['reason']}", err=True)
        typer.echo(f"indexed {len(index.entries())} LoRAs, skipped {len(index.skipped)} "
                   f"-> {out}")

    guard(body)


@loras_app.command("space")
def loras_space(
    index: Annotated[Path, typer.Argument(help="Index folder from 'gembench loras index'.")],
    components: Annotated[int, typer.Option(help="Number of PCA components.")] = 64,
    group: Annotated[int | None, typer.Option(help="Bank group (default: the largest).")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per IncrementalPCA batch.")] = 4096,
    out: Annotated[Path | None, typer.Option(help="Output .npz (default INDEX/space-gN.npz).")]
    = None,
    quiet: Quiet = False,
) -> None:
    """Fit the PCA latent space of one bank group; report the explained variance."""

    def body() -> None:
        from benchmark.lora.bank import open_index
        from benchmark.lora.space import fit_space

        bank = open_index(index)
        g = bank.largest_group() if group is None else group
        space = fit_space(bank, g, components, batch_size, progress=not quiet)
        path = space.save(out or index / f"space-g{g}.npz")
        ratio = space.explained_variance_ratio_
        typer.echo(json.dumps({"group": g, "n_loras": space.n_samples_,
                               "components": int(len(ratio)),
                               "explained_variance": round(float(ratio.sum()), 6),
                               "first": [round(float(r), 6) for r in ratio[:5]],
                               "path": str(path)}))

    guard(body)


@loras_app.command("synth")
def loras_synth(
    dataset: Annotated[Path, typer.Option(help="A synthetic data set folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the .safetensors files.")],
    limit: Annotated[int, typer.Option(help="Write the first LIMIT LoRAs.")] = 2000,
    quiet: Quiet = False,
) -> None:
    """Write the synthetic world's LoRA weights (kohya and PEFT keys, ranks 1/2/4)."""

    def body() -> None:
        from benchmark.data.store import load_dataset
        from benchmark.lora.synthetic import SyntheticWorld

        paths = SyntheticWorld(load_dataset(dataset)).write_bank(out, limit=limit,
                                                                 progress=not quiet)
        typer.echo(f"wrote {len(paths)} LoRA files -> {out}")

    guard(body)


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
