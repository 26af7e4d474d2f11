"""One Ray Data actor pool: a model loaded once per actor, whole batches mapped through it.

Why one: batch inference (embedding images, VLM scoring) is the same shape whatever the
model: rows of pickled payloads go through ``map_batches`` over ``workers`` actors, each
holding one worker object (one model), with ``num_gpus`` per actor where the cluster has
GPUs. The worker is a plain class of the caller's (``worker(payload) -> result``); this
module knows nothing about embeddings or VLMs, and nothing above the engine layer.

Ray is imported inside functions only.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from benchmark.errors import GembenchError


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


def auto_gpus(gpus_per_worker: float | None) -> float:
    """``gpus_per_worker``, or 1 when the cluster has GPUs and none was given."""
    if gpus_per_worker is not None:
        return float(gpus_per_worker)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def in_driver_folder(cwd: str) -> None:
    """Relative paths in a task mean what they mean in the driver (shared file system)."""
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)


class _Actor:
    """A Ray Data actor: builds ``target(**kwargs)`` once, maps pickled payloads through it."""

    def __init__(self, target: Any, kwargs: dict[str, Any], cwd: str) -> None:
        in_driver_folder(cwd)  # relative model / image paths mean the driver's
        self.worker = target(**kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [pickle.dumps(self.worker(pickle.loads(p)), protocol=pickle.HIGHEST_PROTOCOL)
               for p in batch["payload"]]
        return {"b": np.asarray(batch["b"], dtype=np.int64),
                "payload": np.array(out, dtype=object)}


def actor_map(target: type, kwargs: dict[str, Any], payloads: Sequence[Any], *,
              first: int = 0, workers: int = 2, gpus_per_worker: float | None = None,
              cpus_per_worker: float = 1.0, ordered: bool = True, progress: bool = False
              ) -> Iterator[tuple[int, Any]]:
    """``(index, target(**kwargs)(payload))`` for every payload, on a pool of Ray actors.

    Indices count from ``first``. ``ordered`` yields in payload order whatever order the
    actors finish in (a consumer that appends to a store needs it); otherwise as they come.
    Ray Data restarts a lost actor and retries its batch (``max_restarts=-1``).
    """
    import ray

    if not payloads:
        return
    gpus = auto_gpus(gpus_per_worker)
    rows = [{"b": first + n, "payload": pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)}
            for n, p in enumerate(payloads)]
    ctx = ray.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ctx.execution_options.preserve_order = ordered
    ctx.enable_progress_bars = progress
    try:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _Actor,
            fn_constructor_kwargs={"target": target, "kwargs": dict(kwargs),
                                   "cwd": os.getcwd()},
            batch_size=1,
            batch_format="numpy",
            concurrency=max(1, min(int(workers), len(rows))),
            num_cpus=cpus_per_worker,
            num_gpus=gpus or None,
        )
        waiting: dict[int, Any] = {}
        expected = first
        for row in ds.iter_rows():
            b, result = int(row["b"]), pickle.loads(row["payload"])
            if not ordered:
                yield b, result
                continue
            waiting[b] = result
            while expected in waiting:
                yield expected, waiting.pop(expected)
                expected += 1
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = old
