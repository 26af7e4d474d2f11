"""Top-K selection for the full-ranking engine, and the hit matrix the metrics consume.

Tie rule, used everywhere in gembench: items are ordered by score descending, and equal
scores by item index ascending (lower index first). It is applied exactly -- the result
does not depend on numpy's partition internals -- because popularity-like scorers tie a
lot and the order within a tie decides which items make the cut at ``k``. Items scored
``-inf`` are masked (e.g. training items) and are never returned.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["hits_from_ranked", "topk", "topk_torch"]

#: Rows are processed in blocks of about this many scores, which bounds the temporaries
#: (argpartition's int64 indices are 8 bytes per score) at a few tens of MB.
_BLOCK_ELEMENTS = 1 << 22


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items of each row: ``(indices int64 (n, k), values float32 (n, k))``.

    Order: score descending, ties by lower item index first (exactly, deterministically).
    Entries equal to ``-inf`` are never returned; a row with fewer than ``k`` other entries
    is padded with index -1 and value ``-inf``. ``k >= N`` is allowed (everything finite,
    sorted, then padding). ``+inf`` ranks above every finite score.

    Method (exact at every step, no per-row Python loop):

    1. Wide rows (``N >= 32 k``): columns are split into ``G ~ sqrt(k N)`` strided groups
       (``c % G``) and the group maxima computed (one cheap pass). With ``thr`` the k-th
       largest group maximum, every entry of the top k lies in a group whose maximum is
       ``>= thr``; usually that is about ``k`` groups, i.e. ``~sqrt(k N)`` candidates, so the
       expensive selection runs on a few thousand entries instead of ``N``. Where more
       than ``k`` group maxima tie at ``thr`` (popularity scores, a constant row), only the
       groups above ``thr`` are candidates and the free slots take the lowest-index
       entries ``== thr``, found by a windowed scan from the left.
    2. ``np.argpartition`` finds a top-k set; it is exact unless the k-th value ``t`` is
       tied beyond the cut (``#{s >= t} > k``) or is ``-inf``. Only those rows are
       repaired, vectorised over all of them: entries ``> t`` are kept and the free slots
       take the lowest-index entries ``== t``.
    3. ``np.lexsort`` of the k survivors by ``(-score, index)`` gives the order.

    Raises ValueError if ``scores`` contains NaN (which has no place in an order), naming
    the first bad row and column; TypeError for a non-floating dtype. Values are returned as
    float32 (float64 input is ranked in float64, then rounded).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_rows, n_items), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise TypeError(f"scores must be a floating array, got {scores.dtype}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = int(k)
    n, n_items = scores.shape
    indices = np.full((n, k), -1, dtype=np.int64)
    values = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or n_items == 0:
        return indices, values
    width = min(k, n_items)
    step = max(1, _BLOCK_ELEMENTS // n_items)
    grouped = n_items >= _GROUPED_MIN_RATIO * width

    def one_block(start: int) -> None:  # blocks of rows, not rows: bounds memory
        block = scores[start : start + step]
        if grouped:  # the group maxima propagate NaN: no separate pass to find it
            idx, val = _topk_grouped(block, width, start)
        else:
            _check_no_nan(block, start)
            idx, val = _topk_plain(block, width)
        indices[start : start + step, :width] = idx
        values[start : start + step, :width] = val

    starts = range(0, n, step)
    threads = _threads()
    if threads > 1 and len(starts) > 1:
        # numpy releases the GIL in the heavy steps (reductions, partition, take); blocks
        # write disjoint rows, and map() re-raises the first failing block in row order.
        for _ in _pool(threads).map(one_block, starts):
            pass
    else:
        for start in starts:
            one_block(start)
    return indices, values


def _threads() -> int:
    """Worker threads for row blocks: ``GEMBENCH_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("GEMBENCH_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, min(8, os.cpu_count() or 1))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="gembench-topk")
    return _POOLS[threads]


#: Use the group-maximum prefilter when a row has at least this many items per slot of k.
_GROUPED_MIN_RATIO = 32
#: Groups = this x sqrt(k N): gathering a candidate costs more than partitioning a group
#: maximum, so a few more, smaller groups than the plain sqrt balance pay off.
_GROUPS_FACTOR = 1.0


def _check_no_nan(block: np.ndarray, offset: int, row_max: np.ndarray | None = None) -> None:
    # max() propagates NaN, so one contiguous reduction per row finds it without a bool copy;
    # ``row_max`` (any per-row reduction by max, e.g. group maxima) saves that pass.
    if row_max is None:
        row_max = block.max(axis=1)
    nan_rows = np.flatnonzero(np.isnan(row_max).reshape(len(block), -1).any(axis=1))
    if nan_rows.size:
        row = int(nan_rows[0])
        col = int(np.flatnonzero(np.isnan(block[row]))[0])
        raise ValueError(f"scores contain NaN (first at row {offset + row}, column {col})")


def _topk_grouped(block: np.ndarray, width: int, offset: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``width`` through the group-maximum prefilter (step 1 of :func:`topk`).

    Why it is exact: the ``width`` largest group maxima are ``width`` distinct entries
    ``>= thr``, so the true k-th value ``t >= thr`` and every entry of the top k lies in a
    group whose maximum is ``>= thr``. Rows with at most ``width`` groups tied at ``thr``
    take all those groups as candidates. Rows with more (heavy ties: popularity scores, a
    constant row) take only the groups above ``thr`` (fewer than ``width``; they hold every
    entry ``> thr``): if those hold ``>= width`` entries ``> thr`` the answer is among them,
    otherwise ``t == thr`` and the free slots take the lowest-index entries ``== thr`` of
    the full row.
    """
    block = np.ascontiguousarray(block)
    m, n_items = block.shape
    n_groups = max(4 * width, int(_GROUPS_FACTOR * np.sqrt(width * n_items)))
    layers_full = n_items // n_groups
    main = layers_full * n_groups
    group_max = block[:, :main].reshape(m, layers_full, n_groups).max(axis=1)
    if main < n_items:  # the tail columns main.. belong to groups 0, 1, ...
        tail = n_items - main
        np.maximum(group_max[:, :tail], block[:, main:], out=group_max[:, :tail])
    _check_no_nan(block, offset, group_max)
    cut = n_groups - width
    thr = np.partition(group_max, cut, axis=1)[:, cut]
    n_at = np.count_nonzero(group_max == thr[:, None], axis=1)
    tied = (n_at > width) & (thr > -np.inf)
    # A -inf threshold means fewer than k groups hold an entry above -inf: take exactly those.
    floor = np.where(tied, thr, np.maximum(thr, np.finfo(block.dtype).min))
    selected = (group_max > floor[:, None]) | ((group_max == floor[:, None]) & ~tied[:, None])

    cols, cand = _gather_groups(block, selected, n_groups)
    cand[tied] = np.where(cand[tied] > thr[tied, None], cand[tied], -np.inf)
    found = min(width, cand.shape[1])
    pos, val = _topk_plain(cand, found)
    indices = np.full((m, width), -1, dtype=np.int64)
    values = np.full((m, width), -np.inf, dtype=np.float32)
    indices[:, :found] = np.where(pos >= 0, np.take_along_axis(cols, np.maximum(pos, 0), 1), -1)
    values[:, :found] = val

    need = np.where(tied, width - np.count_nonzero(indices >= 0, axis=1), 0)
    fill = np.flatnonzero(need > 0)
    if fill.size:
        # Entries > thr are sorted and come first; the lowest-index entries == thr follow
        # in column order, which is already their place in the ranking.
        _, eq_col = _first_equal(block, fill, thr[fill], need[fill])
        slot_row, slot_col = np.nonzero(indices[fill] < 0)
        sub_idx, sub_val = indices[fill], values[fill]
        sub_idx[slot_row, slot_col] = eq_col
        sub_val[slot_row, slot_col] = thr[fill][slot_row]
        indices[fill], values[fill] = sub_idx, sub_val
    return indices, values


def _gather_groups(
    block: np.ndarray, selected: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Columns (-1 = none) and scores (-inf) of the selected strided groups of each row.

    Laid out as ``layer * n_groups + group``, layer-major with groups ascending, so the
    candidate position order is the item index order and ties keep the global rule.
    """
    m, n_items = block.shape
    counts = selected.sum(axis=1)
    sel_row, sel_group = np.nonzero(selected)
    slot = np.arange(sel_row.size) - (np.cumsum(counts) - counts)[sel_row]
    groups = np.full((m, max(1, int(counts.max()))), -1, dtype=np.int64)
    groups[sel_row, slot] = sel_group
    n_layers = -(-n_items // n_groups)
    cols = np.arange(n_layers, dtype=np.int64)[None, :, None] * n_groups + groups[:, None, :]
    cols = np.where((groups >= 0)[:, None, :] & (cols < n_items), cols, -1).reshape(m, -1)
    missing = cols < 0
    flat = np.where(missing, 0, cols) + (np.arange(m, dtype=np.int64) * n_items)[:, None]
    cand = np.take(block.reshape(-1), flat)
    cand[missing] = -np.inf
    return cols, cand


def _topk_plain(block: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``width`` (``width <= N``) by argpartition + tie repair (steps 2-3)."""
    m, n_items = block.shape
    if width == n_items:
        candidates = np.broadcast_to(np.arange(n_items, dtype=np.int64), (m, n_items))
        return _sort_candidates(block, candidates)
    cut = n_items - width
    candidates = np.argpartition(block, cut, axis=1)[:, cut:]
    # argpartition puts the k-th largest value first in the kept slice.
    kth = block[np.arange(m), candidates[:, 0]]
    # For kth == -inf count only entries above -inf: the row is short, not tied.
    floor = np.maximum(kth, np.finfo(block.dtype).min)
    n_at_least = np.count_nonzero(block >= floor[:, None], axis=1)
    inexact = np.flatnonzero(n_at_least != width)
    if inexact.size:
        candidates[inexact] = _repair(block[inexact], candidates[inexact], kth[inexact])
    return _sort_candidates(block, candidates)


def _repair(rows: np.ndarray, candidates: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Exact candidate sets for rows whose k-th value is tied beyond the cut or ``-inf``.

    Everything ``> kth`` is in any top-k set (argpartition already holds all of it); the
    remaining ``need`` slots take the ``need`` lowest-index entries ``== kth``. A ``-inf``
    k-th value means fewer than k entries above ``-inf``: the remaining slots become -1.
    """
    width = candidates.shape[1]
    cand_values = np.take_along_axis(rows, candidates, axis=1)
    above = cand_values > kth[:, None]
    out = np.where(above, candidates, -1)
    need = np.where(kth > -np.inf, width - above.sum(axis=1), 0)
    fill = np.flatnonzero(need > 0)
    if fill.size == 0:
        return out
    _, eq_col = _first_equal(rows, fill, kth[fill], need[fill])
    # Free slots, in (row, slot) order, number exactly need[r] in row r, and the picks come
    # in (row, column) order with need[r] per row: the two sequences pair up one to one.
    slot_row, slot_col = np.nonzero(~above[fill])
    out[fill[slot_row], slot_col] = eq_col
    return out


def _first_equal(
    block: np.ndarray, which: np.ndarray, target: np.ndarray, need: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each ``i``: the ``need[i]`` lowest columns of row ``which[i]`` equal to ``target[i]``.

    Returns ``(i, column)`` pairs in (i, column) order. Scans column windows of doubling
    width, vectorised over the rows still short of matches, so a row that is one value
    throughout (a cold-start user) stops after the first window instead of listing N ties.
    """
    n_cols = block.shape[1]
    remaining = need.astype(np.int64, copy=True)
    active = np.flatnonzero(remaining > 0)
    found_rows, found_cols = [], []
    start, window = 0, 4096
    while active.size and start < n_cols:  # at most ~log2(N / 4096) + 1 windows
        stop = min(n_cols, start + window)
        er, ec = np.nonzero(block[which[active], start:stop] == target[active, None])
        per_row = np.bincount(er, minlength=active.size)
        rank = np.arange(er.size) - (np.cumsum(per_row) - per_row)[er]
        keep = rank < remaining[active][er]
        found_rows.append(active[er[keep]])
        found_cols.append(ec[keep] + start)
        remaining[active] -= np.minimum(per_row, remaining[active])
        active = active[remaining[active] > 0]
        start, window = stop, 2 * window
    row_ids = np.concatenate(found_rows) if found_rows else np.empty(0, np.int64)
    col_ids = np.concatenate(found_cols) if found_cols else np.empty(0, np.int64)
    order = np.argsort(row_ids, kind="stable")  # windows are in column order already
    return row_ids[order], col_ids[order]


def _sort_candidates(block: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order candidate indices (-1 = none) by ``(-score, index)``; ``-inf`` becomes padding."""
    valid = candidates >= 0
    vals = np.take_along_axis(block, np.where(valid, candidates, 0), axis=1)
    valid &= vals > -np.inf
    vals = np.where(valid, vals, -np.inf)
    tiebreak = np.where(valid, candidates, block.shape[1])
    order = np.lexsort((tiebreak, -vals), axis=1)
    idx = np.take_along_axis(np.where(valid, candidates, -1), order, axis=1)
    return idx, np.take_along_axis(vals, order, axis=1).astype(np.float32)


def hits_from_ranked(ranked: np.ndarray, relevant: sp.csr_matrix | sp.csr_array) -> np.ndarray:
    """``hits[u, j] = ranked[u, j] in relevant_items(u)``: bool ``(n, K)``, False for -1.

    Each ``(row, item)`` pair is encoded as ``row * N + item``; the stored entries of the
    CSR matrix give a sorted code array (rows ascending, columns sorted within a row), so
    membership is a single ``np.searchsorted`` -- O(n K log nnz), no per-row loop. Stored
    zeros are not relevant.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked must be a 2-D int array, got {ranked.dtype} {ranked.shape}")
    if not sp.issparse(relevant):
        raise TypeError(f"relevant must be a scipy.sparse matrix, got {type(relevant).__name__}")
    relevant = relevant.tocsr()
    n, n_items = relevant.shape
    if ranked.shape[0] != n:
        raise ValueError(f"ranked has {ranked.shape[0]} rows but relevant has {n}")
    if ranked.size and (ranked.max() >= n_items or ranked.min() < -1):
        raise ValueError(f"ranked holds indices outside [-1, {n_items}) (-1 is padding)")
    counts = np.diff(relevant.indptr)
    codes = np.repeat(np.arange(n, dtype=np.int64) * n_items, counts)
    codes += relevant.indices
    codes = codes[relevant.data != 0]
    if not relevant.has_sorted_indices:
        codes.sort()
    valid = ranked >= 0
    query = np.arange(n, dtype=np.int64)[:, None] * n_items + ranked
    pos = np.searchsorted(codes, query)
    found = codes[np.minimum(pos, codes.size - 1)] == query if codes.size else False
    return valid & (pos < codes.size) & found


# ----------------------------------------------------------------------- the torch engine

#: Extra candidates torch.topk returns beyond k; a row needs the exact repair only when the
#: k-th value is still tied at the last of them (heavy ties, e.g. popularity scores).
TORCH_MARGIN = 16


def topk_torch(scores: Any, k: int, *, margin: int = TORCH_MARGIN,
               block_bytes: int = 256 * 2**20) -> tuple[Any, Any]:
    """:func:`topk` for a torch tensor, on its device: ``(indices int64, values float32)``.

    Same contract and the same tie rule as :func:`topk` (score descending, lower item index
    first, ``-inf`` never returned, -1 / ``-inf`` padding, ValueError on NaN), so the CPU
    (numpy) and GPU engines give identical lists. ``torch.topk`` alone does not fix the
    order within ties, hence:

    1. ``torch.topk`` of ``k + margin`` candidates per row (NaN sorts largest there, so a
       NaN row shows at candidate 0: the NaN check costs nothing extra).
    2. The candidates are ordered by a unique int64 key ``key(score) * 2^32 + (2^32-1-i)``,
       where ``key`` maps float32 to int32 preserving order (sign-magnitude flip, ``-0.0``
       folded into ``+0.0``): sorting keys descending is sorting by ``(-score, index)``.
    3. Exactness: every entry outside the candidates is ``<=`` the last candidate ``c``. If
       ``c <`` the k-th value ``t`` (or ``t = -inf``: a short row), the top k is complete.
       Otherwise ``t`` is tied beyond the margin and the row is *repaired*: a
       ``torch.topk`` of the unique keys of the whole row, in row blocks of about
       ``block_bytes`` of temporaries (about 40 bytes per score).

    float32 only: other floating dtypes are cast (the engine ranks float32 scores).
    """
    import torch

    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_rows, n_items), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating tensor, got {scores.dtype}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = int(k)
    n, n_items = scores.shape
    dev = scores.device
    indices = torch.full((n, k), -1, dtype=torch.int64, device=dev)
    values = torch.full((n, k), -np.inf, dtype=torch.float32, device=dev)
    if n == 0 or n_items == 0:
        return indices, values
    if scores.dtype != torch.float32:
        scores = scores.float()
    width = min(k, n_items)
    wide = min(n_items, width + max(0, int(margin)))
    cand_val, cand_idx = torch.topk(scores, wide, dim=1, largest=True, sorted=False)
    nan_rows = torch.isnan(cand_val).any(dim=1)
    if bool(nan_rows.any()):
        row = int(torch.nonzero(nan_rows)[0, 0])
        col = int(torch.nonzero(torch.isnan(scores[row]))[0, 0])
        raise ValueError(f"scores contain NaN (first at row {row}, column {col})")
    order = torch.sort(_order_key(cand_val, cand_idx), dim=1, descending=True).indices
    top_idx = cand_idx.gather(1, order[:, :width])
    top_val = cand_val.gather(1, order[:, :width])
    if wide < n_items:
        kth = top_val[:, width - 1]
        tied = (kth > -np.inf) & (cand_val.min(dim=1).values == kth)
        fix = torch.nonzero(tied).flatten()
        if fix.numel():
            rows_per_block = max(1, int(block_bytes) // (40 * n_items))
            cols = torch.arange(n_items, dtype=torch.int64, device=dev)
            for start in range(0, fix.numel(), rows_per_block):  # blocks of rows, not rows
                rows = fix[start : start + rows_per_block]
                block = scores.index_select(0, rows)
                keys = _order_key(block, cols.expand(len(rows), n_items))
                pos = torch.topk(keys, width, dim=1, largest=True, sorted=True).indices
                top_idx[rows] = pos
                top_val[rows] = block.gather(1, pos)
    finite = top_val > -np.inf
    indices[:, :width] = torch.where(finite, top_idx, torch.full_like(top_idx, -1))
    values[:, :width] = torch.where(finite, top_val, torch.full_like(top_val, -np.inf))
    return indices, values


def _order_key(values: Any, index: Any) -> Any:
    """Unique int64 keys whose descending order is ``(-value, index)`` (float32 values).

    float32 bits read as int32 order non-negative floats correctly; negative ones are
    flipped (``bits ^ 0x7FFFFFFF``) so a larger magnitude gives a smaller key. ``+ 0.0``
    turns ``-0.0`` into ``+0.0``, which compare equal as floats and must tie here too.
    """
    import torch

    bits = (values + 0.0).view(torch.int32)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    return ordered * 2**32 + (2**32 - 1 - index)
