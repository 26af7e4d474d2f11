"""The main job: data set -> split -> every (track, method) -> records -> leaderboards.

Protocol for the test part: a method is fitted on train + valid and every item
of train + valid is masked when ranking, so the held-out items are the only
new ones (the next-item protocol). Tuning (valid part) fits on train alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.core.params import build, jsonable

# the shared pieces, importable from here as before
from benchmark.data.resolve import resolve_dataset  # noqa: E402,F401
from benchmark.data.store import Dataset
from benchmark.errors import NotApplicable
from benchmark.leaderboard import write_leaderboards
from benchmark.protocols import InteractionData, SideInfo
from benchmark.registry import METHODS, resolve_method
from benchmark.results import (
    make_record,
    method_figures,  # noqa: E402,F401
    record_path,
    seeded_protocol,
    write_record,
)
from benchmark.splits import (
    Split,
    SplitConfig,
    prepare_split,  # noqa: E402,F401
)
from benchmark.tasks import get_track
from benchmark.tracks import PAIR_METHOD, SPECS
from benchmark.tracks.ranking import (  # noqa: E402,F401
    metrics_of,
    run_method,
    track_data,
    track_side,
)
from benchmark.views import side_for

log = logging.getLogger("gembench")


def plan_runs(
    dataset: str | os.PathLike,
    tracks: list[str] | None,
    methods: list[str] | None,
    protocol: str,
    seed: int,
    data_dir: str | os.PathLike,
    progress: bool = True,
    metrics: Sequence[str] | None = None,
) -> tuple[Dataset, Split, list[tuple[str, list[str], InteractionData, sp.csr_matrix, SideInfo]],
           list[tuple[str, str, str]]]:
    """(data set, split, [(track, method names, fit, relevant, side)], skipped tracks).

    The part of a run both engines share: everything before the (track, method) runs.
    ``metrics`` (None: each track's defaults) is checked against every requested ranking
    track first (:meth:`benchmark.tasks.RankingTrack.check_metrics`), before any data is
    built.
    """
    run_metrics(tracks or ["lora-rec", "image-rec"], metrics)
    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=progress)
    requested = tracks or ["lora-rec", "image-rec"]
    tracks = [t for t in requested if t not in PAIR_TRACKS]
    if not tracks:  # only pair tracks: no ranking split to build
        return ds, None, [], []
    for name in tracks:
        get_track(name)
    _check_methods_known(methods, requested)
    config = SplitConfig(protocol=protocol, tracks=tuple(tracks), seed=seed)
    split = prepare_split(ds, config, data_dir, progress=progress)
    plan, skipped = [], []
    for track_name in tracks:
        track = get_track(track_name)
        if split.meta["tracks"].get(track_name, {}).get("interaction_kind") is None:
            skipped.append((track_name, "*", "the data set has no interactions for this track"))
            continue
        fit, relevant = track_data(split, track.item_kind, "test")
        side = track_side(ds, split, track.item_kind, "test", fit, seed=seed)
        names = ([n for n in methods if n not in METHODS or track_name in METHODS[n].tracks]
                 if methods else [n for n, spec in METHODS.items()
                                  if spec.runs_by_default(track_name, protocol)])
        plan.append((track_name, list(names), fit, relevant, side))
    return ds, split, plan, skipped


#: tracks judged on pairs, not by ranking: their spec's jobs run through their own module
PAIR_TRACKS = tuple(name for name, spec in SPECS.items()
                    if spec.method_protocol == PAIR_METHOD and spec.record_track is None)


def run_metrics(tracks: Sequence[str], metrics: Sequence[str] | None
                ) -> dict[str, tuple[str, ...]]:
    """The metrics each requested ranking track evaluates: ``metrics`` (checked: a known
    name, a cut-off within the track's ``max_k``) or the track's defaults."""
    return {name: metrics_of(get_track(name), metrics) for name in tracks
            if name not in PAIR_TRACKS}


def _check_methods_known(methods: list[str] | None, tracks: list[str]) -> None:
    """A registered method named with --methods must run on at least one requested track."""
    for name in methods or []:
        spec = METHODS.get(name)
        if spec is not None and not set(spec.tracks) & set(tracks):
            raise KeyError(f"method {name!r} runs on {list(spec.tracks)}, not on the requested "
                           f"tracks {tracks}")


def plan_pair_runs(ds: Dataset, tracks: list[str] | None, methods: list[str] | None, *,
                   seed: int, data_dir: str | os.PathLike
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """([(pair track, method name)], skipped) for the requested :data:`PAIR_TRACKS`.

    Builds (or finds) each track's pair split under ``data_dir`` first, so the runs,
    local or on Ray workers, only read it.
    """
    from benchmark.preference import TRACK, prepare_preference_split

    if "preference" not in (tracks or []):
        return [], []
    if not ds.has_table("preferences"):
        return [], [(TRACK, "*", "the data set has no preferences table")]
    if methods:
        names = [n for n in methods if n not in METHODS or TRACK in METHODS[n].tracks]
        if not names:
            return [], [(TRACK, "*", "none of the requested methods runs on it")]
    else:
        names = [n for n, spec in METHODS.items() if spec.runs_by_default(TRACK)]
    prepare_preference_split(ds, data_dir, seed=seed)
    return [(TRACK, name) for name in names], []


def run_pair_one(ds: Dataset, track: str, method: str, *, seed: int,
                 data_dir: str | os.PathLike, results_dir: str | os.PathLike, echo=print
                 ) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """One method of one pair track, every k (one record each); shared by both engines."""
    from benchmark.preference import run_preference

    return run_preference(ds, [method], seed=seed, data_dir=data_dir,
                          results_dir=results_dir, echo=echo)


def run_pair_tracks(ds: Dataset, tracks: list[str] | None, methods: list[str] | None, *,
                    seed: int, data_dir: str | os.PathLike, results_dir: str | os.PathLike,
                    echo=print) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """The requested tracks of :data:`PAIR_TRACKS` (preference: every method x k), locally."""
    runs, skipped = plan_pair_runs(ds, tracks, methods, seed=seed, data_dir=data_dir)
    written: list[Path] = []
    for track, method in runs:
        paths, skips = run_pair_one(ds, track, method, seed=seed, data_dir=data_dir,
                                    results_dir=results_dir, echo=echo)
        written += paths
        skipped += skips
    return written, skipped


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
    echo=print,
    tuned_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    seeds: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run methods on tracks and write records (and leaderboards); returns what was done.

    ``metrics`` (e.g. ``["recall@100", "ndcg@100"]``) is the metric set every ranking
    track evaluates instead of its defaults; an unknown name or a cut-off above a track's
    ``max_k`` is one ValueError before anything runs. The engine's top-K is the largest
    cut-off asked.

    ``seeds`` (instead of ``seed``) runs the whole job once per seed, one after another,
    and writes the leaderboards once at the end. Each seed draws its own synthetic data
    (registered names), split and method seeds, and its records are filed under the
    protocol ``<protocol>-seed<s>`` (seed 0: ``<protocol>``), one table per seed; the
    leaderboard pools them into a mean ± sd table. ``result["seeds"]`` lists them.

    ``device`` is where the ranking engine runs (``cpu``, ``cuda``, ``auto``; see
    :mod:`benchmark.device`); each record names it in ``split.device``.

    Parameters stored by ``gembench tune`` for (data set, protocol, track, method) are used
    when they were tuned on this split (same fingerprint); ``tuned_dir`` defaults to
    ``baselines/tuned``.
    """
    if seeds is not None:
        return _run_each_seed(
            check_seeds(seeds), echo,
            lambda s: run_benchmark(dataset, tracks, methods, protocol, s, data_dir,
                                    results_dir, None, memory_budget_mb, progress, echo,
                                    tuned_dir, device, metrics=metrics),
            results_dir, leaderboard_dir)
    ds, split, plan, skipped = plan_runs(dataset, tracks, methods, protocol, seed, data_dir,
                                         progress, metrics=metrics)
    written, pair_skips = run_pair_tracks(ds, tracks, methods, seed=seed, data_dir=data_dir,
                                          results_dir=results_dir, echo=echo)
    skipped += pair_skips
    for track_name, names, fit, relevant, side in plan:
        for method_name in names:
            path, skip = run_one(ds, split, track_name, method_name, fit, relevant, side,
                                 protocol=protocol, seed=seed, results_dir=results_dir,
                                 memory_budget_mb=memory_budget_mb, progress=progress,
                                 echo=echo, tuned_dir=tuned_dir, device=device,
                                 metrics=metrics)
            if path is not None:
                written.append(path)
            if skip is not None:
                skipped.append(skip)
    result: dict[str, Any] = {"dataset": ds, "split": split, "records": written,
                              "skipped": skipped, "seeds": [seed]}
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


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as distinct non-negative ints, in the given order (a clear error if not)."""
    out: list[int] = []
    for value in seeds:
        try:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, str)):
                raise ValueError
            seed = int(value)
            if seed < 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"a seed must be a non-negative integer, got {value!r}") from None
        if seed in out:
            raise ValueError(f"seed {seed} is given twice in {list(seeds)}")
        out.append(seed)
    if not out:
        raise ValueError("no seeds given")
    return out


def _run_each_seed(seeds: list[int], echo, run_seed, results_dir: str | os.PathLike,
                   leaderboard_dir: str | os.PathLike | None) -> dict[str, Any]:
    """Run ``run_seed(s)`` for every seed (no leaderboards), then the leaderboards once."""
    result: dict[str, Any] = {"records": [], "skipped": [], "seeds": seeds, "per_seed": {}}
    for seed in seeds:
        echo(f"seed {seed}")
        one = run_seed(seed)
        result["per_seed"][seed] = one
        result["records"] += one["records"]
        result["skipped"] += [(*skip, seed) for skip in one["skipped"]]
        result.setdefault("dataset", one["dataset"])
        result.setdefault("split", one["split"])
    if leaderboard_dir is not None:
        result.update(leaderboards(results_dir, leaderboard_dir))
    return result


def run_one(
    ds: Dataset,
    split: Split,
    track_name: str,
    method_name: str,
    fit: InteractionData,
    relevant: sp.csr_matrix,
    side: SideInfo,
    *,
    protocol: str,
    seed: int,
    results_dir: str | os.PathLike,
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    echo=print,
    tuned_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    metrics: Sequence[str] | None = None,
) -> tuple[Path | None, tuple[str, str, str] | None]:
    """One (track, method) run: fit, evaluate, write its record atomically.

    ``metrics``: the metric set to evaluate (None: the track's defaults).

    Shared by the local loop of :func:`run_benchmark` and the Ray engine
    (:mod:`benchmark.distributed`), so both write the same numbers.
    Returns (record path, None) or (None, (track, method, why skipped)).
    """
    from benchmark.tuning import load_tuned, tuned_params_for

    track = get_track(track_name)
    display, cls = resolve_method(method_name, track=track_name)
    method = build(cls, seed)
    # parameters are tuned per seed (gembench tune --seed s): each seed's own valid part
    tuned, tuned_on = tuned_params_for(ds.name, seeded_protocol(protocol, seed), track_name,
                                       display, split.track_fingerprint(track_name),
                                       tuned_dir, warn=echo)
    if tuned is not None:
        method.set_params(**tuned)
    elif seed != 0 and load_tuned(ds.name, protocol, track_name, display, tuned_dir):
        echo(f"warning: {display} on {track_name} is tuned for seed 0 but not for seed {seed}; "
             f"seed {seed} runs with its defaults (gembench tune --seed {seed} tunes it), "
             "and the table over seeds marks the mixed row")
    try:
        evaluation, timing = run_method(
            method, fit, relevant, side_for(display, cls, side, ds),
            metrics_of(track, metrics), memory_budget_mb, progress, device
        )
    except NotApplicable as e:
        echo(f"skipped {display} on {track_name}: {e}")
        return None, (track_name, display, str(e))
    record = make_record(
        track=track_name,
        dataset=ds.record_block(),
        split={"protocol": seeded_protocol(split.meta["protocol"], seed),
               # the track's rows + catalogue (what results are compared by); the whole
               # split's (every track, no catalogue) for reference
               "fingerprint": split.track_fingerprint(track_name),
               "split_fingerprint": split.fingerprint,
               "part": "test", "fit_on": "train+valid",
               "interaction_kind": split.meta["tracks"][track_name]["interaction_kind"],
               "config": split.meta.get("params"), "device": evaluation.device},
        method={"name": display, "class": f"{cls.__module__}:{cls.__qualname__}",
                "params": jsonable(method.get_params()),
                "tuned": tuned is not None, "tuned_on": tuned_on},
        summary=evaluation.summary,
        per_user=evaluation.per_user,
        user_ids=list(fit.user_ids[evaluation.user_idx]),
        counts={"n_users_evaluated": evaluation.n_users_evaluated,
                "n_users_skipped": evaluation.n_users_skipped},
        seed=seed,
        timing=timing,
        # a method's own figures (e.g. faiss recall cost): numbers only, never a crash
        extra={**evaluation.extra, **method_figures(method, warn=echo)},
    )
    path = write_record(record, record_path(results_dir, record))
    echo(f"{track_name:10s} {display:12s} {_headline(evaluation.summary)} "
         f"(fit {timing['fit']:.1f}s, eval {timing['evaluate']:.1f}s)")
    return path, None


def _headline(summary: dict[str, float]) -> str:
    """ndcg@10 and recall@10 of a run's line (else the first two metrics evaluated)."""
    shown = [m for m in ("ndcg@10", "recall@10") if m in summary] or list(summary)[:2]
    return " ".join(f"{m}={summary[m]:.4f}" for m in shown)


def run_rerank(*args: Any, leaderboard_dir: str | os.PathLike | None = "leaderboards",
               **kwargs: Any) -> dict[str, Any]:
    """``gembench run --protocol rerank``: :func:`benchmark.rerank.rerank_records`, then
    the leaderboards (the same arguments, plus ``leaderboard_dir``; None: no tables)."""
    from benchmark.rerank import rerank_records

    result = rerank_records(*args, **kwargs)
    if leaderboard_dir is not None:
        result.update(leaderboards(kwargs.get("results_dir", "results"), leaderboard_dir))
    return result
