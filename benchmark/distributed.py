"""The Ray engine: the same jobs as the local engine, spread over a Ray cluster.

Why: embedding millions of images, or a sweep of (track x method) runs and tuning
trials, outgrows one machine; the harness and its numbers must not change for it.
So nothing here computes anything itself: every batch, run and trial is computed by
the very functions the local engine calls (:func:`benchmark.embed.encode_batch`,
:func:`benchmark.run.jobs.run_one`, :func:`benchmark.tuning.run_trial`) and written by
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
  record atomically. :func:`ray_tune` - one Ray task per tuning trial. Both are the local
  functions handed a :class:`benchmark.run.executors.RayExecutor`.

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
    """:func:`benchmark.run.benchmark.run_benchmark` with one Ray task per (seed, track,
    method): the same job list on a :class:`~benchmark.run.executors.RayExecutor`.

    Every seed's data set, splits and per-track data are prepared in the driver and shared
    through Ray's object store (once per object); then all jobs are submitted at once. A
    pair-track job (preference: one method, every k) asks for no GPU. Messages are echoed
    in the local engine's order once all tasks are done.
    """
    from benchmark.run.benchmark import run_benchmark
    from benchmark.run.executors import RayExecutor

    executor = RayExecutor(address, num_cpus, cpus_per_task, gpus_per_task, max_retries)
    return run_benchmark(dataset, tracks, methods, protocol, seed, data_dir, results_dir,
                         leaderboard_dir, memory_budget_mb, progress, echo, tuned_dir, device,
                         seeds, metrics, executor=executor)


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
    """:func:`benchmark.tuning.tune` with one Ray task per trial (a RayExecutor): the same
    configurations, scored by the same :func:`benchmark.tuning.run_trial`; the driver picks
    the best (ties: the earlier trial) and stores it exactly as the local engine does."""
    from benchmark.run.executors import RayExecutor
    from benchmark.tuning import tune

    executor = RayExecutor(address, num_cpus, cpus_per_task, gpus_per_task, max_retries)
    return tune(track, method, budget, dataset, metric, seed, protocol, data_dir, tuned_dir,
                memory_budget_mb, progress, echo, metrics, executor=executor)
