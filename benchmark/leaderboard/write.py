"""Writing every table, curve and the page, atomically, from the records alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, overload

from benchmark.core.io import atomic_write_text
from benchmark.errors import DataError
from benchmark.leaderboard.curves import build_curves, curve_markdown, curve_svg
from benchmark.leaderboard.html import to_html
from benchmark.leaderboard.seeds import _json_null_nan, build_seed_tables, seeds_to_markdown
from benchmark.leaderboard.tables import build_tables, check_columns, to_markdown, with_columns


def _board_folder(out_dir: str | os.PathLike, table: dict[str, Any]) -> Path:
    """``out_dir/<dataset>/<protocol>``, its names checked and the folder inside ``out_dir``
    (the names come from records, which are files anyone can edit)."""
    from benchmark.core.names import safe_name, under_root

    safe_name(table["track"], "track name")
    return under_root(out_dir, Path(out_dir) / safe_name(table["dataset"], "data set name")
                      / safe_name(table["protocol"], "split protocol"))


@overload
def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: Literal[False] = False,
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str]]: ...


@overload
def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: Literal[True],
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None
                       ) -> tuple[list[Path], list[dict[str, Any]], list[str],
                                  list[dict[str, Any]]]: ...


def write_leaderboards(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       with_seeds: bool = False,
                       metrics: list[str] | tuple[str, ...] | None = None,
                       track: str | None = None) -> tuple:
    """Rebuild every table under ``out_dir`` (and ``index.html``) from ``results_dir``.

    Returns (files, per-seed tables, notes); with ``with_seeds`` also the seed tables
    (:func:`build_seed_tables`), written to ``<dataset>/<protocol>/<track>-seeds.{md,json}``.
    A seed-0-only results folder gives the same files as before seeds existed: no
    ``-seeds`` files and no ``seed`` key in the tables' JSON. ``metrics`` (checked by
    :func:`check_columns`) are the columns of the full-ranking tables (of ``track`` only,
    when given) instead of their defaults (:func:`with_columns`).
    """
    if metrics:
        metrics = check_columns(metrics, track)
    if not Path(results_dir).is_dir():
        raise DataError("the results folder does not exist; no leaderboard was written",
                        path=str(results_dir),
                        rule="leaderboards are rebuilt from existing records")
    tables, notes = build_tables(results_dir)
    if not tables:  # never replace a board by an empty one
        raise DataError("no result records here: nothing to build a leaderboard from, so the "
                        f"boards under {out_dir} are left as they are", path=str(results_dir),
                        rule="a leaderboard is built from at least one record")
    tables = with_columns(tables, metrics, track)
    seed_tables = with_columns(build_seed_tables(tables), metrics, track)
    written = []
    for table in tables:
        folder = _board_folder(out_dir, table)
        md = folder / f"{table['track']}.md"
        js = folder / f"{table['track']}.json"
        atomic_write_text(md, to_markdown(table))
        saved = {k: v for k, v in table.items() if k != "seed" or v != 0}
        atomic_write_text(js, json.dumps(saved, indent=1, sort_keys=True) + "\n")
        written += [md, js]
    for table in seed_tables:
        folder = _board_folder(out_dir, table)
        md = folder / f"{table['track']}-seeds.md"
        js = folder / f"{table['track']}-seeds.json"
        atomic_write_text(md, seeds_to_markdown(table))
        atomic_write_text(js, json.dumps(_json_null_nan(table), indent=1, sort_keys=True,
                                         allow_nan=False) + "\n")
        written += [md, js]
    curves = build_curves(tables)
    for curve in curves:
        folder = _board_folder(out_dir, curve)
        stem = f"{curve['track']}-{curve['metric']}-vs-{curve.get('x_name', 'k')}"
        for path, text in ((folder / f"{stem}.md", curve_markdown(curve)),
                           (folder / f"{stem}.svg", curve_svg(curve) + "\n")):
            atomic_write_text(path, text)
            written.append(path)
    index = Path(out_dir) / "index.html"
    atomic_write_text(index, to_html(tables, curves=curves, seed_tables=seed_tables))
    written.append(index)
    if with_seeds:
        return written, tables, notes, seed_tables
    return written, tables, notes


def select_tables(tables: list[dict[str, Any]], track: str | None = None,
                  dataset: str | None = None, protocol: str | None = None
                  ) -> list[dict[str, Any]]:
    """The tables matching the given track / data set / protocol (None: any)."""
    return [t for t in tables
            if (track is None or t["track"] == track)
            and (dataset is None or t["dataset"] == dataset)
            and (protocol is None or t["protocol"] == protocol)]


