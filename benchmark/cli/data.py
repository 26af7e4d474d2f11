"""``gembench data ...`` and ``gembench split``: get, build, import, inspect and split data.

The ``data`` sub-app (download, images, synth, import, info) and the top-level ``split``
command, which turns a data set folder into train/valid/test parts. Only typer is imported
here; huggingface_hub, requests, pandas and PIL are imported when a command runs.
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Quiet, csv_list, guard

data_app = typer.Typer(help="Build, import and inspect data sets.", no_args_is_help=True)


@data_app.command("download")
def download(
    source: Annotated[str, typer.Argument(help="What to download: imagegem.")],
    out: Annotated[Path, typer.Option(help="Output folder (raw/ tables + DATACARD).")]
    = Path("data/imagegem-release"),
    revision: Annotated[str | None, typer.Option(
        help="Branch, tag or commit for both repos (default: the pinned revisions).")] = None,
    endpoint: Annotated[str | None, typer.Option(
        help="Hub URL (default: HF_ENDPOINT or https://huggingface.co).")] = None,
    pattern: Annotated[list[str] | None, typer.Option(
        help="Files to fetch (shell pattern; repeatable). Default: *.parquet *.csv README.md.")]
    = None,
    quiet: Quiet = False,
) -> None:
    """Download the ImageGem tables from the Hugging Face Hub, checksummed and resumable."""

    def body() -> None:
        from benchmark.data.download import DEFAULT_PATTERNS, download_imagegem
        from benchmark.errors import DataError

        if source != "imagegem":
            raise DataError(f"unknown source {source!r}", rule="sources: imagegem")
        manifest = download_imagegem(out, revision=revision, endpoint=endpoint,
                                     allow_patterns=pattern or DEFAULT_PATTERNS,
                                     progress=not quiet)
        summary = {repo: {"commit": e["commit"], "files": len(e["files"]),
                          "bytes": sum(f["bytes"] for f in e["files"].values()),
                          "downloaded": sum(f["status"] == "downloaded"
                                            for f in e["files"].values())}
                   for repo, e in manifest["repos"].items()}
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"data card: {out / 'DATACARD.md'}; convert with: "
                   f"gembench data import imagegem {out / 'raw'} --out data/imagegem")

    guard(body)


@data_app.command("images")
def images(
    dataset: Annotated[Path, typer.Option(
        help="A data set folder (its images table) or a .parquet / .csv table.")],
    cache: Annotated[Path | None, typer.Option(
        help="Image cache folder (default: image-cache next to the data set).")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent requests.")] = 8,
    retries: Annotated[int, typer.Option(help="Retries on 5xx / 429 / timeouts.")] = 3,
    backoff: Annotated[float, typer.Option(help="First retry wait in s (doubles).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Per-request timeout in s.")] = 30.0,
    url_column: Annotated[str, typer.Option(help="Column with the image URL.")] = "url",
    id_column: Annotated[str, typer.Option(help="Column with the image id.")] = "image_id",
    retry_failed: Annotated[bool, typer.Option(
        help="Ask again for images recorded as not found / truncated / undecodable.")] = False,
    quiet: Quiet = False,
) -> None:
    """Fetch image files by URL into a content-addressed cache; gone images are reported."""

    def body() -> None:
        from benchmark.data.fetch_images import REPORT_FILE, fetch_images

        target = cache if cache is not None else dataset.resolve().parent / "image-cache"
        report = fetch_images(dataset, target, url_column=url_column, id_column=id_column,
                              workers=workers, retries=retries, backoff=backoff,
                              timeout=timeout, retry_failed=retry_failed, progress=not quiet)
        typer.echo(json.dumps({"total": report["total"], "counts": report["counts"],
                               "requests": report["requests"]}, indent=2))
        typer.echo(f"report (with the failed ids): {target / REPORT_FILE}")

    guard(body)


@data_app.command("synth")
def data_synth(
    scale: Annotated[str, typer.Option(help="tiny, small or full.")] = "small",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/synthetic-small"),
    seed: Annotated[int, typer.Option(help="Seed: same seed, byte-identical files.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Build the seeded synthetic world (users, LoRAs, images, interactions, truth)."""

    def body() -> None:
        from benchmark import api

        ds = api.synth(scale, out, seed=seed, progress=not quiet)
        typer.echo(json.dumps(api.info(ds.path), indent=2))

    guard(body)


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(
        help="imagegem, recbole, pamela or learn-user-pref.")],
    src: Annotated[Path, typer.Argument(help="Folder with the source files.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    primary_only: Annotated[bool, typer.Option(help="imagegem: primary model files only.")]
    = False,
    base_model: Annotated[str | None, typer.Option(
        help="imagegem: comma-separated baseModel values to keep.")] = None,
    exclude_own_loras: Annotated[bool, typer.Option(
        help="imagegem: drop generate rows of a user's own LoRAs.")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="learn-user-pref: unpickle the release's pickled pandas files "
        "once (this runs code from them: trusted files only); later imports read parquet.")]
    = False,
    rating_scale: Annotated[str | None, typer.Option(
        help="pamela: 'lo,hi' rating range to enforce.")] = None,
    quiet: Quiet = False,
) -> None:
    """Convert a real data source (ImageGem, RecBole, PAMELA, learn-user-pref) into the schema."""

    def body() -> None:
        from benchmark import api

        options: dict = {}
        if source == "imagegem":
            options = {"primary_only": primary_only, "base_models": csv_list(base_model),
                       "exclude_own_loras": exclude_own_loras}
        elif source == "learn-user-pref":
            options = {"allow_pickle": allow_pickle}
        elif source == "pamela" and rating_scale:
            try:
                lo, hi = (float(x) for x in rating_scale.split(","))
            except ValueError:
                raise ValueError(f"--rating-scale must be 'lo,hi', got {rating_scale!r}") from None
            options = {"rating_scale": (lo, hi)}
        ds = api.import_data(source, src, out, progress=not quiet, **options)
        typer.echo(json.dumps(api.info(ds.path), indent=2))

    guard(body)


@data_app.command("info")
def data_info(path: Annotated[Path, typer.Argument(help="A data set folder.")]) -> None:
    """Show what a data set folder holds (tables, rows, embeddings, truth)."""

    def body() -> None:
        from benchmark import api

        typer.echo(json.dumps(api.info(path), indent=2))

    guard(body)


def split(
    dataset: Annotated[Path, typer.Option(help="A data set folder.")],
    protocol: Annotated[str, typer.Option(
        help="leave-last-out, temporal, random or cold-start.")] = "leave-last-out",
    out: Annotated[Path, typer.Option(help="Output split folder.")] = Path("split"),
    tracks: Annotated[str, typer.Option(
        help="Comma-separated tracks: lora-rec, image-rec, preference.")] = "lora-rec,image-rec",
    test_ratio: Annotated[float, typer.Option(help="temporal/random: per-user test share.")]
    = 0.2,
    valid_ratio: Annotated[float, typer.Option(help="temporal/random: validation share.")] = 0.1,
    cold_item_ratio: Annotated[float, typer.Option(help="cold-start: share of items held out.")]
    = 0.1,
    min_history: Annotated[int, typer.Option(help="Users with fewer interactions are dropped.")]
    = 3,
    valid: Annotated[bool, typer.Option(help="Make a validation part.")] = True,
    seed: Annotated[int, typer.Option(help="Seed (random and cold-start).")] = 0,
    quiet: Quiet = False,
) -> None:
    """Split a data set and save train/valid/test parquet files with a fingerprint."""

    def body() -> None:
        from benchmark import api

        result = api.split(
            dataset, protocol, out, tracks=csv_list(tracks), test_ratio=test_ratio,
            valid_ratio=valid_ratio, cold_item_ratio=cold_item_ratio, min_history=min_history,
            valid=valid, seed=seed, progress=not quiet,
        )
        typer.echo(json.dumps({k: result.meta[k] for k in
                               ("protocol", "counts", "tracks", "fingerprint")}, indent=2))

    guard(body)
