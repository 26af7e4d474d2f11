"""Fair hyper-parameter tuning: seeded random search on the validation part only.

Why: a baseline run with its defaults against a tuned new method is not a fair
comparison. Every method with a declared ``search_space`` gets the same
treatment: ``budget`` trials, each fitted on the split's TRAIN part and scored
on its VALID part with the train items masked (``track_data(split, kind,
"valid")``); the test part's interactions are never read (its user ids only
enter the shared user index). The first trial is always the defaults, the rest
are drawn without replacement from the grid with ``numpy.random.default_rng(seed)``;
the best trial by ``metric`` wins (ties: the earlier trial).

The chosen parameters are stored in ``baselines/tuned/<dataset>.json`` under
``[protocol][track][method]`` with the metric, its validation value, the budget,
the trials and the track fingerprint tuned on (``track_fingerprint``: the track's rows
and catalogue, :meth:`benchmark.splits.Split.track_fingerprint`).
:func:`benchmark.run.benchmark.run_benchmark` uses them only when that fingerprint equals the
current split's for the track. ``metrics`` (``gembench tune --metrics``) is the metric
set each trial evaluates (stored per trial); the objective is ``metric`` alone.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.io import atomic_write_text
from benchmark.core.params import build
from benchmark.run.executors import Executor, Job, LocalExecutor

log = logging.getLogger("gembench")

#: where tuned parameters ship: one JSON file per data set name
TUNED_DIR = Path(__file__).resolve().parents[1] / "baselines" / "tuned"

#: search spaces of registered methods whose class declares none (kept here, not in their file)
EXTRA_SPACES: dict[str, tuple[dict[str, list[Any]], int]] = {
    "itemknn": ({"k": [10, 25, 50, 100, 200, 400], "shrink": [0.0, 1.0, 5.0, 10.0, 50.0]}, 8),
}


def search_space(name: str, cls: type) -> tuple[dict[str, list[Any]], int]:
    """(space, default budget) of a method: the class's ``search_space`` or ``EXTRA_SPACES``."""
    space = getattr(cls, "search_space", None)
    if space:
        return dict(space), int(getattr(cls, "default_budget", 8))
    if name in EXTRA_SPACES:
        return EXTRA_SPACES[name]
    raise KeyError(f"method {name!r} declares no search_space: nothing to tune")


def sample_configs(space: dict[str, list[Any]], defaults: dict[str, Any], budget: int,
                   seed: int) -> list[dict[str, Any]]:
    """``budget`` distinct configurations: the defaults first, then a seeded random draw."""
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(space[k] for k in keys))]
    first = {k: defaults.get(k, space[k][0]) for k in keys}
    rest = [c for c in grid if c != first]
    order = np.random.default_rng(seed).permutation(len(rest))
    return [first, *(rest[i] for i in order[: max(budget - 1, 0)])][:max(budget, 1)]


def tuned_path(dataset_name: str, tuned_dir: str | os.PathLike | None = None) -> Path:
    from benchmark.core.names import safe_name, under_root

    root = Path(tuned_dir or TUNED_DIR)
    return under_root(root, root / f"{safe_name(dataset_name, 'data set name')}.json")


def load_tuned(dataset_name: str, protocol: str, track: str, method: str,
               tuned_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The stored entry for (dataset, protocol, track, method), or None."""
    path = tuned_path(dataset_name, tuned_dir)
    if not path.is_file():
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    return table.get(protocol, {}).get(track, {}).get(method)


def store_tuned(dataset_name: str, protocol: str, track: str, method: str,
                entry: dict[str, Any], tuned_dir: str | os.PathLike | None = None) -> Path:
    """Merge one entry into the data set's JSON file (atomic write, sorted keys)."""
    path = tuned_path(dataset_name, tuned_dir)
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    table.setdefault(protocol, {}).setdefault(track, {})[method] = entry
    atomic_write_text(path, json.dumps(table, indent=2, sort_keys=True) + "\n")
    return path


def tune(
    track: str,
    method: str,
    budget: int | None = None,
    dataset: str | os.PathLike = "synthetic-small",
    metric: str = "ndcg@10",
    seed: int = 0,
    protocol: str = "leave-last-out",
    data_dir: str | os.PathLike = "data",
    tuned_dir: str | os.PathLike | None = None,
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    echo=print,
    metrics: Sequence[str] | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Random-search ``method`` on ``track``'s validation part; store and return the entry.

    ``executor`` is where the trials run (None: here, one after another; a
    :class:`~benchmark.run.executors.RayExecutor`: one Ray task each); the trials, the
    choice and the stored entry are the same. ``result["engine"]`` names it.

    ``metrics`` (None: the track's defaults) is the metric set each trial evaluates; when
    given, each stored trial holds their values under ``metrics``. An unknown name or a
    cut-off above the track's ``max_k`` (in ``metric`` too) is one ValueError before any
    fitting.
    """
    executor = executor or LocalExecutor()
    executor.start()  # an unreachable cluster fails before any data is built
    plan = plan_tuning(track, method, budget, dataset, metric, seed, protocol, data_dir,
                       progress, metrics=metrics)
    jobs = [Job(trial_job, (plan["fit"], plan["relevant"], plan["side"]),
                {"cls": plan["cls"], "seed": seed, "params": params,
                 "metrics": plan["metrics"], "metric": metric,
                 "memory_budget_mb": memory_budget_mb}) for params in plan["configs"]]
    trials = []
    for i, trial in enumerate(executor.map(jobs, echo, desc=f"{executor.name} tune "
                                           f"{plan['method']}", progress=progress)):
        trials.append(trial)
        echo(f"{track} {plan['method']} trial {i + 1}/{plan['budget']} "
             f"{metric}={trial['value']:.4f} {trial['params']}")
    return {**finish_tuning(plan, trials, tuned_dir, echo), "engine": executor.name}


def plan_tuning(track: str, method: str, budget: int | None, dataset: str | os.PathLike,
                metric: str, seed: int, protocol: str, data_dir: str | os.PathLike,
                progress: bool = True, metrics: Sequence[str] | None = None
                ) -> dict[str, Any]:
    """Everything before the trials (split, valid data, configurations); shared by the
    local loop and the Ray engine so both score the same trials on the same data."""
    from benchmark.data.resolve import resolve_dataset
    from benchmark.ranking_data import track_data, track_side
    from benchmark.registry import resolve_method
    from benchmark.results import seeded_protocol
    from benchmark.splits import SplitConfig, prepare_split
    from benchmark.tasks import get_track

    spec = get_track(track)
    # bad names and cut-offs above the track's max_k fail before any fitting
    (metric,) = spec.check_metrics([metric])
    asked = spec.check_metrics(metrics) if metrics is not None else None
    # same split config as `gembench run` with its default tracks (one cached split); the
    # track fingerprint does not depend on which tracks were split together
    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=progress)
    split = prepare_split(ds, SplitConfig(protocol=protocol, tracks=("lora-rec", "image-rec"),
                                          seed=seed), data_dir, progress=progress)
    display, cls = resolve_method(method)
    space, default_budget = search_space(display, cls)
    budget = int(budget or default_budget)
    fit, relevant = track_data(split, spec.item_kind, "valid")  # train -> valid, never test
    side = track_side(ds, split, spec.item_kind, "valid", fit, seed=seed)  # no valid/test rows
    evaluated = tuple(dict.fromkeys((metric, *(asked or spec.metrics))))
    defaults = build(cls, seed).get_params()
    return {"track": track, "method": display, "cls": cls, "budget": budget, "metric": metric,
            # each seed's split is tuned on its own: seed s is stored as <protocol>-seed<s>
            "seed": seed, "protocol": seeded_protocol(protocol, seed), "dataset": ds.name,
            "fingerprint": split.track_fingerprint(track), "space": space, "fit": fit,
            "relevant": relevant, "side": side, "metrics": evaluated,
            "metrics_asked": list(asked) if asked is not None else None,
            "configs": sample_configs(space, defaults, budget, seed)}


def run_trial(cls: type, seed: int, params: dict[str, Any], fit: Any, relevant: Any,
              side: Any, metrics: tuple[str, ...], metric: str,
              memory_budget_mb: float = 512.0) -> dict[str, Any]:
    """One trial: fit ``cls(**params)`` on train, score ``metric`` on valid."""
    from benchmark.ranking_data import run_method

    model = build(cls, seed).set_params(**params)
    evaluation, timing = run_method(model, fit, relevant, side, metrics, memory_budget_mb,
                                    progress=False)
    return {"params": params, "value": float(evaluation.summary[metric]),
            "fit_s": round(timing["fit"], 2), "evaluate_s": round(timing["evaluate"], 2),
            "metrics": {m: round(float(evaluation.summary[m]), 8) for m in metrics}}


def trial_job(fit: Any, relevant: Any, side: Any, *, echo, cls: type, seed: int,
              params: dict[str, Any], metrics: tuple[str, ...], metric: str,
              memory_budget_mb: float = 512.0) -> dict[str, Any]:
    """:func:`run_trial` as a job (the valid data first, shared between the trials)."""
    return run_trial(cls, seed, params, fit, relevant, side, metrics, metric,
                     memory_budget_mb)


def finish_tuning(plan: dict[str, Any], trials: list[dict[str, Any]],
                  tuned_dir: str | os.PathLike | None = None, echo=print) -> dict[str, Any]:
    """Pick the best trial (ties: the earlier), store the entry, return it."""
    track, display, metric = plan["track"], plan["method"], plan["metric"]
    best = max(range(len(trials)), key=lambda i: (trials[i]["value"], -i))
    asked = plan.get("metrics_asked")
    # each trial's values of the asked metric set (--metrics); without it, the objective only
    trials = [({**t, "metrics": {m: t["metrics"][m] for m in asked}} if asked
               else {k: v for k, v in t.items() if k != "metrics"}) for t in trials]
    entry = {
        "params": trials[best]["params"],
        "metric": metric,
        "value": trials[best]["value"],
        "default_value": trials[0]["value"],
        "budget": plan["budget"],
        "n_trials": len(trials),
        "seed": plan["seed"],
        "part": "valid",
        "fit_on": "train",
        "track_fingerprint": plan["fingerprint"],
        "search_space": plan["space"],
        "trials": trials,
        **({"metrics": asked} if asked else {}),
    }
    path = store_tuned(plan["dataset"], plan["protocol"], track, display, entry, tuned_dir)
    echo(f"{track} {display}: best {metric}={entry['value']:.4f} {entry['params']} "
         f"(defaults {entry['default_value']:.4f}) -> {path}")
    return {**entry, "path": str(path), "dataset": plan["dataset"],
            "protocol": plan["protocol"], "track": track, "method": display}


def tuned_params_for(dataset_name: str, protocol: str, track: str, method: str,
                     fingerprint: str, tuned_dir: str | os.PathLike | None = None,
                     warn=None) -> tuple[dict[str, Any] | None, str | None]:
    """(params, tuned_on) to use in a run, or (None, None) when none fit this split.

    ``fingerprint`` is the current split's track fingerprint for ``track``. Parameters
    tuned on a different split (other track fingerprint) are ignored with a warning: they
    were chosen on other validation data. So is an entry stored before per-track
    fingerprints (``split_fingerprint`` only): its split cannot be matched.
    """
    entry = load_tuned(dataset_name, protocol, track, method, tuned_dir)
    if entry is None:
        return None, None
    tuned_on = entry.get("track_fingerprint")
    if tuned_on != fingerprint:
        if tuned_on is None:
            msg = (f"tuned parameters of {method} on {track} carry no track fingerprint "
                   f"(stored before per-track fingerprints; re-run gembench tune): using "
                   f"the defaults")
        else:
            msg = (f"tuned parameters of {method} on {track} were tuned on split "
                   f"{str(tuned_on)[:16]}, not this split {fingerprint[:16]}: using the "
                   f"defaults")
        log.warning(msg)
        if warn is not None:
            warn(f"warning: {msg}")
        return None, None
    return dict(entry["params"]), str(tuned_on)


