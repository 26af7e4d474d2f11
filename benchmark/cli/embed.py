"""``gembench embed``: compute image or text embeddings into a store.

Its own module because its options (encoder, columns, workers, GPUs) are many and shared
with no other command; open_clip, transformers, torch and ray load only when it runs.
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Address, Engine, Quiet, guard


def embed(
    encoder: Annotated[str, typer.Option(
        help="open_clip:<arch>:<pretrained> (e.g. open_clip:ViT-B-32:openai) or "
             "hf:<model id or local folder> (CLIP / SigLIP).")],
    out: Annotated[Path, typer.Option(help="Store (or data set) folder; writes "
                                           "embeddings/<encoder>/<kind>.npy + .ids.parquet.")],
    images: Annotated[Path | None, typer.Option(
        help="A folder of images, or a table (.parquet/.csv) with an id and a path column."
    )] = None,
    texts: Annotated[Path | None, typer.Option(help="A table of texts (prompts, tags).")] = None,
    text_column: Annotated[str, typer.Option(help="Column of --texts to embed.")] = "prompt",
    id_column: Annotated[str | None, typer.Option(
        help="Id column (default: image_id / lora_id / id, else the row number).")] = None,
    path_column: Annotated[str, typer.Option(help="Image path column of an --images table.")]
    = "path",
    kind: Annotated[str | None, typer.Option(
        help="Store kind (default: images or texts), e.g. loras.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Encoder folder name (default: from --encoder).")] = None,
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu / cuda (default: cuda if any).")]
    = None,
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
    workers: Annotated[int | None, typer.Option(
        help="ray: encoder actors (default 2); local: image-reading threads (default 4).")]
    = None,
    gpus_per_worker: Annotated[float | None, typer.Option(
        help="ray: GPUs per actor (default: 1 where the cluster has GPUs, else 0).")] = None,
) -> None:
    """Compute L2-normalised embeddings of images or texts into a store; resumes after an
    interruption (finished batches are not recomputed)."""

    def body() -> None:
        from benchmark import api

        res = api.embed(encoder, out, images=images, texts=texts, text_column=text_column,
                        id_column=id_column, path_column=path_column, kind=kind, name=name,
                        batch_size=batch_size, device=device, progress=not quiet,
                        engine=engine, address=address,
                        **({"workers": workers} if workers is not None else {}),
                        **({"gpus_per_worker": gpus_per_worker}
                           if gpus_per_worker is not None else {}))
        typer.echo(f"{res['rows']} {res['kind']} embeddings (d={res['dim']}) in {res['path']}"
                   f"; {res['missing_count']} unreadable, listed in {res['kind']}.json")

    guard(body)
