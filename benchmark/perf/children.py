"""The CPU measurements, each of which runs in its own subprocess (``--child KIND``).

The floor (torch / faiss), gembench's full evaluation with its exactness check, the metrics
against pytrec_eval and RecBole's full-sort evaluation each load a work folder, time one
thing and return a JSON-able dict; keeping them apart from the driver that launches them
keeps the heavy imports (torch, faiss, recbole) inside the child process that needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.perf.data import _rss_mb
from benchmark.perf.model import DIM, METRICS, FactorModel, K

# ------------------------------------------------------------------------- subprocesses


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
