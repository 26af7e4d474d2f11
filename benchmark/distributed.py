"""The Ray engine: the same jobs as the local engine, spread over a Ray cluster.

Why: embedding millions of images, or a sweep of (track x method) runs and tuning
trials, outgrows one machine; the harness and its numbers must not change for it.
So nothing here computes anything itself: every batch, run and trial is computed by
the very functions the local engine calls (:func:`benchmark.embed.encode_batch`,
:func:`benchmark.runner.run_one`, :func:`benchmark.tuning.run_trial`) and written by
the same code (the embedding store with its resume file, atomic result records,
``store_tuned``). Only where the work runs differs.

* :func:`ray_embed` - batches as Ray Data ``map_batches`` over a pool of actors
  (``concurrency=workers``; one encoder loaded per actor; ``num_gpus`` per actor
  where the cluster has GPUs). Results stream back in batch order into the local
  engine's partial store + progress file, so a run resumes (with either engine)
  at the first unfinished batch, and a lost worker loses nothing already written.
* ``vlm-rerank``'s uncached prompts go the same way (``baselines.vlm_rerank.VLMWorker``
  on :func:`benchmark.actor_map.actor_map`, one VLM per actor); the driver writes every
  returned score into the reranker's cache.
* :func:`ray_run_benchmark` - one Ray task per (seed, track, method) run; each writes its
  record atomically. :func:`ray_tune` - one Ray task per tuning trial.

Ray is imported inside functions only (``gembench --help`` stays fast). Workers must
see the same files as the driver (a shared file system on a cluster); relative paths
are resolved from the driver's working folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmark.actor_map import (  # noqa: F401  (RayUnavailable, ensure_ray: public here)
    RayUnavailable,
    _check_reachable,
    actor_map,
    auto_gpus,
    ensure_ray,
    in_driver_folder,
)

#: retries of a failed batch inside its actor before Ray's own task retry
BATCH_RETRIES = 2


# embedding ---------------------------------------------------------------------------
class EmbedWorker:
    """Loads the encoder once (one per Ray actor), then encodes batches ``(b, ids, items)``."""

    def __init__(self, encoder: Any, device: str | None, images: bool,
                 retries: int = BATCH_RETRIES, fail_once: Sequence[int] = ()):
        from benchmark.embed import Encoder, load_encoder

        if isinstance(encoder, Encoder):  # shipped as is (random init, custom encoder)
            enc = encoder
            if device and getattr(enc, "model", None) is not None:
                enc.model = enc.model.to(device)
                enc.device = device
        else:
            enc = load_encoder(encoder, device)
        self.enc, self.images, self.retries = enc, images, retries
        self.fail_once = set(fail_once)  # tests: batches whose first attempt fails

    def __call__(self, payload: tuple[int, list[str], list[str]]) -> Any:
        from benchmark.embed import encode_batch

        b, ids, items = payload
        items = [Path(str(i)) for i in items] if self.images else [str(i) for i in items]
        for attempt in range(self.retries + 1):
            try:
                if int(b) in self.fail_once:
                    self.fail_once.discard(int(b))
                    raise OSError(f"injected failure of batch {int(b)}")
                return encode_batch(self.enc, [str(i) for i in ids], items, self.images)
            except Exception:
                if attempt == self.retries:
                    raise
        raise AssertionError("unreachable")


def ray_batches(encoder: Any, device: str | None = None, workers: int = 2,
                gpus_per_worker: float | None = None, cpus_per_worker: float = 1.0,
                fail_once: Sequence[int] = (), progress: bool = True
                ) -> Callable[..., Iterator[Any]]:
    """A ``compute`` for :func:`benchmark.embed.embed` that runs batches on Ray actors.

    ``encoder`` is what each actor loads: a spec string (loaded by the actor, on its
    GPU when it has one) or an :class:`~benchmark.embed.Encoder` object (shipped).
    Results come back in batch order (:func:`benchmark.actor_map.actor_map`).
    """

    def compute(enc: Any, ids: Sequence[str], items: Sequence[Any], images: bool,
                batch_size: int, first: int, end: int, _workers: int = 4) -> Iterator[Any]:
        if first >= end:
            return
        actor_device = device or ("cuda" if auto_gpus(gpus_per_worker) > 0 else "cpu")
        payloads = []
        for b in range(first, end):
            lo, hi = b * batch_size, min(len(ids), (b + 1) * batch_size)
            payloads.append((b, list(ids[lo:hi]), [str(i) for i in items[lo:hi]]))
        kwargs = {"encoder": encoder, "device": actor_device, "images": images,
                  "fail_once": tuple(fail_once)}
        for b, (ok, vecs, lost) in actor_map(EmbedWorker, kwargs, payloads, first=first,
                                             workers=workers, gpus_per_worker=gpus_per_worker,
                                             cpus_per_worker=cpus_per_worker, ordered=True,
                                             progress=progress):
            yield b, ok, vecs, lost

    return compute


def ray_embed(
    encoder: Any,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float | None = None,
    num_cpus: int | None = None,
    fail_once: Sequence[int] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`benchmark.embed.embed` with batches computed by a pool of Ray actors.

    Same arguments, store, metadata and resume file as the local engine (``workers``
    here is the number of actors; image reading happens inside them). The driver loads
    the encoder once on the CPU for its name and metadata; a random-initialised
    (``...:none``) encoder is shipped to the actors so every actor has the same weights.
    ``fail_once`` (tests) makes the first attempt of those batches fail.
    """
    from benchmark.embed import Encoder, load_encoder
    from benchmark.embed import embed as _embed

    ensure_ray(address, num_cpus)
    device = kwargs.pop("device", None)
    if isinstance(encoder, Encoder):
        local, shipped = encoder, encoder
    else:
        local = load_encoder(encoder, "cpu")
        random_init = encoder.startswith("open_clip:") and encoder.rsplit(":", 1)[-1].lower() \
            in ("none", "random", "")
        shipped = local if random_init else encoder
    compute = ray_batches(shipped, device=device, workers=workers,
                          gpus_per_worker=gpus_per_worker, fail_once=fail_once,
                          progress=kwargs.get("progress", True))
    result = _embed(local, out, device=device, compute=compute, **kwargs)
    return {**result, "engine": "ray"}


# vlm-rerank --------------------------------------------------------------------------
# runs and tuning ---------------------------------------------------------------------
def _run_one_task(cwd: str, ds: Any, split: Any, track_name: str, method_name: str,
                  fit: Any, relevant: Any, side: Any, options: dict[str, Any]
                  ) -> tuple[str | None, tuple[str, str, str] | None, list[str]]:
    from benchmark.runner import run_one

    in_driver_folder(cwd)
    lines: list[str] = []
    path, skip = run_one(ds, split, track_name, method_name, fit, relevant, side,
                         echo=lines.append, progress=False, **options)
    return (str(path) if path is not None else None), skip, lines


def _run_pair_task(cwd: str, ds: Any, track: str, method: str, seed: int, data_dir: str,
                   results_dir: str) -> tuple[list[str], list[tuple[str, str, str]], list[str]]:
    from benchmark.runner import run_pair_one

    in_driver_folder(cwd)
    lines: list[str] = []
    paths, skips = run_pair_one(ds, track, method, seed=seed, data_dir=data_dir,
                                results_dir=results_dir, echo=lines.append)
    return [str(p) for p in paths], skips, lines


def _gather(refs: list[Any], desc: str, progress: bool) -> list[Any]:
    """Results of ``refs`` in submission order, with a bar advancing as tasks finish."""
    import ray

    from benchmark.progress import progress_bar

    pending = list(refs)
    with progress_bar(total=len(refs), desc=desc, unit="task", enabled=progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    return ray.get(refs)


def ray_run_benchmark(
    dataset: str | os.PathLike = "synthetic-small",
    tracks: list[str] | None = None,
    methods: list[str] | None = None,
    protocol: str = "leave-last-out",
    seed: int = 0,
    data_dir: str | os.PathLike = "data",
    results_dir: str | os.PathLike = "results",
    leaderboard_dir: str | os.PathLike | None = "leaderboards",
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    echo=print,
    tuned_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    seeds: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    max_retries: int = 2,
) -> dict[str, Any]:
    """:func:`benchmark.runner.run_benchmark` with one Ray task per (seed, track, method).

    For every seed (``seeds``, else ``seed``) the data set, splits and per-track data are
    prepared in the driver and shared through Ray's object store; then all tasks of all
    seeds are submitted at once. A ranking task runs :func:`benchmark.runner.run_one`, a
    pair-track task (preference: one method, every k) :func:`benchmark.runner.run_pair_one`,
    unchanged; each writes its records atomically (a retried task rewrites the same files).
    Messages are echoed in the local engine's order once all tasks are done.
    """
    import ray

    from benchmark.runner import check_seeds, leaderboards, plan_pair_runs, plan_runs

    seed_list = check_seeds(seeds) if seeds is not None else [seed]
    ensure_ray(address, num_cpus)
    task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                      max_retries=max_retries)(_run_one_task)
    pair_task = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries)(_run_pair_task)
    base = {"protocol": protocol, "device": device,  # device resolved per worker
            "results_dir": str(Path(results_dir).absolute()),
            "memory_budget_mb": memory_budget_mb, "metrics": metrics,
            "tuned_dir": str(Path(tuned_dir).absolute()) if tuned_dir else None}
    cwd = os.getcwd()
    jobs, refs = [], []
    for s in seed_list:
        said = [f"seed {s}"] if seeds is not None else []  # echoed in the local order below
        ds, split, plan, skipped = plan_runs(dataset, tracks, methods, protocol, s, data_dir,
                                             progress, metrics=metrics)
        pair_runs, pair_skips = plan_pair_runs(ds, tracks, methods, seed=s, data_dir=data_dir)
        first = len(refs)
        ds_ref, split_ref = ray.put(ds), ray.put(split)
        refs += [pair_task.remote(cwd, ds_ref, track_name, name, s,
                                  str(Path(data_dir).absolute()), base["results_dir"])
                 for track_name, name in pair_runs]
        n_pair = len(pair_runs)
        for track_name, names, fit, relevant, side in plan:
            fit_ref, rel_ref, side_ref = ray.put(fit), ray.put(relevant), ray.put(side)
            refs += [task.remote(cwd, ds_ref, split_ref, track_name, name, fit_ref, rel_ref,
                                 side_ref, {**base, "seed": s}) for name in names]
        jobs.append((s, ds, split, skipped + pair_skips, first, n_pair, len(refs), said))
    outcomes = _gather(refs, "ray runs", progress)
    result: dict[str, Any] = {"records": [], "skipped": [], "seeds": seed_list,
                              "engine": "ray"}
    per_seed = {}
    def local_path(path: str) -> Path:  # the local engine returns paths under results_dir
        return Path(results_dir) / Path(path).relative_to(base["results_dir"])

    for s, ds, split, skipped, lo, n_pair, hi, said in jobs:
        written: list[Path] = []
        for line in said:
            echo(line)
        for paths, skips, lines in outcomes[lo : lo + n_pair]:
            for line in lines:
                echo(line)
            written += [local_path(p) for p in paths]
            skipped += [tuple(k) for k in skips]
        for path, skip, lines in outcomes[lo + n_pair : hi]:
            for line in lines:
                echo(line)
            if path is not None:
                written.append(local_path(path))
            if skip is not None:
                skipped.append(tuple(skip))
        per_seed[s] = {"dataset": ds, "split": split, "records": written, "skipped": skipped}
        result["records"] += written
        result["skipped"] += [(*k, s) for k in skipped] if seeds is not None else skipped
        result.setdefault("dataset", ds)
        result.setdefault("split", split)
    if seeds is not None:
        result["per_seed"] = per_seed
    if leaderboard_dir is not None:
        result.update(leaderboards(results_dir, leaderboard_dir))
    return result


def _trial_task(cwd: str, cls: type, seed: int, params: dict[str, Any], fit: Any,
                relevant: Any, side: Any, metrics: tuple[str, ...], metric: str,
                memory_budget_mb: float) -> dict[str, Any]:
    from benchmark.tuning import run_trial

    in_driver_folder(cwd)
    return run_trial(cls, seed, params, fit, relevant, side, metrics, metric,
                     memory_budget_mb)


def ray_tune(
    track: str,
    method: str,
    budget: int | None = None,
    dataset: str | os.PathLike = "synthetic-small",
    metric: str = "ndcg@10",
    seed: int = 0,
    protocol: str = "leave-last-out",
    data_dir: str | os.PathLike = "data",
    tuned_dir: str | os.PathLike | None = None,
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    echo=print,
    metrics: Sequence[str] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    max_retries: int = 2,
) -> dict[str, Any]:
    """:func:`benchmark.tuning.tune` with one Ray task per trial.

    The same configurations (seeded, defaults first) are scored by
    :func:`benchmark.tuning.run_trial` in tasks; the driver picks the best (ties: the
    earlier trial) and stores it exactly as the local engine does.
    """
    import ray

    from benchmark.tuning import finish_tuning, plan_tuning

    ensure_ray(address, num_cpus)
    plan = plan_tuning(track, method, budget, dataset, metric, seed, protocol, data_dir,
                       progress, metrics=metrics)
    task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                      max_retries=max_retries)(_trial_task)
    shared = [ray.put(plan[k]) for k in ("fit", "relevant", "side")]
    cwd = os.getcwd()
    refs = [task.remote(cwd, plan["cls"], seed, params, *shared, plan["metrics"], metric,
                        memory_budget_mb) for params in plan["configs"]]
    trials = _gather(refs, f"ray tune {plan['method']}", progress)
    for i, trial in enumerate(trials):
        echo(f"{track} {plan['method']} trial {i + 1}/{plan['budget']} "
             f"{metric}={trial['value']:.4f} {trial['params']}")
    return {**finish_tuning(plan, trials, tuned_dir, echo), "engine": "ray"}
