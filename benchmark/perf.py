"""Performance at ImageGem scale: ``python -m benchmark.perf [--scale full] [--json OUT]``.

One run measures, on the same machine and data:

1. **floor** -- the unavoidable work of a d=64 factor model: the users x items product and
   a top-50 per user, done the best plain way: the faster of torch (matmul + ``topk`` per
   large user chunk) and faiss's exact ``IndexFlatIP`` search.
2. **gembench** -- the engine's full evaluation of that factor model (score into a reused
   float32 chunk, mask training items, exact top-K, Recall/NDCG/HitRate/MRR @10/20/50):
   wall time and peak resident memory (``ru_maxrss`` of a subprocess that loads only the
   sparse matrices and the factors, so numpy buffers count and the loading does not).
3. **recbole** -- RecBole's own full-sort evaluation (``Trainer.evaluate``) of a BPR model
   whose embeddings are set to the same factors, on the same split, with its best settings
   (``eval_batch_size`` = n_items x users per batch, not one user per batch).
4. **metrics** -- gembench's metric computation from top-K lists vs pytrec_eval on the same
   lists (values cross-checked).

5. **GPU** (when torch sees a CUDA device; otherwise the report says "GPU: not measured
   (no CUDA device)"): the GPU floor -- torch matmul + ``topk`` per chunk on the device, and
   faiss's ``GpuIndexFlatIP`` when the installed faiss has GPUs (the ``gpu`` extra) -- and
   gembench's full evaluation with ``device="cuda"``; each after one warm-up pass (CUDA
   context, cuBLAS handles), timed to the last synchronisation. Targets: gembench within
   1.5x of the GPU floor, and under 2 s at ImageGem scale. ``--gpu`` runs this section only.

6. **kNN** (``--knn``: this section only) -- gembench's ``itemknn`` and ``userknn`` fits beside
   implicit's ``CosineRecommender(K=100)`` on the same users x items matrix (items x items, then
   users x users on the transpose), each in its own subprocess with the same thread count: wall
   and CPU seconds, peak resident memory, and the fast kernel checked bit for bit against the
   reference path on random rows. The matrix is ``--knn-matrix`` (an .npz), ``--knn-shape``
   (random, e.g. ImageGem's ``57000x242000`` with ``--knn-nnz 4.96e6``) or the data set's fit
   matrix. Target: gembench within 1.5x of implicit (``docs/knn.md``).

Also: the scaling runs at 1/8, 1/4, 1/2 of the users and items (random subsamples; cost
should grow with users x items, memory stay flat) and the loading time (split + sparse
train matrix). Each timed part runs in its own subprocess (separate OpenMP runtimes, a
clean ``ru_maxrss``). Targets are printed as figures, never asserted.

The data set is a leave-last-out split of the synthetic world (``--scale full`` reads
``--dataset``, default ``/tmp/synth-full``; ``tiny`` / ``small`` build one into the cache);
the split and the matrices are cached under ``--cache`` (default ``/tmp/gembench-perf``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

K = 50
DIM = 64
METRICS = (
    "recall@10", "recall@20", "recall@50",
    "ndcg@10", "ndcg@20", "ndcg@50",
    "hit@10", "hit@20", "hit@50",
    "mrr@10", "mrr@20", "mrr@50",
)  # fmt: skip
FRACTIONS = (0.125, 0.25, 0.5)
TARGETS = {"floor_ratio_max": 1.5, "recbole_speedup_min": 5.0, "peak_rss_gb_max": 3.0,
           "metrics_speedup_min": 1.0, "load_s_max": 60.0,
           "gpu_floor_ratio_max": 1.5, "gpu_eval_s_max": 2.0}
#: The GPU section's children (run when CUDA is present; see :func:`run_gpu`).
GPU_KINDS = ("gpu-floor-torch", "gpu-floor-faiss", "gpu-gembench")
GPU_ABSENT = "GPU: not measured (no CUDA device)"


# ------------------------------------------------------------------------- the factor model


def _rankingmethod():
    from benchmark.protocols import RankingMethod

    return RankingMethod


class FactorModel(_rankingmethod()):  # type: ignore[misc]
    """``score(u, i) = U[u] . V[i]``: a d-dimensional factor model with given factors."""

    name = "factors"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)

    def fit(self, train, side):
        return self

    def score(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(self.user_factors[user_idx], self.item_factors.T, out=out)

    def score_torch(self, user_idx: np.ndarray, device: Any) -> Any:
        """``score`` on a torch device (the GPU engine): the factors are uploaded once."""
        from benchmark.device import factor_scores_torch

        return factor_scores_torch(self, self.user_factors, self.item_factors, user_idx,
                                   device)


def random_factors(n_users: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian factors (d=64): continuous scores, so ties have probability ~0 (tie-free)."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(np.sqrt(DIM)))
    users = rng.standard_normal((n_users, DIM), dtype=np.float32) * scale
    items = rng.standard_normal((n_items, DIM), dtype=np.float32) * scale
    return users, items


# ------------------------------------------------------------------------------ data


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
    from benchmark.splits import SplitConfig, prepare_split
    from benchmark.tracks.ranking import track_data

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


# ------------------------------------------------------------------------- subprocesses


def _child(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if args.inline:  # same process: quicker (tests), but peak memory is the whole run's
        cwd, argv = os.getcwd(), sys.argv
        try:
            return json.loads(json.dumps(_run_child(kind, work, args), default=float))
        finally:
            os.chdir(cwd)
            sys.argv = argv
    cmd = [sys.executable, "-m", "benchmark.perf", "--child", kind, "--work", str(work),
           "--memory-budget-mb", str(args.memory_budget_mb),
           "--gpu-memory-budget-mb", str(args.gpu_memory_budget_mb),
           "--gpu-device", args.gpu_device,
           "--recbole-batch-users", str(args.recbole_batch_users),
           "--knn-threads", str(args.knn_threads), "--knn-check-rows", str(args.knn_check_rows),
           "--seed", str(args.seed)]
    out = work / f"{kind}.json"
    if out.exists():
        out.unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path.cwd())
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout)[-3000:]
        return {"error": f"child {kind} failed (rc {proc.returncode}): {tail}"}
    return json.loads(out.read_text())


def _load_work(work: Path):
    exclude = sp.load_npz(work / "exclude.npz").tocsr()
    relevant = sp.load_npz(work / "relevant.npz").tocsr()
    return (exclude, relevant, np.load(work / "U.npy"), np.load(work / "V.npy"),
            np.load(work / "users.npy"))


def child_gembench(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmark.evaluate import chunk_size, evaluate_ranking

    exclude, relevant, users_f, items_f, _ = _load_work(work)
    model = FactorModel(users_f, items_f)
    rss_loaded = _rss_mb()
    t0 = time.perf_counter()
    ev = evaluate_ranking(model, exclude, relevant, METRICS,
                          memory_budget_mb=args.memory_budget_mb, progress=False)
    wall = time.perf_counter() - t0
    rss = _rss_mb()
    np.save(work / "ranked.npy", ev.ranked)
    result = {"wall_s": wall, "peak_rss_mb": rss, "rss_after_loading_mb": rss_loaded,
              "chunk_users": chunk_size(exclude.shape[1], args.memory_budget_mb),
              "n_users_evaluated": ev.n_users_evaluated, "summary": ev.summary}
    result["exactness"] = exactness_check(model, exclude, ev.user_idx, ev.ranked)
    return result


def exactness_check(model: FactorModel, exclude: sp.csr_matrix, users: np.ndarray,
                    ranked: np.ndarray, sample: int = 2000) -> dict[str, Any]:
    """The engine's top-K vs the floor's selection (torch.topk, else a stable argsort) on the
    same scores with training items masked, for up to ``sample`` evaluated users."""
    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(len(users), min(sample, len(users)), replace=False))
    chunk = users[pick]
    scores = model.score(chunk)
    mask = exclude[chunk]
    rows = np.repeat(np.arange(len(chunk)), np.diff(mask.indptr))
    scores[rows, mask.indices] = -np.inf
    width = min(K, scores.shape[1])
    try:
        import torch

        vals, idx = torch.topk(torch.from_numpy(scores), min(width + 1, scores.shape[1]))
        vals, idx = vals.numpy(), idx.numpy().astype(np.int64)
        how = "torch.topk"
    except ImportError:
        idx = np.argsort(-scores, axis=1, kind="stable")[:, : width + 1]
        vals = np.take_along_axis(scores, idx, axis=1)
        how = "numpy stable argsort"
    tied = (idx.shape[1] > width) & (vals[:, width - 1] == vals[:, -1]) & (vals[:, -1] > -np.inf)
    ref = np.where(vals[:, :width] > -np.inf, idx[:, :width], -1)
    got = ranked[pick, :width]
    equal = (ref == got).all(axis=1)
    return {"users_checked": int(len(chunk)), "reference": how,
            "rows_tied_at_k": int(tied.sum()),
            "identical": bool(equal[~tied].all()), "rows_differing": int((~equal).sum())}


def child_floor(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmark.evaluate import chunk_size

    _, _, users_f, items_f, users = _load_work(work)
    queries = np.ascontiguousarray(users_f[users])
    k = min(K, items_f.shape[0])
    if kind == "floor-faiss":
        import faiss

        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(items_f.shape[1])
        index.add(items_f)
        _, ids = index.search(queries, k)
        wall = time.perf_counter() - t0
        extra = {"threads": faiss.omp_get_max_threads()}
    else:
        import torch

        step = max(1, chunk_size(items_f.shape[0], args.memory_budget_mb))
        q, v = torch.from_numpy(queries), torch.from_numpy(items_f)
        t0 = time.perf_counter()
        for start in range(0, len(queries), step):
            torch.topk(q[start : start + step] @ v.T, k)
        wall = time.perf_counter() - t0
        extra = {"threads": torch.get_num_threads(), "chunk_users": step}
    return {"wall_s": wall, "peak_rss_mb": _rss_mb(), **extra}


def child_metrics(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """gembench's metrics from ranked lists vs pytrec_eval on the same lists."""
    from benchmark.evaluate import metrics_from_ranked

    _, relevant, _, _, users = _load_work(work)
    ranked = np.load(work / "ranked.npy")
    rel = relevant[users]
    t0 = time.perf_counter()
    per_user, _ = metrics_from_ranked(ranked, rel, METRICS)
    ours = time.perf_counter() - t0
    out: dict[str, Any] = {"gembench_s": ours, "n_users": int(len(users)), "k": K}
    try:
        import pytrec_eval
    except ImportError:
        out["reference"] = None
        return out
    t0 = time.perf_counter()
    qrels: dict[str, dict[str, int]] = {}
    for u in range(rel.shape[0]):
        items = rel.indices[rel.indptr[u] : rel.indptr[u + 1]]
        qrels[str(u)] = {str(i): 1 for i in items}
    scores = [float(K - j) for j in range(ranked.shape[1])]
    run = {str(u): {str(i): s for i, s in zip(row.tolist(), scores, strict=True) if i >= 0}
           for u, row in enumerate(ranked)}
    t1 = time.perf_counter()
    measures = {"recall.10,20,50", "ndcg_cut.10,20,50", "success.10,20,50", "recip_rank"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
    res = evaluator.evaluate(run)
    t2 = time.perf_counter()
    keys = [str(u) for u in range(rel.shape[0])]
    diff = 0.0
    for ours_name, theirs in (("recall@10", "recall_10"), ("recall@50", "recall_50"),
                              ("ndcg@10", "ndcg_cut_10"), ("ndcg@50", "ndcg_cut_50"),
                              ("hit@20", "success_20"), ("mrr@50", "recip_rank")):
        ref = np.array([res[q][theirs] if q in res else 0.0 for q in keys])
        diff = max(diff, float(np.abs(ref - per_user[ours_name]).max()))
    out.update(reference="pytrec_eval " + getattr(pytrec_eval, "__version__", "?"),
               reference_evaluate_s=t2 - t1, reference_with_inputs_s=t2 - t0,
               max_abs_diff=diff)
    return out


def child_recbole(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """RecBole's full-sort Trainer.evaluate of a BPR whose embeddings are our factors."""
    import logging
    import warnings

    import baselines.recbole_compat  # noqa: F401  (numpy-2 shim, before RecBole)

    # isort: split
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer

    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    rb = work / "recbole"
    users_f, items_f = np.load(work / "U.npy"), np.load(work / "V.npy")
    n_items = items_f.shape[0]
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.chdir(rb)
    t0 = time.perf_counter()
    config = Config(model="BPR", dataset="gb", config_dict={
        "data_path": str(rb), "checkpoint_dir": str(rb / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "eval_args": {"mode": "full", "order": "TO", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "Hit", "MRR"], "topk": [10, 20, 50],
        "valid_metric": "NDCG@10", "embedding_size": DIM, "metric_decimal_place": 12,
        "eval_batch_size": (n_items + 1) * args.recbole_batch_users,
        "gpu_id": "", "use_gpu": False, "show_progress": False, "log_wandb": False,
        "seed": 0, "reproducibility": True, "save_dataset": False, "save_dataloaders": False,
        "user_inter_num_interval": None, "item_inter_num_interval": None,
    })
    dataset = create_dataset(config)
    _, _, test_data = data_preparation(config, dataset)
    model = BPR(config, test_data._dataset)
    # RecBole's internal ids -> our tokens (dense indices); row 0 is its padding id
    user_tok = dataset.field2id_token["user_id"]
    item_tok = dataset.field2id_token["item_id"]
    with torch.no_grad():
        u_rows = np.zeros((len(user_tok), DIM), np.float32)
        u_rows[1:] = users_f[user_tok[1:].astype(np.int64)]
        i_rows = np.zeros((len(item_tok), DIM), np.float32)
        i_rows[1:] = items_f[item_tok[1:].astype(np.int64)]
        model.user_embedding.weight.copy_(torch.from_numpy(u_rows))
        model.item_embedding.weight.copy_(torch.from_numpy(i_rows))
    trainer = Trainer(config, model)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "setup_s": setup, "peak_rss_mb": _rss_mb(),
            "users_per_batch": args.recbole_batch_users,
            "eval_batch_size": config["eval_batch_size"], "n_items_recbole": len(item_tok) - 1,
            "torch_threads": torch.get_num_threads(),
            "summary": {k.replace("hit", "hit"): float(v) for k, v in dict(result).items()}}


def write_recbole_files(folder: Path, split, fit) -> None:
    """The split as RecBole atomic files (tokens = gembench's dense indices)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        frame = split.part(part, "lora")
        u = fit.user_ids.get_indexer(frame["user_id"].astype(str).to_numpy())
        i = fit.item_ids.get_indexer(frame["item_id"].astype(str).to_numpy())
        ts = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
        import pandas as pd

        pd.DataFrame({"user_id:token": u, "item_id:token": i, "timestamp:float": ts}).to_csv(
            folder / f"gb.{part}.inter", sep="\t", index=False)
    (folder / "gb.item").write_text("item_id:token\n" + "".join(f"{i}\n"
                                                                for i in range(fit.n_items)))


# ------------------------------------------------------------------------------ driver


def _uptime() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "torch", "faiss-cpu", "recbole", "pytrec-eval-terrier",
                 "pytrec_eval"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def run(args: argparse.Namespace, echo=print) -> dict[str, Any]:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"scale": args.scale, "k": K, "dim": DIM, "metrics": list(METRICS),
                              "memory_budget_mb": args.memory_budget_mb,
                              "load_average_start": _uptime(), "cpus": os.cpu_count(),
                              "versions": _versions(), "targets": TARGETS}
    ds = resolve_dataset(args.scale, args.dataset, cache)
    echo(f"data set {ds.path} (load average {report['load_average_start']})")
    load, fit, relevant, split = load_track(ds, cache)
    report["dataset"] = str(ds.path)
    report["load"] = {k: v for k, v in load.items() if k != "key"}
    echo(f"loading: split {load['split_s']:.1f}s ({'cached' if load['split_cached'] else 'built'})"
         f", sparse train matrix {load['matrix_s']:.1f}s -> {load['total_s']:.1f}s "
         f"({load['n_users']} users x {load['n_items']} items, {load['fit_nnz']} train nnz)")
    users_f, items_f = random_factors(fit.n_users, fit.n_items, seed=args.seed)
    base = cache / "work" / f"{ds.name}-{load['key']}"
    fractions = [1.0] + ([] if args.no_scaling or args.gpu else list(FRACTIONS))
    works = {}
    for frac in fractions:
        parts = ((fit.matrix, relevant, users_f, items_f) if frac == 1.0 else
                 subsample(fit.matrix, relevant, users_f, items_f, frac, args.seed))
        works[frac] = prepare_work(base / f"frac-{frac:g}", *parts)
    full = works[1.0]
    if args.gpu:  # the GPU section only
        del split
        (full / "ranked.npy").unlink(missing_ok=True)  # no stale CPU lists to compare with
        report["gpu"] = run_gpu(full, args, echo)
        report["load_average_end"] = _uptime()
        return report
    if not args.no_recbole:
        write_recbole_files(full / "recbole" / "gb", split, fit)
    del split

    rows = []
    for frac in sorted(fractions):
        work = works[frac]
        entry: dict[str, Any] = {"fraction": frac}
        n_u = int(np.load(work / "users.npy").size)
        n_i = int(np.load(work / "V.npy", mmap_mode="r").shape[0])
        entry.update(users=n_u, items=n_i, cells=n_u * n_i)
        for kind in ("floor-torch", "floor-faiss", "gembench"):
            entry[kind] = _child(kind, work, args)
            res = entry[kind]
            echo(f"  1/{1 / frac:g} {kind:12s} " + (f"{res['wall_s']:7.2f}s  "
                 f"peak RSS {res['peak_rss_mb']:7.0f} MB" if "error" not in res
                 else res["error"][-400:]))
        floors = {k: entry[k]["wall_s"] for k in ("floor-torch", "floor-faiss")
                  if "wall_s" in entry[k]}
        if floors:
            entry["floor_s"] = min(floors.values())
            entry["floor_method"] = min(floors, key=floors.get)
        rows.append(entry)
    report["runs"] = rows
    main = rows[-1]
    report["gembench"] = main["gembench"]
    report["floor"] = {"wall_s": main.get("floor_s"), "method": main.get("floor_method"),
                       "torch": main["floor-torch"], "faiss": main["floor-faiss"]}
    if not args.no_recbole:
        report["recbole"] = _child("recbole", full, args)
        echo(f"  recbole      {report['recbole'].get('wall_s', float('nan')):7.2f}s")
    report["metrics_only"] = _child("metrics", full, args)
    report["gpu"] = ({"measured": False, "reason": "--no-gpu"} if args.no_gpu
                     else run_gpu(full, args, echo))
    report["load_average_end"] = _uptime()
    report["comparison"] = _compare(report)
    return report


# ------------------------------------------------------------------------------ GPU


def cuda_absent_reason() -> str | None:
    """Why the GPU section cannot run here (None when torch sees a CUDA device)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA device"


def run_gpu(work: Path, args: argparse.Namespace, echo=print) -> dict[str, Any]:
    """The GPU floor (torch; faiss-gpu when present) and gembench on CUDA, same data."""
    reason = None if args.gpu_device == "cpu-torch" else cuda_absent_reason()
    if reason is not None:
        echo(GPU_ABSENT if reason == "no CUDA device" else f"GPU: not measured ({reason})")
        return {"measured": False, "reason": reason}
    out: dict[str, Any] = {"measured": True, "device": args.gpu_device,
                           "gpu_memory_budget_mb": args.gpu_memory_budget_mb}
    for kind in GPU_KINDS:
        out[kind] = res = _child(kind, work, args)
        echo(f"  {kind:16s} " + (f"{res['wall_s']:7.3f}s  peak GPU {res['peak_gpu_mb']:7.0f} MB"
                                  if "wall_s" in res else
                                  str(res.get("error") or res.get("skipped"))[-400:]))
    floors = {k: out[k]["wall_s"] for k in ("gpu-floor-torch", "gpu-floor-faiss")
              if "wall_s" in out[k]}
    g = out["gpu-gembench"]
    if floors:
        out["floor_s"] = min(floors.values())
        out["floor_method"] = min(floors, key=floors.get)
    if floors and "wall_s" in g:
        out["gembench_over_floor"] = g["wall_s"] / out["floor_s"]
        out["floor_target_met"] = out["gembench_over_floor"] <= TARGETS["gpu_floor_ratio_max"]
        out["time_target_met"] = g["wall_s"] < TARGETS["gpu_eval_s_max"]
        echo(f"GPU: gembench {g['wall_s']:.3f}s, floor {out['floor_s']:.3f}s "
             f"({out['floor_method']}) -> {out['gembench_over_floor']:.2f}x")
    return out


def child_gpu(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One GPU measurement, after a warm-up pass on one chunk (context, cuBLAS, allocator)."""
    import torch

    from benchmark.evaluate import device_chunk_size

    exclude, relevant, users_f, items_f, users = _load_work(work)
    n_items = items_f.shape[0]
    k = min(K, n_items)
    step = device_chunk_size(n_items, args.gpu_memory_budget_mb)
    # --gpu-device cpu-torch runs this very code on the CPU (tests without a GPU)
    on_gpu = args.gpu_device != "cpu-torch"
    dev = torch.device(args.gpu_device if on_gpu else "cpu")
    info = {"device_name": torch.cuda.get_device_name(dev) if on_gpu else "cpu (torch)",
            "chunk_users": step}

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(dev)

    def reset_peak() -> None:
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(dev)

    def peak_mb() -> float:
        return torch.cuda.max_memory_allocated(dev) / 2**20 if on_gpu else float("nan")

    if kind == "gpu-floor-faiss":
        import faiss

        if (not on_gpu or not hasattr(faiss, "StandardGpuResources")
                or faiss.get_num_gpus() == 0):
            return {"skipped": "the installed faiss has no GPU support (faiss-cpu); the gpu "
                               "extra installs faiss-gpu-cu12", **info}
        queries = np.ascontiguousarray(users_f[users])
        res = faiss.StandardGpuResources()
        warm = faiss.GpuIndexFlatIP(res, items_f.shape[1])
        warm.add(items_f[: max(k, n_items // 16)])
        warm.search(queries[:step], k)
        del warm
        t0 = time.perf_counter()
        index = faiss.GpuIndexFlatIP(res, items_f.shape[1])
        index.add(items_f)
        index.search(queries, k)
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "peak_gpu_mb": float("nan"), "peak_rss_mb": _rss_mb(), **info}
    if kind == "gpu-floor-torch":
        q = torch.from_numpy(np.ascontiguousarray(users_f[users])).to(dev)
        v = torch.from_numpy(items_f).to(dev)
        out = torch.empty((len(users), k), dtype=torch.int64, device=dev)

        def once(n: int) -> None:
            for start in range(0, n, step):
                out[start : start + step] = torch.topk(q[start : start + step] @ v.T, k).indices
            out[:n].cpu()  # the lists reach the host, as gembench's do

        once(min(step, len(users)))
        sync()
        reset_peak()
        t0 = time.perf_counter()
        once(len(users))
        sync()
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "peak_gpu_mb": peak_mb(),
                "peak_rss_mb": _rss_mb(), **info}
    from benchmark.evaluate import evaluate_ranking

    model = FactorModel(users_f, items_f)  # its factors stay on the device after warm-up
    first = int(users[min(len(users), step) - 1]) + 1 if len(users) else 0
    device = args.gpu_device
    evaluate_ranking(model, exclude[:first], relevant[:first], METRICS,
                     memory_budget_mb=args.gpu_memory_budget_mb, progress=False, device=device)
    sync()
    reset_peak()
    t0 = time.perf_counter()
    ev = evaluate_ranking(model, exclude, relevant, METRICS,
                          memory_budget_mb=args.gpu_memory_budget_mb, progress=False,
                          device=device)
    wall = time.perf_counter() - t0
    result = {"wall_s": wall, "peak_gpu_mb": peak_mb(),
              "peak_rss_mb": _rss_mb(), "n_users_evaluated": ev.n_users_evaluated,
              "summary": ev.summary, **info}
    cpu_ranked = work / "ranked.npy"  # the CPU engine's lists, when it ran first
    if cpu_ranked.exists():
        ref = np.load(cpu_ranked)
        if ref.shape == ev.ranked.shape:
            # fp32 products on the GPU may round differently: near-ties can swap places
            result["rows_differing_from_cpu_engine"] = int((ref != ev.ranked).any(axis=1).sum())
    return result


def _compare(report: dict[str, Any]) -> dict[str, Any]:
    g = report["gembench"]
    out: dict[str, Any] = {}
    if "wall_s" in g and report["floor"]["wall_s"]:
        out["gembench_over_floor"] = g["wall_s"] / report["floor"]["wall_s"]
        out["floor_target_met"] = out["gembench_over_floor"] <= TARGETS["floor_ratio_max"]
    if "wall_s" in g:
        out["peak_rss_gb"] = g["peak_rss_mb"] / 1024
        out["memory_target_met"] = out["peak_rss_gb"] < TARGETS["peak_rss_gb_max"]
    rb = report.get("recbole", {})
    if "wall_s" in rb and "wall_s" in g:
        out["recbole_over_gembench"] = rb["wall_s"] / g["wall_s"]
        out["recbole_target_met"] = out["recbole_over_gembench"] >= TARGETS["recbole_speedup_min"]
        ours, theirs = g.get("summary", {}), rb.get("summary", {})
        pairs = [(f"{m}@{k}", f"{r}@{k}") for m, r in (("recall", "recall"), ("ndcg", "ndcg"),
                 ("hit", "hit"), ("mrr", "mrr")) for k in (10, 20, 50)]
        diffs = [abs(ours[a] - theirs[b]) for a, b in pairs if a in ours and b in theirs]
        out["recbole_max_metric_diff"] = max(diffs) if diffs else None
    m = report.get("metrics_only", {})
    if m.get("reference_evaluate_s"):
        out["metrics_speedup_vs_reference"] = m["reference_evaluate_s"] / m["gembench_s"]
        out["metrics_target_met"] = out["metrics_speedup_vs_reference"] >= 1.0
    out["load_target_met"] = report["load"]["total_s"] < TARGETS["load_s_max"]
    runs = [r for r in report["runs"] if "wall_s" in r["gembench"]]
    if runs:
        first = runs[0]
        out["scaling"] = [
            {"fraction": r["fraction"], "cells_ratio": r["cells"] / first["cells"],
             "gembench_time_ratio": r["gembench"]["wall_s"] / first["gembench"]["wall_s"],
             "floor_time_ratio": (r.get("floor_s") or 0) / (first.get("floor_s") or 1),
             "peak_rss_mb": r["gembench"]["peak_rss_mb"]}
            for r in runs
        ]
    return out


def format_gpu(report: dict[str, Any]) -> list[str]:
    """The GPU section's lines (or the one line saying why it was not measured)."""
    gpu = report.get("gpu")
    if not gpu:
        return []
    if not gpu.get("measured"):
        reason = gpu.get("reason", "?")
        return ["", GPU_ABSENT if reason == "no CUDA device" else f"GPU: not measured ({reason})"]
    name = next((gpu[k].get("device_name") for k in GPU_KINDS if "device_name" in gpu[k]), "?")
    lines = ["", f"GPU section -- {name}, device budget {gpu['gpu_memory_budget_mb']:g} MB", "",
             "| GPU measurement | wall s | peak GPU MB | note |", "| --- | ---: | ---: | --- |"]
    notes = {"gpu-floor-torch": "floor: torch matmul + topk",
             "gpu-floor-faiss": "floor: faiss GpuIndexFlatIP",
             "gpu-gembench": f"gembench full evaluation (device={gpu.get('device')})"}
    for kind in GPU_KINDS:
        res = gpu[kind]
        if "wall_s" in res:
            extra = (f"; rows differing from the CPU engine: "
                     f"{res['rows_differing_from_cpu_engine']}"
                     if "rows_differing_from_cpu_engine" in res else "")
            lines.append(f"| {notes[kind]} | {res['wall_s']:.3f} | {res['peak_gpu_mb']:.0f} | "
                         f"chunks of {res.get('chunk_users')} users{extra} |")
        else:
            lines.append(f"| {notes[kind]} | - | - | "
                         f"{str(res.get('skipped') or res.get('error'))[:160]!r} |")
    if "gembench_over_floor" in gpu:
        lines += ["", "| GPU target | figure | met |", "| --- | --- | --- |",
                  f"| gembench / GPU floor <= {TARGETS['gpu_floor_ratio_max']} | "
                  f"{gpu['gembench_over_floor']:.2f}x ({gpu['floor_method']}) | "
                  f"{gpu['floor_target_met']} |",
                  f"| whole evaluation < {TARGETS['gpu_eval_s_max']:g} s | "
                  f"{gpu['gpu-gembench']['wall_s']:.3f} s | {gpu['time_target_met']} |"]
    return lines


def format_table(report: dict[str, Any]) -> str:
    if "comparison" not in report:  # --gpu: the GPU section only
        return "\n".join([f"gembench perf (GPU section) -- scale {report['scale']}, "
                          f"k={report['k']}, d={report['dim']}", *format_gpu(report)])
    c = report["comparison"]
    g, f = report["gembench"], report["floor"]
    lines = [
        f"gembench perf -- scale {report['scale']}, k={report['k']}, d={report['dim']}, "
        f"memory budget {report['memory_budget_mb']:g} MB, load average "
        f"{report['load_average_start']} -> {report.get('load_average_end')}",
        "",
        "| measurement | wall s | peak RSS MB | note |",
        "| --- | ---: | ---: | --- |",
    ]

    def row(name, res, note=""):
        if "wall_s" in res:
            lines.append(f"| {name} | {res['wall_s']:.2f} | {res.get('peak_rss_mb', 0):.0f} | "
                         f"{note} |")
        else:
            lines.append(f"| {name} | - | - | {res.get('error', 'not run')[:120]!r} |")

    row("floor: torch matmul + topk", f["torch"], f"chunks of {f['torch'].get('chunk_users')}")
    row("floor: faiss IndexFlatIP", f["faiss"], f"{f['faiss'].get('threads')} threads")
    row("gembench full evaluation", g,
        f"chunks of {g.get('chunk_users')} users; exact vs floor selection: "
        f"{g.get('exactness', {}).get('identical')}")
    if "recbole" in report:
        rb = report["recbole"]
        row("RecBole Trainer.evaluate (full sort)", rb,
            f"{rb.get('users_per_batch')} users/batch; setup {rb.get('setup_s', 0):.1f}s")
    m = report["metrics_only"]
    lines.append(f"| metrics only: gembench | {m.get('gembench_s', float('nan')):.3f} | | "
                 f"{m.get('n_users')} users x {m.get('k')} |")
    if m.get("reference"):
        lines.append(f"| metrics only: {m['reference']} evaluate() | "
                     f"{m['reference_evaluate_s']:.3f} | | with building its dicts: "
                     f"{m['reference_with_inputs_s']:.2f}s; max |diff| {m['max_abs_diff']:.1e} |")
    ld = report["load"]
    lines.append(f"| loading: split ({'cached' if ld['split_cached'] else 'built'}) + "
                 f"sparse train matrix | {ld['total_s']:.2f} | | split {ld['split_s']:.1f}s, "
                 f"matrix {ld['matrix_s']:.1f}s |")
    lines += ["", "| target | figure | met |", "| --- | --- | --- |"]

    def target(name, key, fmt, met_key):
        if key in c:
            lines.append(f"| {name} | {fmt.format(c[key])} | {c.get(met_key)} |")

    target("gembench / floor <= 1.5", "gembench_over_floor", "{:.2f}x", "floor_target_met")
    target("RecBole / gembench >= 5", "recbole_over_gembench", "{:.1f}x", "recbole_target_met")
    target("peak RSS < 3 GB", "peak_rss_gb", "{:.2f} GB", "memory_target_met")
    target("metrics: reference / gembench >= 1", "metrics_speedup_vs_reference", "{:.1f}x",
           "metrics_target_met")
    lines.append(f"| loading < 60 s | {ld['total_s']:.1f} s | {c.get('load_target_met')} |")
    if c.get("recbole_max_metric_diff") is not None:
        lines.append(f"\nRecBole vs gembench metric values: max |diff| "
                     f"{c['recbole_max_metric_diff']:.2e}")
    if c.get("scaling"):
        lines += ["", "scaling (relative to the smallest run):", "",
                  "| users x items | cells ratio | gembench time ratio | floor time ratio | "
                  "gembench s | floor s | peak RSS MB |", "| --- | ---: | ---: | ---: | ---: | "
                  "---: | ---: |"]
        for s, r in zip(c["scaling"], [r for r in report["runs"] if "wall_s" in r["gembench"]],
                        strict=True):
            lines.append(f"| {r['users']} x {r['items']} (1/{1 / r['fraction']:g}) | "
                         f"{s['cells_ratio']:.1f} | {s['gembench_time_ratio']:.1f} | "
                         f"{s['floor_time_ratio']:.1f} | {r['gembench']['wall_s']:.2f} | "
                         f"{r.get('floor_s', float('nan')):.2f} | {s['peak_rss_mb']:.0f} |")
    lines += format_gpu(report)
    return "\n".join(lines)


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


def run_knn(args: argparse.Namespace, echo=print) -> dict[str, Any]:
    work, info = knn_work(args, echo)
    report: dict[str, Any] = {"section": "knn", "k": KNN_K, "matrix": info,
                              "load_average_start": _uptime(), "cpus": os.cpu_count(),
                              "versions": _versions()}
    for kind in KNN_KINDS:
        if not args.knn_userknn and "user" in kind:
            continue
        report[kind] = res = _child(kind, work, args)
        echo(f"  {kind:22s} " + (f"{res['wall_s']:7.2f}s  cpu {res['cpu_s']:7.2f}s  peak RSS "
                                  f"{res['peak_rss_mb']:6.0f} MB" if "wall_s" in res
                                  else res["error"][-400:]))
    if args.knn_check_rows:
        report["check"] = _child("knn-check", work, args)
    for ours, theirs in (("knn-gembench-itemknn", "knn-implicit-item"),
                         ("knn-gembench-userknn", "knn-implicit-user")):
        a, b = report.get(ours, {}), report.get(theirs, {})
        if "wall_s" in a and "wall_s" in b:
            # a fit on a tiny matrix can take under a clock tick (cpu 0.0 s): no ratio then
            ratio = _ratio(a["wall_s"], b["wall_s"])
            report[f"{ours}_over_implicit"] = {
                "wall": ratio, "cpu": _ratio(a["cpu_s"], b["cpu_s"]),
                "target_met": None if ratio is None else ratio <= KNN_TARGET}
    report["load_average_end"] = _uptime()
    return report


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


def _run_child(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if kind.startswith("gpu-"):
        return child_gpu(kind, work, args)
    if kind == "knn-check":
        return child_knn_check(work, args)
    if kind.startswith("knn-"):
        return child_knn(kind, work, args)
    if kind == "gembench":
        return child_gembench(work, args)
    if kind.startswith("floor"):
        return child_floor(kind, work, args)
    if kind == "metrics":
        return child_metrics(work, args)
    if kind == "recbole":
        return child_recbole(work, args)
    raise SystemExit(f"unknown child {kind!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="full", choices=["full", "small", "tiny"],
                   help="full: --dataset (default /tmp/synth-full); small/tiny: synthesised")
    p.add_argument("--dataset", default=None, help="data set folder (overrides the scale's)")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.add_argument("--memory-budget-mb", type=float, default=2048.0,
                   help="the engine's memory budget (sizes its user chunks)")
    p.add_argument("--cache", default="/tmp/gembench-perf", help="split and matrix cache")
    p.add_argument("--no-recbole", action="store_true", help="skip the RecBole measurement")
    p.add_argument("--no-scaling", action="store_true", help="skip the 1/8, 1/4, 1/2 runs")
    p.add_argument("--recbole-batch-users", type=int, default=512,
                   help="users per RecBole full-sort batch (eval_batch_size / n_items)")
    p.add_argument("--gpu", action="store_true",
                   help="measure only the GPU section (floor and gembench on CUDA)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    p.add_argument("--gpu-memory-budget-mb", type=float, default=16384.0,
                   help="the GPU engine's device score budget (sizes its user chunks)")
    p.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # cpu-torch: tests
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knn", action="store_true",
                   help="measure only the neighbourhood section: itemknn / userknn fits beside "
                        "implicit's CosineRecommender on the same matrix")
    p.add_argument("--knn-matrix", default=None, help="--knn: a users x items .npz matrix")
    p.add_argument("--knn-shape", default=None,
                   help="--knn: a random USERSxITEMS matrix (e.g. 57000x242000; default: the "
                        "data set's fit matrix)")
    p.add_argument("--knn-nnz", default="4.96e6", help="--knn-shape: about this many pairs")
    p.add_argument("--knn-zipf", type=float, default=0.8, help="--knn-shape: item popularity")
    p.add_argument("--knn-threads", type=int, default=0, help="--knn: threads (0: the CPUs)")
    p.add_argument("--knn-no-userknn", dest="knn_userknn", action="store_false",
                   help="--knn: itemknn only")
    p.add_argument("--knn-check-rows", type=int, default=2000,
                   help="--knn: rows compared bit for bit with the reference path (0: none)")
    p.add_argument("--inline", action="store_true",
                   help="measure in this process, not in subprocesses (quick; peak memory "
                        "is then the whole run's)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        work = Path(args.work)
        result = _run_child(args.child, work, args)
        (work / f"{args.child}.json").write_text(json.dumps(result, indent=2, default=float))
        return 0
    echo = lambda line: print(line, flush=True)  # noqa: E731
    report = run_knn(args, echo) if args.knn else run(args, echo=echo)
    table = format_knn(report) if args.knn else format_table(report)
    report["table"] = table
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
