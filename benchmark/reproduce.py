"""Re-run one result record and check that its numbers come back.

The record names everything needed: the data set (path and name), the split
protocol (and, in newer records, the split configuration), the track, the method
class and its parameters, and the seed. The re-run writes into a temporary
results folder, never into the caller's; metrics, intervals, list metrics and
per-user vectors must match to 1e-9 (timing, memory and versions aside).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.results import (
    evaluated_metrics,
    make_record,
    read_record,
    record_path,
    unseeded_protocol,
    write_record,
)

TOLERANCE = 1e-9
COMPARED = ("metrics", "intervals", "list_metrics", "per_user", "n_users_evaluated",
            "n_users_skipped")


def _dataset(record: dict[str, Any], data_dir: Path) -> Dataset:
    from benchmark.data.resolve import resolve_dataset
    from benchmark.registry import DATASETS

    path = record["dataset"].get("path")
    if path and (Path(path) / "dataset.json").is_file():
        return Dataset(path)
    name = record["dataset"]["name"]
    if name in DATASETS:
        return resolve_dataset(name, data_dir, seed=record["seed"], progress=False)
    raise DataError(f"data set {name!r} not found at {path!r} and not a registered name",
                    rule="a record is reproduced on its own data set")


def _method(record: dict[str, Any], record_file: str | os.PathLike = "<record>",
            trust_code: bool = False) -> Any:
    """The record's method, built with its parameters: a registered name, else (only with
    ``trust_code``) the class the record names (``benchmark.registry.resolve_from_file``)."""
    from benchmark.registry import resolve_from_file

    spec = record["method"]
    if not spec.get("class"):
        raise DataError(f"record of {spec['name']!r} is a predictions submission; nothing "
                        "to re-run", rule="only records of code runs are reproducible")
    cls = resolve_from_file(spec["class"], path=record_file, name=spec["name"],
                            track=record.get("track"), trust_code=trust_code)
    return cls(**spec.get("params", {}))


def _differences(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'record' if key in a else 're-run'}")
            else:
                _differences(a[key], b[key], f"{where}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} values vs {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            before = len(out)
            _differences(x, y, f"{where}[{i}]", out)
            if len(out) > before:
                return  # first differing element of a vector is enough
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not (math.isclose(a, b, rel_tol=0.0, abs_tol=TOLERANCE)
                or (math.isnan(a) and math.isnan(b))):
            out.append(f"{where}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{where}: {a!r} vs {b!r}")


def reproduce(record_file: str | os.PathLike, data_dir: str | os.PathLike | None = None,
              progress: bool = False, trust_code: bool = False) -> dict[str, Any]:
    """Re-run the record's (data set, split, track, method, params, seed) and compare.

    The method is resolved by its registered name; a record of an unregistered class
    (``--method package.module:Class``) is re-run only with ``trust_code`` (a record is a
    file anyone can edit, and its ``method.class`` could name any importable object).

    Returns ``match`` (bool), ``differences`` (at most one line per differing
    field), the new record and where it was written (a temporary folder).
    """
    from benchmark.ranking_data import run_method, track_data, track_side
    from benchmark.results import method_figures
    from benchmark.splits import SplitConfig, prepare_split
    from benchmark.tasks import get_track
    from benchmark.views import side_for

    old = read_record(record_file)
    # the method a record names is checked before anything is made (a refused record leaves
    # no temporary folder behind)
    method = (_method(old, record_file, trust_code) if _job(old) == "ranking"
              else _method_ref(old, record_file, trust_code))
    if _job(old) == "rerank":  # the first stage is named by the record too
        from benchmark.registry import resolve_from_file

        first = str(old["split"]["candidates"]["first_stage"])
        resolve_from_file(first, path=record_file, name=first, track=old.get("track"),
                          trust_code=trust_code)
    tmp = Path(tempfile.mkdtemp(prefix="gembench-reproduce-"))
    data = Path(data_dir) if data_dir is not None else tmp / "data"
    if _job(old) != "ranking":
        return _reproduce_job(old, record_file, tmp, data, data_dir is None, progress,
                              trust_code)
    ds = _dataset(old, data)
    config = dict(old["split"].get("config") or {})
    config.setdefault("protocol", unseeded_protocol(old["split"]["protocol"]))
    config.setdefault("seed", old["seed"])
    if "tracks" in config:
        config["tracks"] = tuple(config["tracks"])
    split = prepare_split(ds, SplitConfig(**config), data, progress=progress)
    differences: list[str] = []
    track = get_track(old["track"])
    # a record holds its track's fingerprint (written before per-track fingerprints: the
    # whole split's)
    got = split.track_fingerprint(old["track"])
    if old["split"]["fingerprint"] not in (got, split.fingerprint):
        differences.append(f"split.fingerprint: {old['split']['fingerprint'][:12]} vs "
                           f"{got[:12]}")
    checksum = split.meta.get("dataset", {}).get("files_sha256")
    if old["dataset"].get("files_sha256") not in (None, checksum):
        differences.append(f"dataset.files_sha256: {old['dataset']['files_sha256'][:12]} vs "
                           f"{str(checksum)[:12]} (a different build of the data set)")
    fit, relevant = track_data(split, track.item_kind, "test")
    side = side_for(old["method"]["name"], type(method),
                    track_side(ds, split, track.item_kind, "test", fit, seed=old["seed"]), ds)
    evaluation, timing = run_method(method, fit, relevant, side,
                                    evaluated_metrics(old) or track.metrics, progress=progress)
    new = make_record(
        track=old["track"], dataset=old["dataset"], split=old["split"], method=old["method"],
        summary=evaluation.summary, per_user=evaluation.per_user,
        user_ids=list(fit.user_ids[evaluation.user_idx]),
        counts={"n_users_evaluated": evaluation.n_users_evaluated,
                "n_users_skipped": evaluation.n_users_skipped},
        seed=old["seed"], timing=timing,
        extra={**evaluation.extra, **method_figures(method, warn=lambda *a: None)},
    )
    path = write_record(new, record_path(tmp / "results", new))
    if data_dir is None:
        shutil.rmtree(tmp / "data", ignore_errors=True)  # keep only the re-run record
    for key in COMPARED:
        _differences(old.get(key), new.get(key), key, differences)
    return {"record": str(record_file), "match": not differences,
            "differences": differences, "rerun": str(path)}


def _job(record: dict[str, Any]) -> str:
    """Which job wrote ``record``: ranking, rerank, preference or lora-edit."""
    track, protocol = record.get("track"), str(record["split"].get("protocol", ""))
    if track in ("preference", "lora-edit"):
        return str(track)
    return "rerank" if protocol.startswith("rerank-") else "ranking"


def _method_ref(record: dict[str, Any], record_file: str | os.PathLike = "<record>",
                trust_code: bool = False) -> str:
    """How to ask for the record's method again: its registered name, else its class (only
    with ``trust_code``, and only a class of its track's protocol)."""
    from benchmark.registry import all_methods, resolve_from_file

    name = record["method"]["name"]
    if name in all_methods() or name.startswith("recbole:") or name == "reversed-first-stage":
        return name
    if not record["method"].get("class"):
        raise DataError(f"record of {name!r} is a predictions submission; nothing to re-run",
                        rule="only records of code runs are reproducible")
    target = str(record["method"]["class"])
    resolve_from_file(target, path=record_file, name=name, track=record.get("track"),
                      trust_code=trust_code)
    return target


def _reproduce_job(old: dict[str, Any], record_file: str | os.PathLike, tmp: Path,
                   data: Path, drop_data: bool, progress: bool, trust_code: bool = False
                   ) -> dict[str, Any]:
    """Re-run the job that wrote a rerank, preference or lora-edit record, then compare.

    The job is run for this record's method alone, with the record's split, candidate
    list, k or edit configuration and seed, into ``tmp``; the re-run record has the same
    relative path as the original, so the two are compared field by field.
    """
    job, seed, quiet = _job(old), int(old["seed"]), (lambda *a: None)
    method = _method_ref(old, record_file, trust_code)
    ds = _dataset(old, data)
    results = tmp / "results"
    if job == "preference":
        from benchmark.tracks.preference.track import run_preference

        k = old["split"]["k"]
        run_preference(ds, [method], ks=[k], seed=seed, data_dir=data, results_dir=results,
                       echo=quiet)
    elif job == "rerank":
        from benchmark.tracks.rerank.track import rerank_records

        c = old["split"]["candidates"]
        rerank_records(str(ds.path), tracks=[old["track"]], methods=[method],
                   first_stage=c["first_stage"], n_candidates=int(c["n_candidates"]),
                   top_n=int(c.get("top_n", 50)),
                   negatives=c.get("negatives", "top"), max_users=c.get("max_users"),
                   split_protocol=old["split"]["base_protocol"], seed=seed, data_dir=data,
                   results_dir=results,
                   method_params=old["method"].get("params") or {}, progress=progress,
                   echo=quiet, candidates=c.get("mode", "top"))
    else:
        from benchmark.tracks.lora_edit.track import run_lora_edit

        config = old.get("edit_config")
        if not config or not config.get("synthetic_bank") or "-judge-" in old["split"]["protocol"]:
            raise DataError("this lora-edit record names no synthetic bank configuration (an "
                            "older record, a bank of files, or a saved judge): re-run it with "
                            "gembench edit run", path=str(record_file),
                            rule="reproducible lora-edit records carry edit_config")
        run_lora_edit(ds, methods=[method], steps=old["steps"],
                      default_step=float(config["default_step"]), results_dir=results,
                      data_dir=data, base_model=config.get("base_model"),
                      n_components=int(config["n_components"]), n_users=int(config["n_users"]),
                      loras_per_user=int(config["loras_per_user"]),
                      bank_size=int(config["bank_size"]), seed=seed,
                      encoder=config.get("encoder", "synthetic-clip"), progress=progress,
                      echo=quiet)
    path = record_path(results, old)
    differences: list[str] = []
    if not path.is_file():
        differences.append(f"the re-run wrote no record at {path.relative_to(tmp)}")
        new: dict[str, Any] = {}
    else:
        new = read_record(path)
        if new["split"].get("fingerprint") != old["split"].get("fingerprint"):
            differences.append(f"split.fingerprint: {str(old['split'].get('fingerprint'))[:12]}"
                               f" vs {str(new['split'].get('fingerprint'))[:12]}")
        old_sum, new_sum = (r["dataset"].get("files_sha256") for r in (old, new))
        if old_sum != new_sum:
            differences.append(f"dataset.files_sha256: {str(old_sum)[:12]} vs "
                               f"{str(new_sum)[:12]} (a different build of the data set)")
        for key in COMPARED:
            _differences(old.get(key), new.get(key), key, differences)
    if drop_data:
        shutil.rmtree(data, ignore_errors=True)
    return {"record": str(record_file), "match": not differences,
            "differences": differences, "rerun": str(path)}
