"""The parent process: it launches each measurement in a subprocess and assembles the report.

``_child`` runs one measurement as ``python -m benchmark.perf --child KIND`` (or in this
process with ``--inline``) and ``_run_child`` dispatches a kind to its measurement;
:func:`run`, :func:`run_gpu` and :func:`run_knn` drive the main, GPU and kNN sections. They
sit above every measurement module so the package's imports form no cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.perf.children import (
    child_floor,
    child_gembench,
    child_metrics,
    child_recbole,
    write_recbole_files,
)
from benchmark.perf.data import load_track, prepare_work, resolve_dataset, subsample
from benchmark.perf.gpu import GPU_ABSENT, GPU_KINDS, child_gpu, cuda_absent_reason
from benchmark.perf.knn import (
    KNN_K,
    KNN_KINDS,
    KNN_TARGET,
    _ratio,
    child_knn,
    child_knn_check,
    knn_work,
)
from benchmark.perf.model import DIM, FRACTIONS, METRICS, TARGETS, K, random_factors
from benchmark.perf.report import _compare

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
