"""The GPU section: the GPU floor and gembench on CUDA, measured in a child, and its lines.

When torch sees a CUDA device (or ``--gpu-device cpu-torch`` in tests) each GPU
measurement runs after one warm-up pass and is timed to the last synchronisation; without
one the report carries a single "not measured" line. The measurement and its formatting
live here; launching the children is the driver's (:func:`benchmark.perf.driver.run_gpu`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.perf.children import _load_work
from benchmark.perf.data import _rss_mb
from benchmark.perf.model import METRICS, TARGETS, FactorModel, K

#: The GPU section's children (run when CUDA is present; see :func:`run_gpu`).
GPU_KINDS = ("gpu-floor-torch", "gpu-floor-faiss", "gpu-gembench")
GPU_ABSENT = "GPU: not measured (no CUDA device)"


# ------------------------------------------------------------------------------ GPU


def cuda_absent_reason() -> str | None:
    """Why the GPU section cannot run here (None when torch sees a CUDA device)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA device"


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
