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
* :func:`ray_vlm_scores` - ``vlm-rerank``'s uncached prompts, the same way (one VLM
  per actor); the driver writes every returned score into the reranker's cache.
* :func:`ray_run_benchmark` - one Ray task per (seed, track, method) run; each writes its
  record atomically. :func:`ray_tune` - one Ray task per tuning trial.

Ray is imported inside functions only (``gembench --help`` stays fast). Workers must
see the same files as the driver (a shared file system on a cluster); relative paths
are resolved from the driver's working folder.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import GembenchError

#: retries of a failed batch inside its actor before Ray's own task retry
BATCH_RETRIES = 2


class RayUnavailable(GembenchError):
    """Ray is not installed or the cluster at ``--address`` cannot be reached."""


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to (``address``: ``auto`` or ``host:port``) or start a local Ray.

    Does nothing when Ray is already initialised (a test or a notebook started it);
    returns True when this call initialised it. ``num_cpus`` caps a local Ray only.
    """
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a pinned dependency
        raise RayUnavailable("the Ray engine needs ray: pip install -c constraints.txt "
                             "'ray[data]'") from e
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address or None, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"at {address!r}" if address else "locally"
        raise RayUnavailable(
            f"cannot start or reach a Ray cluster {where}: {e} (start one with "
            "`ray start --head` and pass --address auto, or drop --address for a local Ray)"
        ) from e
    return True


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes: ``ray.init`` retries an unreachable GCS for long."""
    import socket

    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address!r}: {e} (is `ray start --head` "
            "running there? on the head node, --address auto finds it)"
        ) from e


def _auto_gpus(gpus_per_worker: float | None) -> float:
    """``gpus_per_worker``, or 1 when the cluster has GPUs and none was given."""
    if gpus_per_worker is not None:
        return float(gpus_per_worker)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


# embedding ---------------------------------------------------------------------------
class _EmbedActor:
    """One Ray Data actor: loads the encoder once, then computes whole batches."""

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

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from benchmark.embed import encode_batch

        out = []
        for b, ids, items in zip(batch["b"], batch["ids"], batch["items"], strict=True):
            ids = [str(i) for i in ids]
            items = [Path(str(i)) for i in items] if self.images else [str(i) for i in items]
            for attempt in range(self.retries + 1):
                try:
                    if int(b) in self.fail_once:
                        self.fail_once.discard(int(b))
                        raise OSError(f"injected failure of batch {int(b)}")
                    result = encode_batch(self.enc, ids, items, self.images)
                    break
                except Exception:
                    if attempt == self.retries:
                        raise
            out.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        return {"b": np.asarray(batch["b"], dtype=np.int64),
                "payload": np.array(out, dtype=object)}


def ray_batches(encoder: Any, device: str | None = None, workers: int = 2,
                gpus_per_worker: float | None = None, cpus_per_worker: float = 1.0,
                fail_once: Sequence[int] = (), progress: bool = True
                ) -> Callable[..., Iterator[Any]]:
    """A ``compute`` for :func:`benchmark.embed.embed` that runs batches on Ray actors.

    ``encoder`` is what each actor loads: a spec string (loaded by the actor, on its
    GPU when it has one) or an :class:`~benchmark.embed.Encoder` object (shipped).
    """

    def compute(enc: Any, ids: Sequence[str], items: Sequence[Any], images: bool,
                batch_size: int, first: int, end: int, _workers: int = 4) -> Iterator[Any]:
        import ray

        if first >= end:
            return
        gpus = _auto_gpus(gpus_per_worker)
        actor_device = device or ("cuda" if gpus > 0 else "cpu")
        rows = []
        for b in range(first, end):
            lo, hi = b * batch_size, min(len(ids), (b + 1) * batch_size)
            rows.append({"b": b, "ids": list(ids[lo:hi]),
                         "items": [str(i) for i in items[lo:hi]]})
        ctx = ray.data.DataContext.get_current()
        old = ctx.execution_options.preserve_order, ctx.enable_progress_bars
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = progress
        try:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                _EmbedActor,
                fn_constructor_kwargs={"encoder": encoder, "device": actor_device,
                                       "images": images, "fail_once": tuple(fail_once)},
                batch_size=1,
                batch_format="numpy",
                concurrency=max(1, int(workers)),
                num_cpus=cpus_per_worker,
                num_gpus=gpus or None,
            )  # Ray Data restarts a lost actor and retries its batch (max_restarts=-1)
            waiting: dict[int, Any] = {}
            expected = first
            for row in ds.iter_rows():
                waiting[int(row["b"])] = row["payload"]
                while expected in waiting:  # in batch order, whatever order they finish
                    ok, vecs, lost = pickle.loads(waiting.pop(expected))
                    yield expected, ok, vecs, lost
                    expected += 1
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = old

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
class _VLMActor:
    """One Ray Data actor of ``vlm-rerank``: loads the VLM once, scores whole batches.

    It runs the reranker's own local code (``next_token_logprobs``, ``generate``,
    ``yes_no_score``, ``label_logprobs``) on a ``VLMReranker`` built from the driver's
    hyper-parameters with no cache: only the driver reads and writes the cache.
    """

    def __init__(self, params: dict[str, Any], item_kind: str, device: str, cwd: str):
        from baselines.vlm_rerank import VLMReranker

        _in_driver_folder(cwd)  # relative model / image paths mean the driver's
        vlm = VLMReranker(**{**params, "device": device, "engine": "local",
                             "cache_dir": None})
        vlm.item_kind_ = item_kind
        vlm.stats_ = {"n_model_calls": 0, "model_seconds": 0.0, "n_prompts": 0,
                      "n_descriptions": 0}
        vlm._loaded, vlm._cache = None, None
        vlm._model()  # once per actor
        self.vlm = vlm

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for payload in batch["payload"]:
            mode, jobs = pickle.loads(payload)
            before = dict(self.vlm.stats_)
            results = self._yes_no(jobs) if mode == "yes-no" else self._describe(jobs)
            stats = {k: v - before[k] for k, v in self.vlm.stats_.items()}
            out.append(pickle.dumps((results, stats), protocol=pickle.HIGHEST_PROTOCOL))
        return {"b": np.asarray(batch["b"], dtype=np.int64),
                "payload": np.array(out, dtype=object)}

    def _yes_no(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from baselines.vlm_rerank import yes_no_messages

        vlm = self.vlm
        messages = [yes_no_messages(len(j["images"]) - 1, vlm.item_kind_) for j in jobs]
        values = vlm.yes_no_score(vlm.next_token_logprobs(messages,
                                                          [j["images"] for j in jobs]))
        return [{"id": j["id"], "value": float(v)} for j, v in zip(jobs, values, strict=True)]

    def _describe(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from baselines.vlm_rerank import choice_messages, describe_messages

        vlm = self.vlm
        texts = [j["description"] for j in jobs]
        need = [k for k, t in enumerate(texts) if t is None]
        for start in range(0, len(need), vlm.batch_size):
            part = need[start : start + vlm.batch_size]
            hists = [jobs[k]["history"] for k in part]
            made = vlm.generate([describe_messages(len(h), vlm.item_kind_) for h in hists],
                                hists)
            vlm.stats_["n_descriptions"] += len(part)
            for k, t in zip(part, made, strict=True):
                texts[k] = t
        prompts = [(k, np.asarray(perm), paths) for k, j in enumerate(jobs)
                   for perm, paths in zip(j["perms"], j["orders"], strict=True)]
        totals = [np.zeros(len(j["perms"][0]) if j["perms"] else 0) for j in jobs]
        for start in range(0, len(prompts), vlm.batch_size):
            part = prompts[start : start + vlm.batch_size]
            lp = vlm.next_token_logprobs([choice_messages(texts[k], len(perm))
                                          for k, perm, _ in part],
                                         [paths for _, _, paths in part])
            for (k, perm, _), row in zip(part, lp, strict=True):
                totals[k][perm] += vlm.label_logprobs(row, len(perm))
        return [{"id": j["id"], "text": texts[k], "value": (totals[k] / vlm.n_orders).tolist()}
                for k, j in enumerate(jobs)]


def ray_vlm_scores(params: dict[str, Any], mode: str, item_kind: str,
                   jobs: Sequence[dict[str, Any]], batch_size: int, *,
                   address: str | None = None, workers: int = 2,
                   gpus_per_worker: float | None = None, cpus_per_worker: float = 1.0,
                   progress: bool = False) -> Iterator[tuple[list[dict[str, Any]],
                                                              dict[str, float]]]:
    """``vlm-rerank``'s uncached prompts as Ray Data ``map_batches`` over ``workers`` actors.

    ``jobs`` are plain data (image paths, a cached description or None); each Ray row is
    ``batch_size`` of them. Yields, per finished row, its results (``id``: the job's index
    in ``jobs``) and its cost counters, so the driver can cache them as they arrive.
    """
    import ray

    ensure_ray(address)
    gpus = _auto_gpus(gpus_per_worker)
    device = params.get("device", "auto")
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    drop = ("key", "score_keys")
    rows = []
    for b, lo in enumerate(range(0, len(jobs), max(1, int(batch_size)))):
        part = [{**{k: v for k, v in j.items() if k not in drop}, "id": lo + n}
                for n, j in enumerate(jobs[lo : lo + max(1, int(batch_size))])]
        rows.append({"b": b, "payload": pickle.dumps((mode, part),
                                                     protocol=pickle.HIGHEST_PROTOCOL)})
    if not rows:
        return
    ctx = ray.data.DataContext.get_current()
    old = ctx.enable_progress_bars
    ctx.enable_progress_bars = progress
    try:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _VLMActor,
            fn_constructor_kwargs={"params": dict(params), "item_kind": item_kind,
                                   "device": device, "cwd": os.getcwd()},
            batch_size=1,
            batch_format="numpy",
            concurrency=max(1, min(int(workers), len(rows))),
            num_cpus=cpus_per_worker,
            num_gpus=gpus or None,
        )
        for row in ds.iter_rows():
            yield pickle.loads(row["payload"])
    finally:
        ctx.enable_progress_bars = old


# runs and tuning ---------------------------------------------------------------------
def _in_driver_folder(cwd: str) -> None:
    """Relative paths in a task mean what they mean in the driver (shared file system)."""
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)


def _run_one_task(cwd: str, ds: Any, split: Any, track_name: str, method_name: str,
                  fit: Any, relevant: Any, side: Any, options: dict[str, Any]
                  ) -> tuple[str | None, tuple[str, str, str] | None, list[str]]:
    from benchmark.runner import run_one

    _in_driver_folder(cwd)
    lines: list[str] = []
    path, skip = run_one(ds, split, track_name, method_name, fit, relevant, side,
                         echo=lines.append, progress=False, **options)
    return (str(path) if path is not None else None), skip, lines


def _run_pair_task(cwd: str, ds: Any, track: str, method: str, seed: int, data_dir: str,
                   results_dir: str) -> tuple[list[str], list[tuple[str, str, str]], list[str]]:
    from benchmark.runner import run_pair_one

    _in_driver_folder(cwd)
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

    _in_driver_folder(cwd)
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
