"""The data a measurement runs on: the data set, its cached split and matrices, the work folders.

Building or reading the data set, timing the split and the sparse train matrix, saving the
matrices and factors a measuring subprocess loads, and the random subsamples of the scaling
runs are the parent process's preparation, shared by the main run and the kNN section;
``_rss_mb`` (the peak-memory probe every child reports) lives here as the lowest helper.
"""

from __future__ import annotations

import hashlib
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.perf.model import K


def _rss_mb() -> float:
    """Peak resident memory of this process, MB: ``VmHWM`` (per address space, so a child
    started by fork + exec does not inherit its parent's peak as ``ru_maxrss`` does)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resolve_dataset(scale: str, dataset: str | None, cache: Path):
    from benchmark.data.store import Dataset

    if scale == "full":
        path = Path(dataset or "/tmp/synth-full")
        if not (path / "dataset.json").is_file():
            raise SystemExit(f"{path}: no data set; build it with "
                             f"'gembench data synth --scale full --out {path}'")
        return Dataset(path)
    if dataset:
        return Dataset(dataset)
    from benchmark.data.synthetic import synthesize

    path = cache / f"synthetic-{scale}"
    if (path / "dataset.json").is_file():
        return Dataset(path)
    return synthesize(scale, path, seed=0, progress=False)


def load_track(ds, cache: Path) -> tuple[dict[str, Any], Any, sp.csr_matrix, Any]:
    """Split (cached), then the fit matrix (train + valid) and the test matrix, timed."""
    from benchmark.ranking_data import track_data
    from benchmark.splits import SplitConfig, prepare_split

    config = SplitConfig(protocol="leave-last-out", tracks=("lora-rec",))
    t0 = time.perf_counter()
    key = hashlib.sha256(str(ds.path.resolve()).encode()).hexdigest()[:8]
    split_dir = cache / "splits" / ds.name
    cached = any(split_dir.glob("leave-last-out-*/split.json"))
    split = prepare_split(ds, config, cache, progress=False)
    t1 = time.perf_counter()
    fit, relevant = track_data(split, "lora", "test")
    t2 = time.perf_counter()
    timing = {"split_s": t1 - t0, "split_cached": bool(cached), "matrix_s": t2 - t1,
              "total_s": t2 - t0, "n_users": fit.n_users, "n_items": fit.n_items,
              "fit_nnz": int(fit.matrix.nnz), "test_nnz": int(relevant.nnz), "key": key}
    return timing, fit, relevant.tocsr(), split


def prepare_work(folder: Path, exclude: sp.csr_matrix, relevant: sp.csr_matrix,
                 users_f: np.ndarray, items_f: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sp.save_npz(folder / "exclude.npz", exclude.tocsr(), compressed=False)
    sp.save_npz(folder / "relevant.npz", relevant.tocsr(), compressed=False)
    np.save(folder / "U.npy", users_f)
    np.save(folder / "V.npy", items_f)
    evaluated = np.flatnonzero(np.diff(relevant.indptr) > 0)
    np.save(folder / "users.npy", evaluated)
    return folder


def subsample(exclude: sp.csr_matrix, relevant: sp.csr_matrix, users_f: np.ndarray,
              items_f: np.ndarray, fraction: float, seed: int = 0):
    """The same fraction of users and of items, drawn at random (kept in index order)."""
    rng = np.random.default_rng(seed + int(fraction * 1000))
    n_users, n_items = exclude.shape
    u = np.sort(rng.choice(n_users, max(1, int(round(n_users * fraction))), replace=False))
    i = np.sort(rng.choice(n_items, max(K + 1, int(round(n_items * fraction))), replace=False))
    return (exclude[u][:, i].tocsr(), relevant[u][:, i].tocsr(),
            users_f[u], items_f[i])
