"""The Python API: one function per CLI command, same names and arguments.

>>> from benchmark import api
>>> ds = api.synth("tiny", "data/tiny")
>>> split = api.split(ds.path, "leave-last-out", "data/tiny-split")
>>> result = api.run(dataset=ds.path, methods=["popularity"])
"""

from __future__ import annotations

import os
from typing import Any

from benchmark.data.store import Dataset
from benchmark.splits import Split, SplitConfig, load_split, make_split


def synth(scale: str = "small", out: str | os.PathLike = "data/synthetic", seed: int = 0,
          progress: bool = True) -> Dataset:
    """``gembench data synth``: build the seeded synthetic world."""
    from benchmark.data.synthetic import synthesize

    return synthesize(scale, out, seed=seed, progress=progress)


def import_data(source: str, src: str | os.PathLike, out: str | os.PathLike,
                progress: bool = True, **options: Any) -> Dataset:
    """``gembench data import``: convert a real data source into the schema."""
    if source == "imagegem":
        from benchmark.data.imagegem import import_imagegem

        return import_imagegem(src, out, progress=progress, **options)
    if source == "recbole":
        from benchmark.data.recbole import import_recbole

        return import_recbole(src, out, progress=progress, **options)
    if source == "pamela":
        from benchmark.data.pamela import import_pamela

        return import_pamela(src, out, progress=progress, **options)
    if source == "learn-user-pref":
        from benchmark.data.learn_user_pref import import_learn_user_pref

        return import_learn_user_pref(src, out, progress=progress, **options)
    from benchmark.registry import SOURCES

    raise KeyError(f"unknown source {source!r}; sources: {', '.join(SOURCES)}")


def info(path: str | os.PathLike) -> dict[str, Any]:
    """``gembench data info``: what a data set folder holds."""
    ds = Dataset(path)
    return {
        "name": ds.name,
        "path": str(ds.path),
        "source": ds.meta.get("source"),
        "scale": ds.meta.get("scale"),
        "seed": ds.meta.get("seed"),
        "tables": ds.meta.get("tables", {}),
        "embeddings": ds.meta.get("embeddings", {}),
        "has_truth": ds.has_truth,
    }


def split(dataset: str | os.PathLike, protocol: str = "leave-last-out",
          out: str | os.PathLike | None = None, progress: bool = False, **config: Any) -> Split:
    """``gembench split``: make (and, with ``out``, save) a split of a data set."""
    if "tracks" in config:
        config["tracks"] = tuple(config["tracks"])
    result = make_split(Dataset(dataset), SplitConfig(protocol=protocol, **config),
                        progress=progress)
    if out is not None:
        result.save(out)
    return result


def evaluate(track: str, split: str | os.PathLike, submission: str | os.PathLike,
             out: str | os.PathLike | None = None, record: bool = False,
             name: str | None = None,
             results_dir: str | os.PathLike = "results",
             metrics: list[str] | None = None) -> dict[str, Any]:
    """``gembench evaluate``: score a rankings file; writes ``out`` only when valid.

    ``metrics`` (``--metrics``, e.g. ``["recall@100", "ndcg@100"]``): the metric set
    instead of the track's defaults; an unknown name or a cut-off above the track's
    ``max_k`` is a ValueError. A file may rank up to the track's ``max_k`` items per user.
    With ``record=True`` (and a ``name``) it also writes a result record under
    ``results_dir`` (refused when the name belongs to another method, or the split's
    track fingerprint or the data set checksum differs from the table's); its path is
    ``result["record"]``.
    """
    import json

    from benchmark.core.io import atomic_write_text
    from benchmark.submission import evaluate_submission, submission_record
    from benchmark.tasks import get_track

    spec = get_track(track)
    if metrics is not None:
        metrics = list(spec.check_metrics(metrics))  # before reading anything
    if record:
        if not name:
            raise ValueError("--record needs --name (the method name on the leaderboard)")
        from benchmark.results import write_record

        result, rec, path = submission_record(submission, load_split(split), spec,
                                              name, results_dir, metrics=metrics)
        write_record(rec, path)
        result = {**result, "record": str(path)}
    else:
        result = evaluate_submission(submission, load_split(split), spec, metrics=metrics)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def validate(track: str, split: str | os.PathLike, submission: str | os.PathLike
             ) -> dict[str, Any]:
    """``gembench validate``: every violated rule of a rankings file, with its rows.

    Returns ``valid``, ``violations`` (:class:`benchmark.submission.Violation`) and
    ``text`` (the report the CLI prints).
    """
    from benchmark.submission import format_validation, validate_file
    from benchmark.tasks import get_track

    report = validate_file(submission, load_split(split), get_track(track))
    return {**report, "text": format_validation(report)}


def reproduce(record: str | os.PathLike, data_dir: str | os.PathLike | None = None,
              progress: bool = False, trust_code: bool = False) -> dict[str, Any]:
    """``gembench run --reproduce``: re-run one record and compare its metrics (1e-9).

    The record's method is resolved by its registered name; a record of an unregistered
    class is re-run only with ``trust_code=True`` (``--trust-code``): nothing a file names is
    imported without it (docs/security.md).
    """
    from benchmark.reproduce import reproduce as _reproduce

    return _reproduce(record, data_dir=data_dir, progress=progress, trust_code=trust_code)


def run(engine: str = "local", address: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """``gembench run``: see :func:`benchmark.run.benchmark.run_benchmark` for the arguments.

    ``engine="ray"`` runs each (seed, track, method) as a Ray task on the cluster at
    ``address`` (``auto``, ``host:port``, or None for a local Ray); same records, same
    numbers. ``seeds=[0, 1, 2]`` runs every seed (one table per seed and a mean ± sd table
    over them, ``result["seed_tables"]``).
    ``device="cuda"`` (or ``"auto"``) ranks on the GPU (see :mod:`benchmark.device`; on Ray,
    ``auto`` is resolved on each worker); the default ``"cpu"`` is the numpy engine.
    ``metrics=["recall@100", "ndcg@100"]`` (``--metrics``) replaces each ranking track's
    default metrics (cut-offs up to the track's ``max_k``; a ValueError otherwise).
    """
    if _engine(engine) == "ray":
        from benchmark.distributed import ray_run_benchmark

        return ray_run_benchmark(address=address, **kwargs)
    from benchmark.run.benchmark import run_benchmark

    return run_benchmark(**kwargs)


def tune(engine: str = "local", address: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """``gembench tune``: see :func:`benchmark.tuning.tune` for the arguments
    (``engine="ray"``: one Ray task per trial, same choice); ``metrics`` (``--metrics``) is
    the metric set each trial evaluates, the objective stays ``metric``."""
    if _engine(engine) == "ray":
        from benchmark.distributed import ray_tune

        return ray_tune(address=address, **kwargs)
    from benchmark.tuning import tune as _tune

    return _tune(**kwargs)


def _engine(engine: str) -> str:
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {engine!r}; choose local or ray")
    return engine


def leaderboard(results_dir: str | os.PathLike = "results",
                out: str | os.PathLike = "leaderboards", format: str = "files",
                track: str | None = None, metrics: list[str] | None = None,
                dataset: str | None = None, protocol: str | None = None,
                style: str = "pm", seeds: bool = False) -> dict[str, Any]:
    """``gembench leaderboard``: rebuild every table from the result records.

    ``metrics`` are the columns shown, in both formats; on a ranking track they are
    checked as ``gembench run --metrics`` checks them (a known name, a cut-off within the
    track's ``max_k``). ``format="files"`` writes Markdown + JSON per table and
    ``index.html`` under ``out`` (``seed_tables``: the mean ± sd over seeds tables, also
    written), ``metrics`` replacing the default columns of the full-ranking tables (of
    ``track`` only, when given); ``format="latex"`` writes nothing and returns ``text``:
    booktabs tables of ``track`` (filtered by ``dataset``/``protocol``) with ``metrics``,
    ``style`` "pm" (± half-width) or "intervals"; with ``seeds=True`` the mean ± sd over
    seeds tables instead (``metrics`` optional, ``protocol`` with or without its
    ``-seed<s>`` part).
    """
    from benchmark.leaderboard import (
        build_seed_tables,
        build_tables,
        check_columns,
        seeds_to_latex,
        select_tables,
        to_latex,
        write_leaderboards,
    )
    from benchmark.results import unseeded_protocol

    if format not in ("files", "latex"):
        raise ValueError(f"unknown format {format!r}; choose files or latex")
    if metrics is not None:
        metrics = list(check_columns(metrics, track))
    if format == "files":
        files, tables, notes, seed_tables = write_leaderboards(
            results_dir, out, with_seeds=True, metrics=metrics, track=track)
        return {"files": files, "tables": tables, "notes": notes, "seed_tables": seed_tables}
    if not track or not (metrics or seeds):
        raise ValueError("--format latex needs --track and --metrics")
    tables, notes = build_tables(results_dir)
    if seeds:
        chosen = select_tables(build_seed_tables(tables), track, dataset,
                               unseeded_protocol(protocol) if protocol else None)
        if not chosen:
            raise KeyError(f"no table over two or more seeds for track {track!r} (data set "
                           f"{dataset or 'any'}, protocol {protocol or 'any'}) under "
                           f"{results_dir}; run `gembench run --seeds 0,1,2` first")
        if metrics and protocol is None and len(chosen) > 1:
            chosen = [t for t in chosen if all(any(m in r["metrics"] for r in t["rows"])
                                               for m in metrics)] or chosen
        text = "\n".join(seeds_to_latex(t, metrics) for t in chosen)
        return {"files": [], "tables": chosen, "notes": notes, "text": text}
    chosen = select_tables(tables, track, dataset, protocol)
    if not chosen:
        raise KeyError(f"no table for track {track!r} (data set {dataset or 'any'}, protocol "
                       f"{protocol or 'any'}) under {results_dir}")
    if protocol is None and len(chosen) > 1:
        # e.g. lora-rec has leave-last-out, cold-start and rerank tables: keep those that
        # report every asked metric (the rerank lists have no recall@20)
        having = [t for t in chosen
                  if all(any(m in r["metrics"] for r in t["rows"]) for m in metrics)]
        chosen = having or chosen
    text = "\n".join(to_latex(t, metrics, style) for t in chosen)
    return {"files": [], "tables": chosen, "notes": notes, "text": text}


def embed(encoder: Any, out: str | os.PathLike, engine: str = "local",
          address: str | None = None, gpus_per_worker: float | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """``gembench embed``: image / text embeddings into a resumable embedding store
    (see :func:`benchmark.embed.embed` for the arguments). ``engine="ray"``: batches on
    a pool of Ray actors (``workers`` of them), same store, resumable by either engine."""
    if _engine(engine) == "ray":
        from benchmark.distributed import ray_embed

        return ray_embed(encoder, out, address=address, gpus_per_worker=gpus_per_worker,
                         **kwargs)
    from benchmark.embed import embed as _embed

    return _embed(encoder, out, **kwargs)


def registered() -> dict[str, dict[str, str]]:
    """``gembench list``: registered data sets, sources, tracks and methods."""
    from benchmark.registry import DATASETS, SOURCES, all_methods
    from benchmark.tracks import SPECS

    return {
        "datasets": dict(DATASETS),
        "sources": dict(SOURCES),
        "tracks": {name: f"{spec.question} [protocols {', '.join(spec.protocols)}; main score "
                         f"{spec.main_score}]" for name, spec in SPECS.items()},
        "methods": {name: f"{spec.summary} [{', '.join(spec.tracks)}]"
                    for name, spec in all_methods().items()},
    }


def fit_judge(method: str, out: str | os.PathLike, dataset: str | os.PathLike = "synthetic-small",
              k: int | str = "all", seed: int = 0, data_dir: str | os.PathLike = "data"
              ) -> tuple[Any, dict[str, float]]:
    """``gembench judge fit``: fit a preference method on the preference split and save it.

    The judge is fitted exactly as the preference track evaluates it at this k (training
    pairs of seen users, k judgements of each held-out user); returns (folder, test metrics).
    """
    from benchmark.core.params import build
    from benchmark.data.resolve import resolve_dataset
    from benchmark.judge import save_judge
    from benchmark.registry import resolve_method
    from benchmark.tracks.preference.track import evaluate_preference, prepare_preference_split

    ds = resolve_dataset(dataset, data_dir, seed=seed, progress=False)
    split = prepare_preference_split(ds, data_dir, seed=seed)
    name, cls = resolve_method(method, track="preference")
    model = build(cls, seed)
    k = int(k) if str(k).isdigit() else k
    result = evaluate_preference(model, split, k, dataset=ds, method_name=name, seed=seed)
    path = save_judge(model, out, name=name, dataset=ds, split=split,
                      extra={"k": k, "test_metrics": result["metrics"]})
    return path, result["metrics"]


def score_with_judge(judge: str | os.PathLike, pairs: Any, out: str | os.PathLike | None = None,
                     dataset_path: str | os.PathLike | None = None,
                     trust_code: bool = False) -> Any:
    """``gembench judge score``: scores of pairs (or of (user, image) rows) by a saved judge.

    A judge of an unregistered class is loaded only with ``trust_code=True``
    (``--trust-code``); see :func:`benchmark.judge.load_judge`.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from benchmark.errors import DataError
    from benchmark.judge import load_judge, score_pairs

    model = load_judge(judge, dataset_path=dataset_path, trust_code=trust_code)
    if not isinstance(pairs, pd.DataFrame):
        path = Path(pairs)
        try:
            pairs = (pd.read_csv(path, dtype=str) if path.suffix == ".csv"
                     else pd.read_parquet(path))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read pairs: {e}", path=str(path)) from e
    if {"image_a", "image_b"} <= set(pairs.columns):
        scored = score_pairs(model, pairs)
    elif {"user_id", "image_id"} <= set(pairs.columns):
        scored = pairs.loc[:, ["user_id", "image_id"]].copy()
        scored["score"] = np.asarray(model.score(
            scored["user_id"].astype(str).to_numpy(dtype=object),
            scored["image_id"].astype(str).to_numpy(dtype=object)), dtype=np.float64)
    else:
        raise DataError("rows need user_id, image_a, image_b (pairs) or user_id, image_id",
                        rule="judge score input columns")
    if out is not None:
        from benchmark.core.io import atomic_path

        with atomic_path(out) as tmp:  # a reader never sees half a file
            if Path(out).suffix == ".csv":
                scored.to_csv(tmp, index=False)
            else:
                scored.to_parquet(tmp, index=False)
    return scored


def check_method(cls: type | str, track: str = "lora-rec", seed: int = 0) -> list[str]:
    """Test a method class (or ``package.module:Class``) against its track's protocol on a
    tiny synthetic world, before a run; returns the rules it passed
    (:func:`benchmark.conformance.check_method`)."""
    from benchmark.conformance import check_method as _check

    if isinstance(cls, str):
        import importlib

        module, _, attr = cls.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    return _check(cls, track, seed)


def rerank(**kwargs: Any) -> dict[str, Any]:
    """``gembench run --protocol rerank``: candidate lists from a first stage, each method
    reorders them; records and tables (:func:`benchmark.run.benchmark.run_rerank`)."""
    from benchmark.run.benchmark import run_rerank

    return run_rerank(**kwargs)


def edit_run(**kwargs: Any) -> dict[str, Any]:
    """``gembench edit run``: the lora-edit track
    (:func:`benchmark.tracks.lora_edit.track.run_lora_edit`)."""
    from benchmark.tracks.lora_edit.track import run_lora_edit

    return run_lora_edit(**kwargs)
