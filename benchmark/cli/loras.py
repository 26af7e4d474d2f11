"""``gembench loras ...``: the LoRA bank (index, latent space, synthetic weights).

The ``loras`` sub-app: index safetensors LoRAs into canonical vectors, fit the PCA space of
a bank group, write the synthetic world's LoRA files. The bank code (numpy, safetensors)
is imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Quiet, guard

loras_app = typer.Typer(help="LoRA bank: index safetensors LoRAs, fit a latent weight space.",
                        no_args_is_help=True)


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
