"""The run's functions under their first home (``from benchmark.runner import ...``).

Why kept: scripts, notebooks and records of earlier versions import these names from here.
The code lives in :mod:`benchmark.run` (plan, jobs, executors, ``run_benchmark``); this
module only re-exports it, so both paths name the very same functions.
"""

from __future__ import annotations

from benchmark.data.resolve import resolve_dataset
from benchmark.ranking_data import metrics_of, run_method, track_data, track_side
from benchmark.results import method_figures
from benchmark.run.benchmark import leaderboards, run_benchmark, run_rerank
from benchmark.run.jobs import headline as _headline
from benchmark.run.jobs import run_one, run_pair_one
from benchmark.run.plan import (
    PAIR_TRACKS,
    check_seeds,
    plan_pair_runs,
    plan_runs,
    run_metrics,
)
from benchmark.run.plan import check_methods_known as _check_methods_known
from benchmark.splits import prepare_split

__all__ = ["PAIR_TRACKS", "_check_methods_known", "_headline", "check_seeds", "leaderboards",
           "method_figures", "metrics_of", "plan_pair_runs", "plan_runs", "prepare_split",
           "resolve_dataset", "run_benchmark", "run_method", "run_metrics", "run_one",
           "run_pair_one", "run_rerank", "track_data", "track_side"]
