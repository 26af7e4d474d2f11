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
    from benchmark.registry import DATASETS
    from benchmark.runner import resolve_dataset

    path = record["dataset"].get("path")
    if path and (Path(path) / "dataset.json").is_file():
        return Dataset(path)
    name = record["dataset"]["name"]
    if name in DATASETS:
        return resolve_dataset(name, data_dir, seed=record["seed"], progress=False)
    raise DataError(f"data set {name!r} not found at {path!r} and not a registered name",
                    rule="a record is reproduced on its own data set")


def _method(record: dict[str, Any]) -> Any:
    from benchmark.registry import resolve_method

    spec = record["method"]
    if not spec.get("class"):
        raise DataError(f"record of {spec['name']!r} is a predictions submission; nothing "
                        "to re-run", rule="only records of code runs are reproducible")
    try:
        _, cls = resolve_method(spec["name"])
    except KeyError:
        _, cls = resolve_method(spec["class"])
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
              progress: bool = False) -> dict[str, Any]:
    """Re-run the record's (data set, split, track, method, params, seed) and compare.

    Returns ``match`` (bool), ``differences`` (at most one line per differing
    field), the new record and where it was written (a temporary folder).
    """
    from benchmark.runner import prepare_split, run_method, track_data, track_side
    from benchmark.splits import SplitConfig
    from benchmark.tasks import get_track
    from benchmark.views import side_for

    old = read_record(record_file)
    tmp = Path(tempfile.mkdtemp(prefix="gembench-reproduce-"))
    data = Path(data_dir) if data_dir is not None else tmp / "data"
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
    fit, relevant = track_data(split, track.item_kind, "test")
    method = _method(old)
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
        seed=old["seed"], timing=timing, extra=evaluation.extra,
    )
    path = write_record(new, record_path(tmp / "results", new))
    if data_dir is None:
        shutil.rmtree(tmp / "data", ignore_errors=True)  # keep only the re-run record
    for key in COMPARED:
        _differences(old.get(key), new.get(key), key, differences)
    return {"record": str(record_file), "match": not differences,
            "differences": differences, "rerun": str(path)}
