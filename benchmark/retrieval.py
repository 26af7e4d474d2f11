"""Nearest-neighbour retrieval through faiss, and what an approximate index costs in recall.

A content method (``clip-text``, ``two-tower``) maps users and items into one vector space;
ranking a user is then a maximum-inner-product search. Over 1M images a dense
``users x items`` product is wasteful, so retrieval goes through a faiss index:

- ``flat``: exact search (``IndexFlatIP`` / ``IndexFlatL2``), the default; its top-k equals
  numpy's ``argsort(-q @ X.T)[:, :k]`` up to ties and float rounding.
- ``ivf``: ``IndexIVFFlat``, k-means into ``nlist`` lists, ``nprobe`` of them searched; exact
  when ``nprobe == nlist``.
- ``hnsw``: ``IndexHNSWFlat`` graph with ``m`` links per node, ``ef_search`` candidates.

The price of an approximation is measured, never assumed: :func:`approximation_recall` is the
share of the exact top-k that the approximate search also returns. A GPU index is used when
``faiss.get_num_gpus() > 0`` (the ``faiss-gpu`` wheel) and never required; HNSW has no GPU
version and stays on the CPU. faiss is imported inside functions (``gembench --help`` stays
fast).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.errors import DataError

__all__ = ["INDEX_KINDS", "approximation_recall", "build_index", "exact_search",
           "index_info", "search"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
METRICS = ("ip", "l2")
_GPU_RESOURCES: dict[str, Any] = {}


def _as_matrix(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """float32, C-contiguous, 2-D, finite: the only layout faiss accepts."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2:
        raise DataError(f"{name} must be 2-D (rows, dim), got shape {arr.shape}",
                        path=f"<{name}>", rule="vectors are a 2-D float matrix")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{name} have dimension {arr.shape[1]}, the index has {dim}",
                        path=f"<{name}>", rule="queries and items share one dimension")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} row holds NaN or inf", path=f"<{name}>", row=row + 1,
                        rule="vectors are finite")
    return arr


def default_nlist(n_items: int) -> int:
    """IVF lists: ~4 sqrt(n) (faiss's rule of thumb), at least 1, at most n / 39 when possible
    (k-means wants ~39 training points per centroid)."""
    return int(max(1, min(round(4 * np.sqrt(n_items)), max(1, n_items // 39))))


def build_index(
    item_vectors: np.ndarray,
    kind: str = "flat",
    metric: str = "ip",
    *,
    nlist: int | None = None,
    nprobe: int = 8,
    m: int = 32,
    ef_search: int = 128,
    ef_construction: int = 64,
    device: str = "auto",
    seed: int = 0,
) -> Any:
    """A faiss index over ``item_vectors`` (row r gets id r).

    ``kind``: ``flat`` (exact), ``ivf`` (``nlist`` lists, default :func:`default_nlist`;
    ``nprobe`` searched) or ``hnsw`` (``m`` links, ``ef_search``). ``metric``: ``ip`` (inner
    product: larger is better) or ``l2``. ``device``: ``auto`` (GPU when faiss sees one),
    ``cpu``, or ``gpu`` (an error when there is none).
    """
    import faiss

    if kind not in INDEX_KINDS:
        raise DataError(f"unknown index kind {kind!r}", path="<index>",
                        rule=f"one of {list(INDEX_KINDS)}")
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}", path="<index>", rule=f"one of {METRICS}")
    if device not in ("auto", "cpu", "gpu"):
        raise DataError(f"unknown device {device!r}", path="<index>",
                        rule="one of ['auto', 'cpu', 'gpu']")
    x = _as_matrix(item_vectors, "item vectors")
    n, d = x.shape
    if n == 0:
        raise DataError("no item vectors to index", path="<item vectors>",
                        rule="an index holds at least one item")
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if kind == "flat":
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    elif kind == "ivf":
        lists = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= lists <= n:
            raise DataError(f"nlist={lists} with {n} items", path="<index>",
                            rule="1 <= nlist <= number of items")
        quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, lists, faiss_metric)
        index.cp.seed = int(seed)  # k-means initialisation: seeded, so builds repeat
        index.cp.min_points_per_centroid = 1  # small pools: no "too few points" warning
        index.train(x)
        index.nprobe = int(min(max(1, nprobe), lists))
    else:
        index = faiss.IndexHNSWFlat(d, int(m), faiss_metric)
        index.hnsw.efConstruction = int(ef_construction)
        index.hnsw.efSearch = int(ef_search)
    index.add(x)
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "gpu" and gpus == 0:
        raise DataError("device='gpu' but faiss sees no GPU", path="<index>",
                        rule="install faiss-gpu on a GPU machine, or use device='auto'")
    if device != "cpu" and gpus > 0 and kind != "hnsw":
        if "gpu" not in _GPU_RESOURCES:  # one set of GPU resources per process, kept alive
            _GPU_RESOURCES["gpu"] = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES["gpu"], 0, index)
    return index


def index_info(index: Any) -> dict[str, Any]:
    """What an index is, for records: kind, size, and its search knobs."""
    import faiss

    cpu = index
    on_gpu = hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__
    if on_gpu:
        cpu = faiss.index_gpu_to_cpu(index)
    info: dict[str, Any] = {"index": type(cpu).__name__, "ntotal": int(index.ntotal),
                            "device": "gpu" if on_gpu else "cpu"}
    if hasattr(cpu, "nprobe"):
        info.update(nlist=int(cpu.nlist), nprobe=int(index.nprobe))
    if hasattr(cpu, "hnsw"):
        info.update(ef_search=int(cpu.hnsw.efSearch))
    return info


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest items of each query: ``(ids int64 [n, k], scores float32 [n, k])``.

    Best first (largest inner product, or smallest L2 distance). ``k`` larger than the index
    is cut to its size; slots an approximate index could not fill hold id -1 and score
    ``-inf`` (inner product) or ``+inf`` (L2).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    import faiss

    q = _as_matrix(queries, "queries", dim=index.d)
    k = int(min(k, index.ntotal))
    if len(q) == 0:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    # one OpenMP thread: faiss's blocked products round differently with another thread
    # count (seen: ndcg@10 moved by 2.5e-5 between 2 threads and a 1-CPU Ray worker), and a
    # number must not depend on where it was computed
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(q, k)
    finally:
        faiss.omp_set_num_threads(threads)
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    missing = ids < 0
    if missing.any():
        worst = np.inf if index.metric_type == faiss.METRIC_L2 else -np.inf
        scores[missing] = worst
    return ids, scores


def exact_search(item_vectors: np.ndarray, queries: np.ndarray, k: int,
                 block: int = 1024) -> np.ndarray:
    """Exact top-``k`` ids by inner product in numpy (ties: lower id first), for reference."""
    from benchmark.ranking import topk

    x = np.asarray(item_vectors, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    out = [topk(q[s : s + block] @ x.T, min(k, len(x)))[0] for s in range(0, len(q), block)]
    return np.concatenate(out) if out else np.empty((0, min(k, len(x))), np.int64)


def approximation_recall(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    """The recall cost of an approximate index.

    recall = mean over queries q of |A_q ∩ E_q| / |E_q|, with E_q the exact top-k ids of
    query q (``exact_ids`` row, -1 entries ignored) and A_q the approximate ones; 1.0 means
    the approximation lost nothing. Both arrays are ``[n_queries, k]``.
    """
    exact = np.asarray(exact_ids, dtype=np.int64)
    approx = np.asarray(approx_ids, dtype=np.int64)
    if exact.ndim != 2 or approx.shape[0] != exact.shape[0]:
        raise ValueError(f"exact {exact.shape} and approx {approx.shape}: need [n, k] each")
    if exact.size == 0:
        return 1.0
    # vectorised set intersection on (row, id) keys
    span = int(max(exact.max(), approx.max(initial=-1))) + 2
    rows = np.arange(len(exact), dtype=np.int64)[:, None] * span
    approx_keys = (rows + approx)[approx >= 0]
    found = np.isin(rows + exact, approx_keys) & (exact >= 0)
    n_exact = (exact >= 0).sum(axis=1)
    per_query = np.where(n_exact > 0, found.sum(axis=1) / np.maximum(n_exact, 1), 1.0)
    return float(per_query.mean())
