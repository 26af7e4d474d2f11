"""The neighbourhood section (``--knn``): gembench's itemknn / userknn beside implicit's.

Its matrix (an .npz, a random one, or the data set's fit matrix), the timed fits of both
libraries and the bit-for-bit check of the fast kernel against the reference path, and the
section's table are separate from the factor-model measurements because they share no data
or children with them; launching the children is the driver's
(:func:`benchmark.perf.driver.run_knn`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.perf.data import _rss_mb, load_track, resolve_dataset

# ------------------------------------------------------------------ neighbourhood baselines

#: ``--knn``: gembench's itemknn / userknn fits beside implicit's CosineRecommender(K=100) on the
#: same users x items matrix (implicit fitted on the transpose for the user side), each in its
#: own subprocess with the same thread count; target: gembench within 1.5x of implicit.
KNN_K = 100
KNN_KINDS = ("knn-gembench-itemknn", "knn-implicit-item", "knn-gembench-userknn",
             "knn-implicit-user")
KNN_TARGET = 1.5


def random_interactions(n_users: int, n_items: int, nnz: int, zipf: float = 0.8,
                        seed: int = 0) -> sp.csr_matrix:
    """A 0/1 users x items matrix: log-normal user activity, Zipf(``zipf``) item popularity
    (items in random order), about ``nnz`` distinct pairs; numpy only, a few seconds."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * nnz * 1.08)).astype(np.int64)
    users = np.repeat(np.arange(n_users), np.minimum(per_user, n_items))
    weight = 1.0 / (rng.permutation(n_items) + 1.0) ** zipf
    items = rng.choice(n_items, size=len(users), p=weight / weight.sum())
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def knn_work(args: argparse.Namespace, echo=print) -> tuple[Path, dict[str, Any]]:
    """The matrix of the section, saved once in the cache: ``--knn-matrix`` (an .npz),
    ``--knn-shape`` (random, :func:`random_interactions`) or the perf data set's fit matrix."""
    cache = Path(args.cache)
    if args.knn_matrix:
        matrix, source = sp.load_npz(args.knn_matrix).tocsr(), str(args.knn_matrix)
    elif args.knn_shape:
        n_users, n_items = (int(v) for v in args.knn_shape.lower().split("x"))
        nnz = int(float(args.knn_nnz))
        matrix = random_interactions(n_users, n_items, nnz, args.knn_zipf, args.seed)
        source = f"random {n_users}x{n_items}, ~{nnz} pairs, zipf {args.knn_zipf}"
    else:
        ds = resolve_dataset(args.scale, args.dataset, cache)
        _, fit, _, _ = load_track(ds, cache)
        matrix, source = fit.matrix, f"{ds.path} (lora-rec leave-last-out fit matrix)"
    matrix = matrix.astype(np.float32).tocsr()
    key = hashlib.sha256(np.concatenate([matrix.indptr, matrix.indices]).tobytes()).hexdigest()
    work = cache / "work" / f"knn-{key[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "matrix.npz").is_file():
        sp.save_npz(work / "matrix.npz", matrix, compressed=False)
    info = {"source": source, "n_users": matrix.shape[0], "n_items": matrix.shape[1],
            "nnz": int(matrix.nnz)}
    echo(f"kNN matrix: {source}: {info['n_users']} users x {info['n_items']} items, "
         f"{info['nnz']} pairs")
    return work, info


def child_knn(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One fit, timed (wall and CPU seconds) with the process's peak resident memory."""
    matrix = sp.load_npz(work / "matrix.npz").tocsr()
    threads = args.knn_threads or os.cpu_count() or 1
    rss_loaded = _rss_mb()
    cpu0, t0 = os.times(), time.perf_counter()
    if kind.startswith("knn-gembench-"):
        import pandas as pd

        from baselines import _knn
        from baselines.itemknn import ItemKNN
        from baselines.userknn import UserKNN
        from benchmark.protocols import InteractionData, SideInfo

        _knn.NUM_THREADS = threads
        users = pd.RangeIndex(matrix.shape[0])
        items = pd.RangeIndex(matrix.shape[1])
        data = InteractionData(users, items, matrix, pd.DataFrame(), "lora")
        method = ItemKNN(k=KNN_K) if kind.endswith("itemknn") else UserKNN(k=KNN_K)
        t0 = time.perf_counter()
        method.fit(data, SideInfo(None, "lora"))
        fitted = (method.similarity_ if kind.endswith("itemknn") else method.neighbours_)
    else:
        import warnings

        from implicit.nearest_neighbours import CosineRecommender

        side = matrix if kind.endswith("-item") else matrix.T.tocsr()
        model = CosineRecommender(K=KNN_K, num_threads=threads)
        cpu0, t0 = os.times(), time.perf_counter()
        with warnings.catch_warnings():  # its own csr/coo conversion notice (timed anyway)
            warnings.simplefilter("ignore")
            model.fit(side, show_progress=False)
        fitted = model.similarity
    wall, cpu1 = time.perf_counter() - t0, os.times()
    return {"wall_s": wall, "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "peak_rss_mb": _rss_mb(), "rss_after_loading_mb": rss_loaded, "threads": threads,
            "neighbour_pairs": int(fitted.nnz)}


def child_knn_check(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The fast kernel against the reference path on a random subset of rows, both sides."""
    from baselines._knn import cosine_neighbours, cosine_neighbours_reference

    matrix = sp.load_npz(work / "matrix.npz").tocsr()
    out: dict[str, Any] = {}
    for side, rows in (("itemknn", matrix.T.tocsr()), ("userknn", matrix)):
        rng = np.random.default_rng(args.seed)
        subset = np.sort(rng.choice(rows.shape[0], min(rows.shape[0], args.knn_check_rows),
                                    replace=False))
        fast = cosine_neighbours(rows, KNN_K, 0.0, 4096, num_threads=args.knn_threads)[subset]
        ref = cosine_neighbours_reference(rows, KNN_K, 0.0, 256, subset=subset)
        out[side] = {"rows": int(len(subset)), "identical": bool(
            np.array_equal(fast.indptr, ref.indptr) and np.array_equal(fast.indices, ref.indices)
            and np.array_equal(fast.data.view(np.uint32), ref.data.view(np.uint32)))}
    return out


def _ratio(ours: float, theirs: float) -> float | None:
    """ours / theirs, or None where the reference time is too small to divide by."""
    return ours / theirs if theirs > 0 else None


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def format_knn(report: dict[str, Any]) -> str:
    m = report["matrix"]
    lines = [f"gembench perf -- neighbourhood baselines (k={report['k']}) on {m['n_users']} users "
             f"x {m['n_items']} items, {m['nnz']} pairs ({m['source']}); load average "
             f"{report['load_average_start']} -> {report.get('load_average_end')}", "",
             "| fit | wall s | cpu s | peak RSS MB | threads | gembench / implicit |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    names = {"knn-gembench-itemknn": "gembench itemknn", "knn-implicit-item":
             "implicit CosineRecommender (items)", "knn-gembench-userknn": "gembench userknn",
             "knn-implicit-user": "implicit CosineRecommender (users: transpose)"}
    for kind in KNN_KINDS:
        res = report.get(kind)
        if res is None:
            continue
        ratio = report.get(f"{kind}_over_implicit")
        note = (f"{_times(ratio['wall'])} wall, {_times(ratio['cpu'])} cpu (target <= "
                f"{KNN_TARGET}: {ratio['target_met']})" if ratio else "")
        if "wall_s" in res:
            lines.append(f"| {names[kind]} | {res['wall_s']:.2f} | {res['cpu_s']:.2f} | "
                         f"{res['peak_rss_mb']:.0f} | {res['threads']} | {note} |")
        else:
            lines.append(f"| {names[kind]} | - | - | - | - | {res.get('error', '')[:120]!r} |")
    checks = [(side, c) for side, c in (report.get("check") or {}).items()
              if isinstance(c, dict) and "rows" in c]
    lines += [""] if checks else []
    for side, c in checks:
        lines.append(f"{side}: fast kernel == reference path on {c['rows']} random rows "
                     f"(bit for bit): {c['identical']}")
    return "\n".join(lines)
