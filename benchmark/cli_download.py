"""``gembench data download`` and ``gembench data images``: get the real ImageGem data.

Registered on the ``data`` sub-app of :mod:`benchmark.cli`. Only typer is imported
here; huggingface_hub, requests, pandas and PIL are imported when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli_common import Quiet, guard


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
