"""What a run will do, decided before anything is fitted: data set, split, (track, method) list.

Why separate: both executors (and a dry look at a run) need the same plan, and every check
that can fail (a metric name, a method that runs on none of the tracks, a bad seed list)
must fail here, before minutes of data building or fitting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.data.resolve import resolve_dataset
from benchmark.data.store import Dataset
from benchmark.protocols import InteractionData, SideInfo
from benchmark.ranking_data import metrics_of, track_data, track_side
from benchmark.registry import METHODS
from benchmark.splits import Split, SplitConfig, prepare_split
from benchmark.tasks import get_track
from benchmark.tracks import PAIR_METHOD, SPECS

#: the ranking tracks ``gembench run`` runs when none are named
DEFAULT_TRACKS = ("lora-rec", "image-rec")

#: tracks judged on pairs, not by ranking: their spec's jobs run through their own module
PAIR_TRACKS = tuple(name for name, spec in SPECS.items()
                    if spec.method_protocol == PAIR_METHOD and spec.record_track is None)

#: one ranking track's share of a plan: (track, method names, fit data, relevant, side)
TrackPlan = tuple[str, list[str], InteractionData, sp.csr_matrix, SideInfo]


def plan_runs(
    dataset: str | os.PathLike,
    tracks: list[str] | None,
    methods: list[str] | None,
    protocol: str,
    seed: int,
    data_dir: str | os.PathLike,
    progress: bool = True,
    metrics: Sequence[str] | None = None,
) -> tuple[Dataset, Split | None, list[TrackPlan], list[tuple[str, str, str]]]:
    """(data set, split, [(track, method names, fit, relevant, side)], skipped tracks).

    ``metrics`` (None: each track's defaults) is checked against every requested ranking
    track first (:meth:`benchmark.tasks.RankingTrack.check_metrics`), before any data is
    built. The split is None when only pair tracks are requested.
    """
    requested = list(tracks or DEFAULT_TRACKS)
    run_metrics(requested, metrics)
    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=progress)
    ranking = [t for t in requested if t not in PAIR_TRACKS]
    if not ranking:  # only pair tracks: no ranking split to build
        return ds, None, [], []
    for name in ranking:
        get_track(name)
    check_methods_known(methods, requested)
    config = SplitConfig(protocol=protocol, tracks=tuple(ranking), seed=seed)
    split = prepare_split(ds, config, data_dir, progress=progress)
    plan: list[TrackPlan] = []
    skipped: list[tuple[str, str, str]] = []
    for track_name in ranking:
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


def plan_pair_runs(ds: Dataset, tracks: list[str] | None, methods: list[str] | None, *,
                   seed: int, data_dir: str | os.PathLike
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """([(pair track, method name)], skipped) for the requested :data:`PAIR_TRACKS`.

    Builds (or finds) each track's pair split under ``data_dir`` first, so the runs,
    local or on Ray workers, only read it.
    """
    from benchmark.tracks.preference.track import TRACK, prepare_preference_split

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


def run_metrics(tracks: Sequence[str], metrics: Sequence[str] | None
                ) -> dict[str, tuple[str, ...]]:
    """The metrics each requested ranking track evaluates: ``metrics`` (checked: a known
    name, a cut-off within the track's ``max_k``) or the track's defaults."""
    return {name: metrics_of(get_track(name), metrics) for name in tracks
            if name not in PAIR_TRACKS}


def check_methods_known(methods: list[str] | None, tracks: list[str]) -> None:
    """A registered method named with --methods must run on at least one requested track."""
    for name in methods or []:
        spec = METHODS.get(name)
        if spec is not None and not set(spec.tracks) & set(tracks):
            raise KeyError(f"method {name!r} runs on {list(spec.tracks)}, not on the requested "
                           f"tracks {tracks}")


def check_seeds(seeds: Sequence[Any]) -> list[int]:
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
