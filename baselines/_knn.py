"""Exact cosine kNN kernel shared by ``itemknn`` and ``userknn``: blocked, threaded, bounded.

Definition (the one the committed records were made with; pinned bit for bit)
-----------------------------------------------------------------------------
``rows`` is a sparse ``n x m`` matrix (itemknn: items x users, userknn: users x items), cast
to float32 and CSR. In float32, with every operation rounded as numpy rounds it:

    c(a, b)   = (R @ R.T)[a, b]                    scipy's float32 sparse product; for a 0/1
                                                   matrix the overlap |R_a ∩ R_b|, exact (< 2^24)
    norm(a)   = sqrt(float32(nnz(R_a)))            float32
    sim(a, b) = c(a, b) / (norm(a) * norm(b) + shrink)
                                                   float32 ops: the product, then ``+ shrink``
                                                   with numpy's promotion of ``shrink`` (a Python
                                                   float stays float32), then the division

over the pairs a != b with c(a, b) stored (non-zero). Row a keeps its ``k`` largest sim(a, b);
ties go to the lower column b. The result is an ``n x n`` float32 CSR matrix with sorted
column indices in every row.

Why a kernel of our own and not implicit's ``CosineRecommender``: implicit scores
``<R_a / |R_a|, R_b / |R_b|>`` (other rounding, no shrinkage), keeps a row's own item among its
neighbours and breaks ties by its heap order, so its lists differ from the definition above.

How it is fast and still exact
------------------------------
* Overlaps are integers, so the order they are summed in cannot change them (for a 0/1 matrix
  the product runs on copies relabelled by descending count, which keeps the busy part of
  scipy's accumulator in cache; a weighted matrix keeps the reference's operands and order).
  sim is the same element-wise float32 expression as the reference's, so every value has the
  same bits, and every comparison is made on (sim, original index).
* Rows go in blocks whose candidate pairs (at most ``sum_{u in R_a} |C_u|`` and n per row) fit
  ``MEMORY_BUDGET_MB`` shared by the threads; blocks run on a thread pool (scipy's sparse
  kernels and numpy's partition release the GIL). A block's result depends on its rows only,
  so the block size, the budget and the thread count never change a bit.
* Selection never sorts a whole row. A candidate is one unique uint64 key
  ``bits(sim) << cb | (2^cb - 1 - b)`` (non-negative float32 bits order as the floats do; at a
  tie the lower b has the larger key), and ``np.partition`` takes a row's ``k + 1`` largest
  keys (its own entry may be one of them: then it is dropped, else the (k+1)-th is). A long
  row is first cut to the pairs whose sim is at least tau, the (k+1)-th largest sim of a
  sample of its own pairs: tau is at most the row's (k+1)-th largest, so no winner is cut.
* A 0/1 row whose pairs may cover a quarter of all rows (userknn's, mostly) counts its overlaps
  densely with ``np.bincount`` and takes sims over all columns at once, cut the same way.
* Only the kept ``<= k`` keys per row are sorted, by column.

``cosine_neighbours_reference`` is the original implementation (one scipy product per block,
a lexsort of every candidate); the tests check the fast path against it and against a dense
oracle of the definition, bit for bit. It is also used as is where the fast path's
assumptions fail (negative or non-finite values, a negative or non-finite ``shrink``,
``k < 1``, an empty matrix).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

try:  # scipy's own kernels, called with preallocated outputs (scipy is pinned)
    from scipy.sparse._sparsetools import csr_matmat as _csr_matmat
    from scipy.sparse._sparsetools import csr_row_index as _csr_row_index
except ImportError:  # pragma: no cover - another scipy layout: the reference path
    _csr_matmat = _csr_row_index = None

#: Memory for the candidate pairs of the blocks in flight, all threads together.
MEMORY_BUDGET_MB = 1024.0
#: Threads for the blocks (None: the CPUs this process may run on).
NUM_THREADS: int | None = None
#: Bytes held per candidate pair while a block is processed (product, sim, key, temporaries).
_BYTES_PER_PAIR = 40
#: A row with at least this many times k + 1 pairs is first cut at a sampled lower bound.
_FILTER_FROM = 16
#: A dense row's sample: every this many-th column.
_SAMPLE_STRIDE = 8
#: A row of a 0/1 matrix whose pairs may reach this share of all rows counts them densely.
_DENSE_FROM = 0.25


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's ``k`` largest entries (ties: lower column first); vectorised."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
    keep = order[rank < k]
    kept = sp.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape
    )
    kept.sort_indices()
    return kept


def cosine_neighbours_reference(rows: sp.spmatrix, k: int, shrink: float, block_size: int,
                                subset: np.ndarray | None = None) -> sp.csr_matrix:
    """The reference path: the definition above, one lexsort of every candidate per block.

    ``subset``: only these rows, in this order (``len(subset) x n``; a check at full scale).
    """
    rows = rows.astype(np.float32).tocsr()
    n = rows.shape[0]
    norms = np.sqrt(np.asarray(rows.getnnz(axis=1), dtype=np.float32))
    columns = rows.T.tocsc()
    wanted = np.arange(n) if subset is None else np.asarray(subset, dtype=np.int64)
    blocks = []
    for start in range(0, len(wanted), block_size):
        stop = min(start + block_size, len(wanted))
        block_rows = rows[start:stop] if subset is None else rows[wanted[start:stop]]
        co = (block_rows @ columns).tocoo()  # [block, n] overlap counts
        source = wanted[start:stop][co.row]
        keep = co.col != source  # a row is not its own neighbour
        sim = co.data[keep] / (norms[source[keep]] * norms[co.col[keep]] + shrink)
        block = sp.csr_matrix(
            (sim.astype(np.float32), (co.row[keep], co.col[keep])), shape=(stop - start, n)
        )
        blocks.append(top_k_per_row(block, int(k)))
    return sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


def _fast_path_applies(rows: sp.csr_matrix, k: int, shrink: float) -> bool:
    if _csr_matmat is None or k < 1 or rows.nnz == 0 or rows.shape[0] >= 2**31:
        return False
    try:
        s = float(shrink)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(s) and s >= 0.0):
        return False
    return bool(np.isfinite(rows.data).all() and rows.data.min() >= 0.0)


def _threads(num_threads: int | None) -> int:
    if num_threads is not None:
        return max(1, int(num_threads))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _blocks(pairs: np.ndarray, cap_pairs: int, max_rows: int) -> list[tuple[int, int]]:
    """Cut rows 0..n into consecutive blocks of <= ``cap_pairs`` pairs and ``max_rows`` rows."""
    n = len(pairs)
    out = []
    start = 0
    ends = np.cumsum(pairs, dtype=np.float64)
    while start < n:
        base = ends[start - 1] if start else 0.0
        stop = int(np.searchsorted(ends, base + cap_pairs, side="right"))
        stop = min(max(stop, start + 1), start + max_rows, n)
        out.append((start, stop))
        start = stop
    return out


class _Kernel:
    """One fit's shared read-only state; :meth:`block` does rows ``[s, e)``.

    For a 0/1 matrix the product runs on relabelled copies (columns and neighbour rows by
    descending count, so the busy part of scipy's accumulator stays in cache); overlaps are
    integers, so the relabelling changes no value, and neighbours are mapped back to their own
    index before any comparison. A row whose pairs cover a good part of all rows (``dense``)
    counts its overlaps with ``np.bincount`` into a dense row instead of scipy's product.
    """

    def __init__(self, rows: sp.csr_matrix, k: int, shrink: float):
        n, m = rows.shape
        self.n, self.k, self.shrink = n, k, shrink
        counts = rows.getnnz(axis=1)
        self.norms = np.sqrt(np.asarray(counts, dtype=np.float32))
        self.binary = binary = bool(
            rows.data.size and (rows.data == 1.0).all() and counts.max() < 2**24)
        if binary:
            order = np.argsort(-counts, kind="stable")  # product column j is row order[j]
            left = rows[:, np.argsort(-rows.getnnz(axis=0), kind="stable")].tocsr()
            right = left[order].T.tocsr()
        else:  # the reference's operands exactly: per-entry sums in the same order
            order = np.arange(n)
            left, right = rows, rows.T.tocsr()
        index = np.int32 if max(left.nnz, n, m) < 2**31 - 1 else np.int64
        self.index = index
        self.left = sp.csr_matrix((left.data, left.indices.astype(index),
                                   left.indptr.astype(index)), shape=left.shape)
        self.right_indptr = right.indptr.astype(index)
        self.right_indices = right.indices.astype(index)
        self.right_data = right.data
        self.cb = max(1, int(n - 1).bit_length())  # bits of a column index
        self.colmask = np.uint64((1 << self.cb) - 1)
        self.col_norms = self.norms[order]
        # dense rows divide by every column's norm: an empty row (norm 0, never a neighbour)
        # gets 1, so its 0 overlap gives a sim of 0 and not 0 / 0
        self.dense_col_norms = np.where(self.col_norms > 0, self.col_norms, np.float32(1))
        self.col_keys = self.colmask - order.astype(np.uint64)  # larger: lower original column
        self.position = np.empty(n, dtype=np.int64)  # product column of row a
        self.position[order] = np.arange(n)
        # candidate pairs per row: at most the sum of its columns' counts, and at most n
        per_col = np.asarray(rows.getnnz(axis=0), dtype=np.float64)
        entry_rows = np.repeat(np.arange(n), counts)
        self.flops = np.bincount(entry_rows, per_col[rows.indices], minlength=n).astype(np.int64)
        self.pairs = np.minimum(self.flops, n)
        self.right_ones = np.ones(right.nnz, dtype=np.int8)  # dense rows gather indices only
        self.dense = binary & (self.pairs >= _DENSE_FROM * n)

    def sim(self, data: np.ndarray, row_norms: np.ndarray, col_norms: np.ndarray) -> np.ndarray:
        """float32 sim of overlaps ``data``: the reference's expression (the product commutes)."""
        den = row_norms * col_norms
        if np.result_type(den, self.shrink) == np.float32:
            den += self.shrink
            return np.divide(data, den, out=den)
        return (data / (den + self.shrink)).astype(np.float32)  # e.g. a float64 shrink

    def block(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row counts, sorted column indices, float32 sims) of rows ``s..e``'s neighbours."""
        rows = np.arange(s, e)
        dense = self.dense[s:e]
        found = []  # (row, key) pairs: at most k per row, the row's own entry left out
        if not dense.all():
            found.append(self.sparse_rows(s, e, rows[~dense] if dense.any() else None))
        if dense.any():
            found.append(self.dense_rows(rows[dense]))
        row = np.concatenate([f[0] for f in found]).astype(np.uint64) - np.uint64(s)
        key = np.concatenate([f[1] for f in found])
        # sort by (row, column): one unique key row | column | bits(sim)
        cb = np.uint64(self.cb)
        final = (row << (cb + np.uint64(32))) | ((self.colmask - (key & self.colmask))
                                                  << np.uint64(32)) | (key >> cb)
        final.sort()
        counts = np.bincount((final >> (cb + np.uint64(32))).astype(np.int64), minlength=e - s)
        indices = ((final >> np.uint64(32)) & self.colmask).astype(np.int32)
        values = (final & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
        return counts, indices, values

    def sparse_rows(self, s: int, e: int, subset: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``s..e`` (or ``subset`` of them) by scipy's product, then k + 1 per row."""
        k, kk = self.k, self.k + 1
        if subset is None:
            rows = np.arange(s, e)
            lp = self.left.indptr[s:e + 1]
            li, lx = self.left.indices, self.left.data
        else:
            rows = subset
            part = self.left[subset]
            lp, li, lx = (part.indptr.astype(self.index), part.indices.astype(self.index),
                          part.data)
        nrow = len(rows)
        bound = int(self.pairs[rows].sum())
        indptr = np.empty(nrow + 1, dtype=self.index)
        cols = np.empty(bound, dtype=self.index)
        data = np.empty(bound, dtype=np.float32)
        _csr_matmat(nrow, self.n, lp, li, lx, self.right_indptr, self.right_indices,
                    self.right_data, indptr, cols, data)  # overlaps, unsorted columns
        nnz = int(indptr[-1])
        cols, data = cols[:nnz], data[:nnz]
        cnt = np.diff(indptr)
        sim = self.sim(data, np.repeat(self.norms[rows], cnt), self.col_norms[cols])
        del data
        long = np.flatnonzero(cnt >= max(_FILTER_FROM, 2) * kk)  # the sample fits in the row
        if len(long):  # keep the pairs at or above a lower bound of the row's (k+1)-th largest
            tau = np.zeros(nrow, dtype=np.float32)
            tau[long] = self.sample_tau(indptr[long], cnt[long], sim)
            kept = np.flatnonzero(sim >= np.repeat(tau, cnt))
            cols, sim = cols[kept], sim[kept]
            indptr = np.searchsorted(kept, indptr)
            cnt = np.diff(indptr)
            del kept
        key = sim.view(np.uint32).astype(np.uint64)
        del sim
        key <<= np.uint64(self.cb)
        key |= self.col_keys[cols]
        del cols

        light = cnt <= kk  # every candidate kept (its own entry dropped below)
        heavy = np.flatnonzero(~light)
        top = np.empty((len(heavy), kk), dtype=np.uint64)
        starts = indptr.tolist()
        for i, r in enumerate(heavy.tolist()):
            seg = key[starts[r]:starts[r + 1]]
            top[i] = np.partition(seg, len(seg) - kk)[len(seg) - kk:]  # top[i, 0]: the (k+1)-th
        lrows = np.flatnonzero(light & (cnt > 0))
        lcnt = cnt[lrows]
        lpos = np.repeat(lrows, lcnt)
        offsets = np.arange(len(lpos)) - np.repeat(np.cumsum(lcnt) - lcnt, lcnt)
        lkey = key[np.asarray(indptr)[lpos] + offsets]
        del key
        # heavy rows: drop the row's own entry from its k largest, else the (k+1)-th
        hkey = top[:, 1:].copy()
        hrow = rows[heavy]
        own = (self.colmask - (hkey & self.colmask)).astype(np.int64) == hrow[:, None]
        ri, ci = np.nonzero(own)
        hkey[ri, ci] = top[ri, 0]
        # light rows: drop the own entry
        lrow = rows[lpos]
        keep = (self.colmask - (lkey & self.colmask)).astype(np.int64) != lrow
        return (np.concatenate([np.repeat(hrow, k), lrow[keep]]),
                np.concatenate([hkey.ravel(), lkey[keep]]))

    def sample_tau(self, starts: np.ndarray, cnt: np.ndarray, sim: np.ndarray) -> np.ndarray:
        """Per row, the (k+1)-th largest sim of a sample of its pairs.

        The sample (about an eighth of the row, 2 (k+1) to 64 (k+1) distinct pairs spread over
        it) is a subset of the row, so this is at most the row's own (k+1)-th largest.
        """
        kk = self.k + 1
        size = np.clip(np.minimum(cnt // 8, 64 * kk), 2 * kk, cnt)  # cnt >= 2 (k + 1)
        size = 2 * kk * 2 ** np.floor(np.log2(size / (2 * kk))).astype(np.int64)
        tau = np.empty(len(cnt), dtype=np.float32)
        for sz in np.unique(size).tolist():
            sel = np.flatnonzero(size == sz)
            pos = starts[sel, None] + (np.arange(sz)[None, :] * cnt[sel, None]) // sz  # distinct
            tau[sel] = np.partition(sim[pos], sz - kk, axis=1)[:, sz - kk]
        return tau

    def dense_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a 0/1 matrix by dense overlap counts (``np.bincount``), k per row.

        The row's sims are taken over every column at once (0 where there is no overlap); tau,
        the k-th largest sim of every ``_SAMPLE_STRIDE``-th column, is at most the k-th largest
        of the row when it is positive, so only the columns at or above it are keyed.
        """
        k, n = self.k, self.n
        lp, li = self.left.indptr, self.left.indices
        out_rows, out_keys = [], []
        for a in rows.tolist():
            via = li[lp[a]:lp[a + 1]]
            if not len(via):
                continue
            reached = np.empty(self.flops[a], dtype=self.index)  # the right rows of via, joined
            _csr_row_index(len(via), via, self.right_indptr, self.right_indices, self.right_ones,
                           reached, np.empty(self.flops[a], dtype=np.int8))
            c = np.bincount(reached, minlength=n)
            del reached
            c[self.position[a]] = 0  # a row is not its own neighbour
            c = c.astype(np.float32)
            sims = self.sim(c, self.norms[a], self.dense_col_norms)
            sample = sims[::_SAMPLE_STRIDE]
            tau = np.partition(sample, len(sample) - k)[len(sample) - k] if len(sample) > k else 0
            cand = np.flatnonzero(sims >= tau) if tau > 0 else np.flatnonzero(c)
            key = sims[cand].view(np.uint32).astype(np.uint64)
            key <<= np.uint64(self.cb)
            key |= self.col_keys[cand]
            if len(key) > k:
                key = np.partition(key, len(key) - k)[len(key) - k:]
            out_keys.append(key)
            out_rows.append(np.full(len(key), a, dtype=np.int64))
        if not out_keys:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
        return np.concatenate(out_rows), np.concatenate(out_keys)


def cosine_neighbours(rows: sp.spmatrix, k: int, shrink: float, block_size: int, *,
                      memory_budget_mb: float | None = None, num_threads: int | None = None
                      ) -> sp.csr_matrix:
    """Each row's ``k`` most cosine-similar other rows (module docstring), as a CSR matrix.

    Same bits as :func:`cosine_neighbours_reference` whatever ``block_size``, the memory
    budget (default ``MEMORY_BUDGET_MB``) and the thread count (default ``NUM_THREADS``);
    ``block_size`` caps the rows per block.
    """
    k = int(k)
    rows = rows.astype(np.float32).tocsr()
    if not _fast_path_applies(rows, k, shrink):
        return cosine_neighbours_reference(rows, k, shrink, block_size)
    kernel = _Kernel(rows, k, shrink)
    n = kernel.n
    threads = _threads(NUM_THREADS if num_threads is None else num_threads)
    budget = MEMORY_BUDGET_MB if memory_budget_mb is None else memory_budget_mb
    pairs = kernel.pairs
    cap = max(1, min(int(budget * 2**20 / _BYTES_PER_PAIR / threads), 2**30))
    max_rows = max(1, min(int(block_size), 2 ** (64 - 32 - kernel.cb)))
    spans = _blocks(pairs, cap, max_rows)
    if threads == 1 or len(spans) == 1:
        parts = [kernel.block(s, e) for s, e in spans]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(lambda span: kernel.block(*span), spans))
    counts = np.concatenate([p[0] for p in parts])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < 2**31 else np.int64
    out = sp.csr_matrix(
        (np.concatenate([p[2] for p in parts]),
         np.concatenate([p[1] for p in parts]).astype(index_dtype, copy=False),
         indptr.astype(index_dtype)),
        shape=(n, n),
    )
    out.has_sorted_indices = True
    return out
