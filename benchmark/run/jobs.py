"""One job of a run: a (track, method) ranking run or a pair-track run, records written.

Why here: the local and the Ray executor run these very functions (as :class:`Job` s), so
both write the same records with the same numbers. Each job writes its outputs atomically,
so a retried Ray task rewrites the same files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from benchmark.core.params import build, jsonable
from benchmark.data.store import Dataset
from benchmark.errors import NotApplicable
from benchmark.protocols import InteractionData, SideInfo
from benchmark.ranking_data import metrics_of, run_method
from benchmark.registry import resolve_method
from benchmark.results import (
    make_record,
    method_figures,
    record_path,
    seeded_protocol,
    write_record,
)
from benchmark.splits import Split
from benchmark.tasks import get_track
from benchmark.views import side_for

#: what every job returns: (record paths written, (track, method, why) skipped)
Outcome = tuple[list[Path], list[tuple[str, str, str]]]


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
    echo(f"{track_name:10s} {display:12s} {headline(evaluation.summary)} "
         f"(fit {timing['fit']:.1f}s, eval {timing['evaluate']:.1f}s)")
    return path, None


def headline(summary: dict[str, float]) -> str:
    """ndcg@10 and recall@10 of a run's line (else the first two metrics evaluated)."""
    shown = [m for m in ("ndcg@10", "recall@10") if m in summary] or list(summary)[:2]
    return " ".join(f"{m}={summary[m]:.4f}" for m in shown)


def run_pair_one(ds: Dataset, track: str, method: str, *, seed: int,
                 data_dir: str | os.PathLike, results_dir: str | os.PathLike, echo=print
                 ) -> Outcome:
    """One method of one pair track, every k (one record each)."""
    from benchmark.tracks.preference.track import run_preference

    return run_preference(ds, [method], seed=seed, data_dir=data_dir,
                          results_dir=results_dir, echo=echo)


def ranking_job(ds: Dataset, split: Split, fit: InteractionData, relevant: sp.csr_matrix,
                side: SideInfo, *, echo, track: str, method: str, **options: Any) -> Outcome:
    """:func:`run_one` as a job (the large inputs first, shared between jobs)."""
    path, skip = run_one(ds, split, track, method, fit, relevant, side, echo=echo, **options)
    return ([path] if path is not None else []), ([skip] if skip is not None else [])


def pair_job(ds: Dataset, *, echo, track: str, method: str, **options: Any) -> Outcome:
    """:func:`run_pair_one` as a job."""
    paths, skips = run_pair_one(ds, track, method, echo=echo, **options)
    return list(paths), [tuple(k) for k in skips]
