"""A data set by registered name (built on first use) or by folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from benchmark.data.store import Dataset

log = logging.getLogger("gembench")


def resolve_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike = "data",
                    seed: int = 0, progress: bool = True) -> Dataset:
    """A registered data set name (built into ``data_dir`` on first use) or a folder.

    A registered (synthetic) set is drawn from ``seed``: seed 0 lives in
    ``data_dir/<name>``, seed s in ``data_dir/<name>-seed<s>``, so a sweep over seeds
    never rebuilds (and never overwrites) another seed's data. A folder is used as is.
    """
    from benchmark.registry import DATASETS
    from benchmark.results import seeded_protocol

    name = str(name_or_path)
    if name in DATASETS:
        path = Path(data_dir) / seeded_protocol(name, seed)  # same -seed<s> mark
        if (path / "dataset.json").is_file():
            dataset = Dataset(path)
            if dataset.meta.get("seed") == seed:
                return dataset
        from benchmark.data.synthetic import synthesize

        scale = name.removeprefix("synthetic-")
        log.info("building %s (seed %d) into %s", name, seed, path)
        return synthesize(scale, path, seed=seed, progress=progress)
    return Dataset(name)
