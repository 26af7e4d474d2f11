"""The main job: data set -> split -> every (track, method) -> records -> leaderboards.

Protocol for the test part: a method is fitted on train + valid and every item
of train + valid is masked when ranking, so the held-out items are the only
new ones (the next-item protocol). Tuning (valid part) fits on train alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.store import Dataset
from benchmark.errors import NotApplicable
from benchmark.evaluate import RankingEvaluation, evaluate_ranking
from benchmark.leaderboard import write_leaderboards
from benchmark.protocols import InteractionData, RankingMethod, SideInfo
from benchmark.registry import DATASETS, METHODS, resolve_method
from benchmark.results import make_record, record_path, seeded_protocol, write_record
from benchmark.splits import Split, SplitConfig, load_split, make_split
from benchmark.tasks import get_track

log = logging.getLogger("gembench")


def resolve_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike = "data",
                    seed: int = 0, progress: bool = True) -> Dataset:
    """A registered data set name (built into ``data_dir`` on first use) or a folder.

    A registered (synthetic) set is drawn from ``seed``: seed 0 lives in
    ``data_dir/<name>``, seed s in ``data_dir/<name>-seed<s>``, so a sweep over seeds
    never rebuilds (and never overwrites) another seed's data. A folder is used as is.
    """
    name = str(name_or_path)
    if name in DATASETS:
        path = Path(data_dir) / seeded_protocol(name, seed)  # same -seed<s> mark
        if (path / "dataset.json").is_file():
            dataset = Dataset(path)
            if dataset.meta.get("seed") == seed:
                return dataset
        from benchmark.data.synthetic import synthesize

        scale = name.removeprefix("synthetic-")
        log.info("building %s (seed %d) into %s", name, seed, path)
        return synthesize(scale, path, seed=seed, progress=progress)
    return Dataset(name)


def prepare_split(dataset: Dataset, config: SplitConfig, data_dir: str | os.PathLike = "data",
                  progress: bool = True) -> Split:
    """The split for ``config``, cached under ``data_dir/splits`` and reused when unchanged."""
    key = hashlib.sha256(
        json.dumps([dataset.meta.get("files", {}), asdict(config)], sort_keys=True,
                   default=list).encode()
    ).hexdigest()[:12]
    path = Path(data_dir) / "splits" / dataset.name / f"{config.protocol}-{key}"
    if (path / "split.json").is_file():
        return load_split(path)
    split = make_split(dataset, config, progress=progress)
    split.save(path)
    return split


def track_data(split: Split, item_kind: str, part: str = "test"
               ) -> tuple[InteractionData, sp.csr_matrix]:
    """Fit data and relevance matrix for evaluating ``part`` of one item kind.

    For ``test`` the fit data is train + valid; for ``valid`` it is train.
    """
    fit_parts = ["train", "valid"] if part == "test" else ["train"]
    frames = {p: split.part(p, item_kind) for p in ("train", "valid", "test")}
    users = pd.Index(
        np.unique(np.concatenate([frames[p]["user_id"].astype(str).to_numpy() for p in frames])),
        dtype=object,
    )
    items = split.items(item_kind)
    source = str(split.path or "<split>")
    fit = InteractionData.from_frame(
        pd.concat([frames[p] for p in fit_parts], ignore_index=True), users, items, item_kind,
        source=source,
    )
    held_out = InteractionData.from_frame(frames[part], users, items, item_kind, source=source)
    return fit, held_out.matrix


def run_method(
    method: RankingMethod,
    fit: InteractionData,
    relevant: sp.csr_matrix,
    side: SideInfo,
    metric_names: tuple[str, ...],
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[RankingEvaluation, dict[str, float]]:
    """Fit, then evaluate on ``device`` (cpu | cuda | auto | cpu-torch); seconds of each."""
    t0 = time.perf_counter()
    method.fit(fit, side)
    t1 = time.perf_counter()
    popularity = np.asarray(fit.matrix.getnnz(axis=0), dtype=np.float64)
    evaluation = evaluate_ranking(
        method, fit.matrix, relevant, metric_names, memory_budget_mb=memory_budget_mb,
        item_popularity=popularity, progress=progress, desc=f"{method.name}", device=device,
    )
    t2 = time.perf_counter()
    return evaluation, {"fit": t1 - t0, "evaluate": t2 - t1}


def plan_runs(
    dataset: str | os.PathLike,
    tracks: list[str] | None,
    methods: list[str] | None,
    protocol: str,
    seed: int,
    data_dir: str | os.PathLike,
    progress: bool = True,
) -> tuple[Dataset, Split, list[tuple[str, list[str], InteractionData, sp.csr_matrix, SideInfo]],
           list[tuple[str, str, str]]]:
    """(data set, split, [(track, method names, fit, relevant, side)], skipped tracks).

    The part of a run both engines share: everything before the (track, method) runs.
    """
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
        side = SideInfo(dataset=ds, item_kind=track.item_kind, seed=seed)
        names = ([n for n in methods if n not in METHODS or track_name in METHODS[n].tracks]
                 if methods else [n for n, spec in METHODS.items()
                                  if spec.runs_by_default(track_name, protocol)])
        plan.append((track_name, list(names), fit, relevant, side))
    return ds, split, plan, skipped


#: tracks judged on pairs, not by ranking: they run through their own module
PAIR_TRACKS = ("preference",)


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
) -> dict[str, Any]:
    """Run methods on tracks and write records (and leaderboards); returns what was done.

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
                                    tuned_dir, device),
            results_dir, leaderboard_dir)
    ds, split, plan, skipped = plan_runs(dataset, tracks, methods, protocol, seed, data_dir,
                                         progress)
    written, pair_skips = run_pair_tracks(ds, tracks, methods, seed=seed, data_dir=data_dir,
                                          results_dir=results_dir, echo=echo)
    skipped += pair_skips
    for track_name, names, fit, relevant, side in plan:
        for method_name in names:
            path, skip = run_one(ds, split, track_name, method_name, fit, relevant, side,
                                 protocol=protocol, seed=seed, results_dir=results_dir,
                                 memory_budget_mb=memory_budget_mb, progress=progress,
                                 echo=echo, tuned_dir=tuned_dir, device=device)
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
) -> tuple[Path | None, tuple[str, str, str] | None]:
    """One (track, method) run: fit, evaluate, write its record atomically.

    Shared by the local loop of :func:`run_benchmark` and the Ray engine
    (:mod:`benchmark.distributed`), so both write the same numbers.
    Returns (record path, None) or (None, (track, method, why skipped)).
    """
    from benchmark.tuning import load_tuned, tuned_params_for

    track = get_track(track_name)
    display, cls = resolve_method(method_name, track=track_name)
    method = cls(seed=seed) if "seed" in _init_params(cls) else cls()
    # parameters are tuned per seed (gembench tune --seed s): each seed's own valid part
    tuned, tuned_on = tuned_params_for(ds.name, seeded_protocol(protocol, seed), track_name,
                                       display, split.fingerprint, tuned_dir, warn=echo)
    if tuned is not None:
        method.set_params(**tuned)
    elif seed != 0 and load_tuned(ds.name, protocol, track_name, display, tuned_dir):
        echo(f"warning: {display} on {track_name} is tuned for seed 0 but not for seed {seed}; "
             f"seed {seed} runs with its defaults (gembench tune --seed {seed} tunes it), "
             "and the table over seeds marks the mixed row")
    try:
        evaluation, timing = run_method(
            method, fit, relevant, side, track.metrics, memory_budget_mb, progress, device
        )
    except NotApplicable as e:
        echo(f"skipped {display} on {track_name}: {e}")
        return None, (track_name, display, str(e))
    record = make_record(
        track=track_name,
        dataset={"name": ds.name, "path": str(ds.path),
                 "files_sha256": split.meta["dataset"]["files_sha256"]},
        split={"protocol": seeded_protocol(split.meta["protocol"], seed),
               "fingerprint": split.fingerprint,
               "part": "test", "fit_on": "train+valid",
               "interaction_kind": split.meta["tracks"][track_name]["interaction_kind"],
               "config": split.meta.get("params"), "device": evaluation.device},
        method={"name": display, "class": f"{cls.__module__}:{cls.__qualname__}",
                "params": _jsonable(method.get_params()),
                "tuned": tuned is not None, "tuned_on": tuned_on},
        summary=evaluation.summary,
        per_user=evaluation.per_user,
        user_ids=list(fit.user_ids[evaluation.user_idx]),
        counts={"n_users_evaluated": evaluation.n_users_evaluated,
                "n_users_skipped": evaluation.n_users_skipped},
        seed=seed,
        timing=timing,
        extra={**evaluation.extra, **getattr(method, "extra_", {})},  # e.g. faiss recall cost
    )
    path = write_record(record, record_path(results_dir, record))
    echo(f"{track_name:10s} {display:12s} ndcg@10={evaluation.summary['ndcg@10']:.4f} "
         f"recall@10={evaluation.summary['recall@10']:.4f} "
         f"(fit {timing['fit']:.1f}s, eval {timing['evaluate']:.1f}s)")
    return path, None


def _init_params(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out
