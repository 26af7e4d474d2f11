"""The full-ranking engine: score -> mask -> top-K -> metrics, in user chunks.

Every ranking method and every submitted predictions file is measured by the
same code: :func:`metrics_from_ranked` turns ranked lists into per-user metric
vectors. The engine never holds the users x items score matrix: users are
processed in chunks sized to a memory budget.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from benchmark.errors import GembenchError
from benchmark.metrics import (
    average_popularity,
    catalogue_coverage,
    parse_metric,
    ranking_metrics,
)
from benchmark.progress import progress_bar
from benchmark.protocols import RankingMethod
from benchmark.ranking import hits_from_ranked, topk


@dataclass
class RankingEvaluation:
    """Per-user metric vectors of one evaluation, with the ranked lists behind them."""

    user_idx: np.ndarray  # evaluated users (dense indices), ascending
    ranked: np.ndarray  # int64 [n_evaluated, K], -1 padded
    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    n_users_evaluated: int
    n_users_skipped: int
    extra: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"  # the engine that ranked: cpu (numpy), cpu-torch or cuda[:N]


def max_k(metric_names: list[str] | tuple[str, ...]) -> int:
    return max(parse_metric(name)[1] for name in metric_names)


def chunk_size(n_items: int, memory_budget_mb: float) -> int:
    """Users per chunk: the score block (float32) plus the engine's temporaries fit the budget."""
    per_user = n_items * (4 + 4 + 1)  # scores, partition copy, mask-sized temporaries
    return int(max(1, min(65536, memory_budget_mb * 2**20 // per_user)))


def device_chunk_size(n_items: int, memory_budget_mb: float) -> int:
    """Users per chunk of the torch engine: the budget is the *device's* score memory.

    Half of it holds the float32 score block, the other half the top-K temporaries
    (torch.topk's workspace, the tie repair's row blocks of int64 keys).
    """
    per_user = n_items * 4 * 2
    return int(max(1, min(65536, memory_budget_mb * 2**20 // per_user)))


def metrics_from_ranked(
    ranked: np.ndarray,
    relevant: sp.csr_matrix,
    metric_names: list[str] | tuple[str, ...],
    item_popularity: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-user metrics of ranked lists (rows of ``relevant`` align with rows of ``ranked``).

    Returns per-user vectors and list-level figures (catalogue coverage, average
    popularity of recommended items) at the largest K.
    """
    hits = hits_from_ranked(ranked, relevant)
    n_relevant = np.diff(relevant.indptr)
    per_user = ranking_metrics(hits, n_relevant, list(metric_names))
    k = ranked.shape[1]
    extra = {f"coverage@{k}": float(catalogue_coverage(ranked, relevant.shape[1], k))}
    if item_popularity is not None:
        per_user[f"avg_popularity@{k}"] = average_popularity(ranked, item_popularity, k)
    return per_user, extra


def evaluate_ranking(
    method: RankingMethod,
    exclude: sp.csr_matrix,
    relevant: sp.csr_matrix,
    metric_names: list[str] | tuple[str, ...],
    *,
    memory_budget_mb: float = 512.0,
    item_popularity: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "evaluate",
    device: str = "cpu",
) -> RankingEvaluation:
    """Full-ranking evaluation of a fitted ``method``.

    ``exclude[u]`` are the items masked for user ``u`` (its training items),
    ``relevant[u]`` its held-out items; users with no held-out item are skipped
    and counted.

    Speed: a method may accept ``score(user_idx, out=buffer)`` and write its float32 scores
    into ``buffer`` (``[len(user_idx), n_items]``, reused across chunks), e.g.
    ``np.matmul(U[user_idx], V.T, out=out)``; the NaN check rides on the masking and the
    top-K passes, and the top-K runs row blocks on all CPUs (see :func:`topk`).

    ``device`` (see :mod:`benchmark.device`): ``cpu`` is this numpy engine; ``cuda`` runs
    scoring, masking and the exact top-K on the GPU with the same tie rule (identical
    lists for identical scores), ``cpu-torch`` the same torch code on the CPU, ``auto``
    picks ``cuda`` when there is one. On a torch device a method may offer
    ``score_torch(user_idx, device) -> float32 tensor [n_chunk, n_items]`` (a fresh
    tensor: it is masked in place); other methods' numpy scores are copied over per chunk.
    ``memory_budget_mb`` then sizes the device's score block (:func:`device_chunk_size`).
    """
    from benchmark.device import is_torch_device, resolve_device

    device = resolve_device(device)
    n_users, n_items = relevant.shape
    if exclude.shape != relevant.shape:
        raise ValueError(f"exclude {exclude.shape} and relevant {relevant.shape} differ")
    exclude = exclude.tocsr()
    relevant = relevant.tocsr()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    k = max_k(metric_names)  # lists are -1 padded when fewer items remain
    if is_torch_device(device):
        with progress_bar(total=len(users), desc=desc, unit="user", enabled=progress) as bar:
            ranked = _rank_torch(method, exclude, users, n_items, k, device, memory_budget_mb,
                                 bar)
        return _finish(ranked, users, relevant, metric_names, item_popularity, n_users,
                       device)
    step = chunk_size(n_items, memory_budget_mb)
    ranked = np.empty((len(users), k), dtype=np.int64)
    # A method whose score() takes ``out=`` writes each chunk into one reused float32
    # buffer: no fresh allocation (and page faults) per chunk.
    buffer = (np.empty((min(step, len(users)), n_items), dtype=np.float32)
              if _accepts_out(method) and len(users) else None)
    with progress_bar(total=len(users), desc=desc, unit="user", enabled=progress) as bar:
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
            scores = _numpy_scores(method, chunk, n_items, buffer)
            mask = exclude[chunk]
            rows = np.repeat(np.arange(len(chunk)), np.diff(mask.indptr))
            # NaN check fused into passes that happen anyway: the masked entries are read
            # here (nnz values), the rest by the top-K selection (its group maxima).
            if np.isnan(scores[rows, mask.indices]).any():
                _raise_nan(method, scores, chunk)
            scores[rows, mask.indices] = -np.inf
            try:
                ranked[start : start + len(chunk)], _ = topk(scores, k)
            except ValueError:
                if np.isnan(scores).any():  # unmasked NaN: same message as a full check
                    _raise_nan(method, scores, chunk)
                raise
            bar.update(len(chunk))
    return _finish(ranked, users, relevant, metric_names, item_popularity, n_users, device)


def _finish(ranked: np.ndarray, users: np.ndarray, relevant: sp.csr_matrix,
            metric_names: list[str] | tuple[str, ...], item_popularity: np.ndarray | None,
            n_users: int, device: str) -> RankingEvaluation:
    per_user, extra = metrics_from_ranked(ranked, relevant[users], metric_names, item_popularity)
    summary = {name: float(values.mean()) if len(values) else 0.0
               for name, values in per_user.items()}
    return RankingEvaluation(
        user_idx=users,
        ranked=ranked,
        per_user=per_user,
        summary=summary,
        n_users_evaluated=len(users),
        n_users_skipped=int(n_users - len(users)),
        extra=extra,
        device=device,
    )


def _rank_torch(method: RankingMethod, exclude: sp.csr_matrix, users: np.ndarray,
                n_items: int, k: int, device: str, memory_budget_mb: float, bar) -> np.ndarray:
    """The torch engine's chunk loop: score -> NaN check -> mask -> exact top-K, on device.

    The training rows of the evaluated users are sliced once (CSR, in ``users`` order), so
    a chunk's mask is a contiguous slice of it sent to the device; only the ``[chunk, K]``
    lists come back.
    """
    import torch

    from benchmark.device import torch_device
    from benchmark.ranking import topk_torch

    dev = torch_device(device)
    step = device_chunk_size(n_items, memory_budget_mb)
    block_bytes = int(memory_budget_mb * 2**20 // 2)
    ranked = np.empty((len(users), k), dtype=np.int64)
    mask = exclude[users]
    counts = torch.from_numpy(np.diff(mask.indptr).astype(np.int64))
    score_torch = getattr(method, "score_torch", None)
    buffer = (np.empty((min(step, len(users)), n_items), dtype=np.float32)
              if score_torch is None and _accepts_out(method) and len(users) else None)
    with torch.no_grad():
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
            stop = start + len(chunk)
            if score_torch is not None:
                scores = score_torch(chunk, dev)
                _check_shape(method, scores, chunk, n_items)
                scores = scores.to(device=dev, dtype=torch.float32).contiguous()
            else:
                scores = _numpy_scores(method, chunk, n_items, buffer)
                scores = torch.from_numpy(scores).to(dev)
            lo, hi = int(mask.indptr[start]), int(mask.indptr[stop])
            cols = torch.from_numpy(mask.indices[lo:hi].astype(np.int64)).to(dev)
            rows = torch.repeat_interleave(
                torch.arange(len(chunk), dtype=torch.int64), counts[start:stop]).to(dev)
            # NaN check of the masked entries before they become -inf; the rest rides on
            # the top-K (NaN sorts largest in torch.topk).
            if bool(torch.isnan(scores[rows, cols]).any()):
                _raise_nan_torch(method, scores, chunk)
            scores.index_put_((rows, cols), torch.tensor(-np.inf, device=dev))
            try:
                idx, _ = topk_torch(scores, k, block_bytes=block_bytes)
            except ValueError:
                if bool(torch.isnan(scores).any()):
                    _raise_nan_torch(method, scores, chunk)
                raise
            ranked[start:stop] = idx.cpu().numpy()
            bar.update(len(chunk))
    return ranked


def _numpy_scores(method: RankingMethod, chunk: np.ndarray, n_items: int,
                  buffer: np.ndarray | None) -> np.ndarray:
    """A chunk's numpy scores as a writeable C-contiguous float32 array (both engines)."""
    if buffer is not None:
        scores = np.asarray(method.score(chunk, out=buffer[: len(chunk)]))
    else:
        scores = np.asarray(method.score(chunk))
    _check_shape(method, scores, chunk, n_items)
    if scores.dtype != np.float32:
        scores = scores.astype(np.float32)
    elif not scores.flags.writeable or not scores.flags.c_contiguous:
        scores = np.ascontiguousarray(scores).copy()
    return scores


def _accepts_out(method: RankingMethod) -> bool:
    """Whether ``method.score`` takes an ``out=`` float32 buffer to write the chunk into."""
    try:
        params = inspect.signature(method.score).parameters
    except (TypeError, ValueError):
        return False
    return "out" in params


def _check_shape(method: RankingMethod, scores, chunk: np.ndarray, n_items: int) -> None:
    if tuple(scores.shape) != (len(chunk), n_items):
        raise GembenchError(
            f"method {method.name!r} returned scores of shape {tuple(scores.shape)}, "
            f"expected {(len(chunk), n_items)} (rule: score() returns [users, items])"
        )


def _raise_nan(method: RankingMethod, scores: np.ndarray, chunk: np.ndarray) -> None:
    row, col = np.argwhere(np.isnan(scores))[0]
    raise GembenchError(
        f"method {method.name!r} returned NaN scores (first: user index {chunk[row]}, "
        f"item index {col}) (rule: scores are finite or -inf)"
    )


def _raise_nan_torch(method: RankingMethod, scores, chunk: np.ndarray) -> None:
    import torch

    row, col = (int(v) for v in torch.nonzero(torch.isnan(scores))[0])
    raise GembenchError(
        f"method {method.name!r} returned NaN scores (first: user index {chunk[row]}, "
        f"item index {col}) (rule: scores are finite or -inf)"
    )
