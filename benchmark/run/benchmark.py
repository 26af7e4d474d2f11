"""``gembench run``: data set -> split -> every (track, method) -> records -> leaderboards.

Protocol for the test part: a method is fitted on train + valid and every item of
train + valid is masked when ranking, so the held-out items are the only new ones (the
next-item protocol). Tuning (valid part) fits on train alone.

Why one function for both engines: :func:`run_benchmark` plans every seed's jobs
(:mod:`benchmark.run.plan`) as one :class:`~benchmark.run.executors.Job` list and hands it
to an executor; the local one runs each job as it is planned (one seed's data in memory
at a time), the Ray one submits them all. The outcomes come back in job order either way,
so the records, the result and the tables are built by the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmark.leaderboard import write_leaderboards
from benchmark.run.executors import Echo, Executor, Job, LocalExecutor
from benchmark.run.jobs import pair_job, ranking_job
from benchmark.run.plan import check_seeds, plan_pair_runs, plan_runs


def run_benchmark(
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
    echo: Echo = print,
    tuned_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    seeds: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run methods on tracks and write records (and leaderboards); returns what was done.

    ``metrics`` (e.g. ``["recall@100", "ndcg@100"]``) is the metric set every ranking
    track evaluates instead of its defaults; an unknown name or a cut-off above a track's
    ``max_k`` is one ValueError before anything runs. The engine's top-K is the largest
    cut-off asked.

    ``seeds`` (instead of ``seed``) runs the whole job once per seed and writes the
    leaderboards once at the end. Each seed draws its own synthetic data (registered
    names), split and method seeds, and its records are filed under the protocol
    ``<protocol>-seed<s>`` (seed 0: ``<protocol>``), one table per seed; the leaderboard
    pools them into a mean ± sd table. ``result["seeds"]`` lists them, and
    ``result["per_seed"]`` holds each seed's own result.

    ``device`` is where the ranking engine runs (``cpu``, ``cuda``, ``auto``; see
    :mod:`benchmark.device`); each record names it in ``split.device``.

    ``executor`` is where the jobs run (None: this process; a
    :class:`~benchmark.run.executors.RayExecutor`: one Ray task each, same records).
    ``result["engine"]`` names it.

    Parameters stored by ``gembench tune`` for (data set, protocol, track, method) are used
    when they were tuned on this split (same fingerprint); ``tuned_dir`` defaults to
    ``baselines/tuned``.
    """
    executor = executor or LocalExecutor()
    seed_list = check_seeds(seeds) if seeds is not None else [seed]
    executor.start()  # an unreachable cluster fails before any data is built
    # jobs get absolute folders (a Ray worker may start elsewhere); the result names the
    # files under ``results_dir`` as given
    abs_results = Path(results_dir).absolute()
    options = {"protocol": protocol, "results_dir": str(abs_results),
               "memory_budget_mb": memory_budget_mb, "progress": progress,
               "tuned_dir": str(Path(tuned_dir).absolute()) if tuned_dir else None,
               "device": device, "metrics": metrics}
    per_seed: dict[int, dict[str, Any]] = {}
    owners: list[int | None] = []  # the seed each job belongs to (None: a marker)

    def planned() -> Iterator[Job]:
        for s in seed_list:
            if seeds is not None:
                owners.append(None)
                yield Job(None, say=(f"seed {s}",))
            ds, split, plan, skipped = plan_runs(dataset, tracks, methods, protocol, s,
                                                 data_dir, progress, metrics=metrics)
            pair_runs, pair_skips = plan_pair_runs(ds, tracks, methods, seed=s,
                                                   data_dir=data_dir)
            per_seed[s] = {"dataset": ds, "split": split, "records": [],
                           "skipped": skipped + pair_skips, "seeds": [s]}
            for track, method in pair_runs:
                owners.append(s)
                yield Job(pair_job, (ds,), {"track": track, "method": method, "seed": s,
                                            "data_dir": str(Path(data_dir).absolute()),
                                            "results_dir": str(abs_results)}, gpu=False)
            for track, names, fit, relevant, side in plan:
                for method in names:
                    owners.append(s)
                    yield Job(ranking_job, (ds, split, fit, relevant, side),
                              {"track": track, "method": method, "seed": s, **options})

    for i, outcome in enumerate(executor.map(planned(), echo, desc=f"{executor.name} runs",
                                             progress=progress)):
        if owners[i] is None:
            continue
        paths, skips = outcome
        one = per_seed[owners[i]]
        one["records"] += [Path(results_dir) / Path(p).relative_to(abs_results) for p in paths]
        one["skipped"] += skips
    result: dict[str, Any] = {"records": [], "skipped": [], "seeds": seed_list,
                              "engine": executor.name}
    for s in seed_list:
        one = per_seed[s]
        result["records"] += one["records"]
        result["skipped"] += ([(*k, s) for k in one["skipped"]] if seeds is not None
                              else one["skipped"])
        result.setdefault("dataset", one["dataset"])
        result.setdefault("split", one["split"])
    if seeds is not None:
        result["per_seed"] = per_seed
    if leaderboard_dir is not None:
        result.update(leaderboards(results_dir, leaderboard_dir))
    return result


def leaderboards(results_dir: str | os.PathLike, leaderboard_dir: str | os.PathLike
                 ) -> dict[str, Any]:
    """Rebuild every leaderboard; what a run's result reports about them."""
    files, tables, notes, seed_tables = write_leaderboards(results_dir, leaderboard_dir,
                                                           with_seeds=True)
    return {"leaderboard_files": files, "tables": tables, "notes": notes,
            "seed_tables": seed_tables}


def run_rerank(*args: Any, leaderboard_dir: str | os.PathLike | None = "leaderboards",
               **kwargs: Any) -> dict[str, Any]:
    """``gembench run --protocol rerank``:
    :func:`benchmark.tracks.rerank.track.rerank_records`, then the leaderboards (the same
    arguments, plus ``leaderboard_dir``; None: no tables)."""
    from benchmark.tracks.rerank.track import rerank_records

    result = rerank_records(*args, **kwargs)
    if leaderboard_dir is not None:
        result.update(leaderboards(kwargs.get("results_dir", "results"), leaderboard_dir))
    return result
