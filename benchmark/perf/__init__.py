"""Performance at ImageGem scale: ``python -m benchmark.perf [--scale full] [--json OUT]``.

One run measures, on the same machine and data:

1. **floor** -- the unavoidable work of a d=64 factor model: the users x items product and
   a top-50 per user, done the best plain way: the faster of torch (matmul + ``topk`` per
   large user chunk) and faiss's exact ``IndexFlatIP`` search.
2. **gembench** -- the engine's full evaluation of that factor model (score into a reused
   float32 chunk, mask training items, exact top-K, Recall/NDCG/HitRate/MRR @10/20/50):
   wall time and peak resident memory (``ru_maxrss`` of a subprocess that loads only the
   sparse matrices and the factors, so numpy buffers count and the loading does not).
3. **recbole** -- RecBole's own full-sort evaluation (``Trainer.evaluate``) of a BPR model
   whose embeddings are set to the same factors, on the same split, with its best settings
   (``eval_batch_size`` = n_items x users per batch, not one user per batch).
4. **metrics** -- gembench's metric computation from top-K lists vs pytrec_eval on the same
   lists (values cross-checked).

5. **GPU** (when torch sees a CUDA device; otherwise the report says "GPU: not measured
   (no CUDA device)"): the GPU floor -- torch matmul + ``topk`` per chunk on the device, and
   faiss's ``GpuIndexFlatIP`` when the installed faiss has GPUs (the ``gpu`` extra) -- and
   gembench's full evaluation with ``device="cuda"``; each after one warm-up pass (CUDA
   context, cuBLAS handles), timed to the last synchronisation. Targets: gembench within
   1.5x of the GPU floor, and under 2 s at ImageGem scale. ``--gpu`` runs this section only.

6. **kNN** (``--knn``: this section only) -- gembench's ``itemknn`` and ``userknn`` fits beside
   implicit's ``CosineRecommender(K=100)`` on the same users x items matrix (items x items, then
   users x users on the transpose), each in its own subprocess with the same thread count: wall
   and CPU seconds, peak resident memory, and the fast kernel checked bit for bit against the
   reference path on random rows. The matrix is ``--knn-matrix`` (an .npz), ``--knn-shape``
   (random, e.g. ImageGem's ``57000x242000`` with ``--knn-nnz 4.96e6``) or the data set's fit
   matrix. Target: gembench within 1.5x of implicit (``docs/knn.md``).

Also: the scaling runs at 1/8, 1/4, 1/2 of the users and items (random subsamples; cost
should grow with users x items, memory stay flat) and the loading time (split + sparse
train matrix). Each timed part runs in its own subprocess (separate OpenMP runtimes, a
clean ``ru_maxrss``). Targets are printed as figures, never asserted.

The data set is a leave-last-out split of the synthetic world (``--scale full`` reads
``--dataset``, default ``/tmp/synth-full``; ``tiny`` / ``small`` build one into the cache);
the split and the matrices are cached under ``--cache`` (default ``/tmp/gembench-perf``).

The code is split by section into submodules (``model``: the factor model and the shared
constants; ``data``; ``children``: the CPU measurements; ``gpu``; ``knn``; ``report``: the
main table; ``driver``: the subprocesses and the sections' runs; ``cli``), and every name the
single-file script had is re-exported here, so ``benchmark.perf.<name>`` keeps working.
"""

from __future__ import annotations

from benchmark.perf.children import (
    _load_work,
    child_floor,
    child_gembench,
    child_metrics,
    child_recbole,
    exactness_check,
    write_recbole_files,
)
from benchmark.perf.cli import main, parse_args
from benchmark.perf.data import _rss_mb, load_track, prepare_work, resolve_dataset, subsample
from benchmark.perf.driver import _child, _run_child, _uptime, _versions, run, run_gpu, run_knn
from benchmark.perf.gpu import GPU_ABSENT, GPU_KINDS, child_gpu, cuda_absent_reason, format_gpu
from benchmark.perf.knn import (
    KNN_K,
    KNN_KINDS,
    KNN_TARGET,
    _ratio,
    _times,
    child_knn,
    child_knn_check,
    format_knn,
    knn_work,
    random_interactions,
)
from benchmark.perf.model import (
    DIM,
    FRACTIONS,
    METRICS,
    TARGETS,
    FactorModel,
    K,
    _rankingmethod,
    random_factors,
)
from benchmark.perf.report import _compare, format_table

__all__ = [
    "DIM",
    "FRACTIONS",
    "K",
    "METRICS",
    "TARGETS",
    "FactorModel",
    "_rankingmethod",
    "random_factors",
    "_rss_mb",
    "load_track",
    "prepare_work",
    "resolve_dataset",
    "subsample",
    "_load_work",
    "child_floor",
    "child_gembench",
    "child_metrics",
    "child_recbole",
    "exactness_check",
    "write_recbole_files",
    "GPU_ABSENT",
    "GPU_KINDS",
    "child_gpu",
    "cuda_absent_reason",
    "format_gpu",
    "KNN_K",
    "KNN_KINDS",
    "KNN_TARGET",
    "_ratio",
    "_times",
    "child_knn",
    "child_knn_check",
    "format_knn",
    "knn_work",
    "random_interactions",
    "_compare",
    "format_table",
    "_child",
    "_run_child",
    "_uptime",
    "_versions",
    "run",
    "run_gpu",
    "run_knn",
    "main",
    "parse_args",
]
