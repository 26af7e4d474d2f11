"""Result records: one JSON file per (data set, split, track, method), written atomically.

A record holds everything needed to trust and reuse a number: the metrics and
their 95% bootstrap intervals, the per-user metric vectors (for paired
significance tests), the method and its parameters, the seed, the split
fingerprint, library versions, wall time and peak memory.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import __version__
from benchmark.core.io import atomic_write_text
from benchmark.core.names import safe_name, under_root
from benchmark.errors import DataError

RECORD_SCHEMA = "gembench.result/1"
N_BOOTSTRAP = 1000


def bootstrap_interval(
    values: np.ndarray, n_boot: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over users.

    Users are resampled with replacement ``n_boot`` times (seeded, so the
    interval is reproducible); the interval is the (1-level)/2 and (1+level)/2
    quantiles of the resampled means. Chunked, so memory stays O(chunk * n).
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, min(n_boot, 2_000_000 // n))
    for start in range(0, n_boot, step):
        size = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        means[start : start + size] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss), in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / 1024.0 if sys.platform != "darwin" else rss / 2**20, 1)


def versions() -> dict[str, str]:
    import numpy
    import pandas
    import pyarrow
    import scipy

    found = {
        "gembench": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }
    for name in ("torch", "implicit", "recbole", "faiss", "open_clip", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = str(getattr(module, "__version__", "unknown"))
    return found


def make_record(
    *,
    track: str,
    dataset: dict[str, Any],
    split: dict[str, Any],
    method: dict[str, Any],
    summary: dict[str, float],
    per_user: dict[str, np.ndarray],
    user_ids: list[str],
    counts: dict[str, int],
    seed: int,
    timing: dict[str, float],
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    intervals = {
        name: [round(v, 8) for v in bootstrap_interval(values, seed=seed)]
        for name, values in per_user.items()
    }
    return {
        "schema": RECORD_SCHEMA,
        "track": track,
        "dataset": dataset,
        "split": split,
        "method": method,
        "metrics": {name: round(float(v), 8) for name, v in summary.items()},
        "intervals": intervals,
        "interval_method": f"percentile bootstrap over users, {N_BOOTSTRAP} resamples, 95%",
        "list_metrics": {k: round(v, 8) for k, v in (extra or {}).items()},
        **counts,
        "per_user": {
            "user_id": list(user_ids),
            **{name: [round(float(v), 8) for v in values] for name, values in per_user.items()},
        },
        "seed": seed,
        "versions": versions(),
        "timing_s": {k: round(v, 3) for k, v in timing.items()},
        "peak_memory_mb": peak_memory_mb(),
    }


def evaluated_metrics(record: dict[str, Any]) -> tuple[str, ...]:
    """The ranking metrics (``<name>@<k>``) a ranking record evaluated, from its
    ``metrics`` keys (``gembench run --metrics``, else its track's defaults at the time):
    the set a re-run evaluates. Per-user figures such as ``avg_popularity@K`` are left out
    (the engine adds them)."""
    from benchmark.metrics import parse_metric

    out = []
    for name in record.get("metrics", {}):
        try:
            parse_metric(name)
        except ValueError:
            continue
        out.append(name)
    return tuple(out)


#: how a seed other than 0 shows in a record's split protocol: ``leave-last-out-seed1``
SEED_MARK = "-seed"


def seeded_protocol(protocol: str, seed: int) -> str:
    """The protocol a record of ``seed`` is filed under: ``protocol`` for seed 0, else
    ``<protocol>-seed<seed>``.

    Why: each seed of a sweep is its own table (its own split, significance tests
    over the same users), and seed 0 keeps the names every existing record has.
    Pair-track protocols add ``-k<k>`` after it (``per-user-pairs-seed1-k5``).
    """
    return protocol if int(seed) == 0 else f"{protocol}{SEED_MARK}{int(seed)}"


def unseeded_protocol(protocol: str) -> str:
    """``protocol`` without its ``-seed<s>`` part: the protocol seeds are pooled over."""
    return re.sub(rf"{SEED_MARK}\d+(?=-|$)", "", protocol)


def record_path(results_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """results/<dataset>/<protocol>/<track>/<method>.json

    Each part must be a safe name (:data:`benchmark.core.names.NAME_PATTERN`; a method's
    ``:`` becomes ``_`` in the file name: ``recbole_BPR.json``), and the path is checked to
    lie under ``results_dir``: a name from an edited ``split.json`` or ``dataset.json``
    never writes elsewhere.
    """
    parts = [safe_name(record["dataset"]["name"], "data set name"),
             safe_name(record["split"]["protocol"], "split protocol"),
             safe_name(record["track"], "track name")]
    method = safe_name(record["method"]["name"], "method name").replace(":", "_")
    return under_root(results_dir, Path(results_dir).joinpath(*parts, f"{method}.json"))


#: what a run measures about the machine it ran on (seconds, memory, library builds): kept
#: beside the record in ``<method>.run``, so a record's bytes depend only on the data, the
#: method and the seed, and committed records stay the same when ``make run`` is repeated
RUN_KEYS = ("timing_s", "peak_memory_mb", "versions")
RUN_SUFFIX = ".run"


def run_info_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + RUN_SUFFIX)


def record_text(record: dict[str, Any]) -> str:
    """The record as JSON: keys sorted, one line per key, a list of scalars on one line.

    Why: a per-user vector is one line, so a diff of two records names the vectors that
    changed, and a record is a few times smaller than with one number per line.
    """
    return _json_lines(record, 0) + "\n"


def _json_lines(value: Any, depth: int) -> str:
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {_json_lines(value[k], depth + 1)}"
                 for k in sorted(value, key=str)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return json.dumps(list(value))
        return ("[\n" + ",\n".join(inner + _json_lines(v, depth + 1) for v in value) + "\n"
                + pad + "]")
    return json.dumps(value)


def record_kind(record: dict[str, Any]) -> str:
    """``"code run"`` (the record names its ``method.class``) or ``"submission"`` (scored
    predictions: ``method.class`` is null)."""
    return "code run" if (record.get("method") or {}).get("class") else "submission"


def check_owner(record: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse (DataError) to replace a record of the other kind at ``path``: a run never
    replaces a submission's record and a submission never replaces a code run's."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # not a record: nothing owned to protect
    if not isinstance(old, dict) or not isinstance(old.get("method"), dict):
        return
    mine, theirs = record_kind(record), record_kind(old)
    if mine != theirs:
        raise DataError(
            f"a {theirs} record of {old['method'].get('name')!r} is already here; this "
            f"{mine} does not replace it (give the {mine} another name, or remove the file "
            "yourself)", path=str(path),
            rule="a run never replaces a submission's record, and a submission never "
                 "replaces a code run's")


def write_record(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` atomically; its run measurements (:data:`RUN_KEYS`) go beside it.

    Refused (:func:`check_owner`) when a record of the other kind (code run / submission)
    is at ``path``.
    """
    path = Path(path)
    check_owner(record, path)
    run = {k: record[k] for k in RUN_KEYS if k in record}
    body = {k: v for k, v in record.items() if k not in RUN_KEYS}
    if run:
        atomic_write_text(run_info_path(path), json.dumps(run, indent=1, sort_keys=True) + "\n")
    atomic_write_text(path, record_text(body))
    return path


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A record, with its run measurements (``<method>.run``) when they are beside it."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"unreadable result record: {e}", path=str(path)) from e
    if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
        schema = record.get("schema") if isinstance(record, dict) else None
        raise DataError(f"not a result record (schema {schema!r})",
                        path=str(path), rule=f"schema is {RECORD_SCHEMA}")
    run_file = run_info_path(path)
    if run_file.is_file():
        try:
            run = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            run = {}
        if isinstance(run, dict):
            record.update({k: run[k] for k in RUN_KEYS if k in run})
    return record


def load_records(results_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Every record under ``results_dir``, sorted by path (deterministic)."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    return [(p, read_record(p)) for p in sorted(root.rglob("*.json"))]


def method_figures(method: Any, warn=print) -> dict[str, float]:
    """The finite numbers of a method's ``extra_`` dict (recorded as list metrics).

    Why: ``extra_`` is the method's own attribute; anything else in it (a list, a string, a
    non-dict) is left out with a warning instead of crashing the run.
    """
    extra = getattr(method, "extra_", None)
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        warn(f"warning: {type(method).__name__}.extra_ is a {type(extra).__name__}, not a dict "
             "of numbers; not recorded")
        return {}
    out, dropped = {}, []
    for key, value in extra.items():
        if (isinstance(key, str) and isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, bool) and np.isfinite(value)):
            out[key] = float(value)
        else:
            dropped.append(str(key))
    if dropped:
        warn(f"warning: {type(method).__name__}.extra_ entries {dropped} are not finite "
             "numbers; not recorded")
    return out


def record_split_key(record: dict[str, Any]) -> tuple[str, str | None]:
    """What a record's numbers are comparable by: (its split's track fingerprint, its data
    set's checksum, ``dataset.files_sha256``)."""
    return (str(record["split"]["fingerprint"]), record["dataset"].get("files_sha256"))


def most_common_key(keys: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    counts: dict[tuple[str, str | None], int] = defaultdict(int)
    for key in keys:
        counts[key] += 1
    return sorted(counts, key=lambda k: (-counts[k], k[0], str(k[1])))[0]


def table_split(results_dir: str | os.PathLike, dataset: str, protocol: str, track: str
                ) -> tuple[str, str | None] | None:
    """(track fingerprint, data set checksum) of the existing table for (dataset, protocol,
    track), if any: the pair most of its records share, as :func:`build_tables` picks it."""
    keys = [record_split_key(r) for _, r in load_records(results_dir)
            if (r["dataset"]["name"], r["split"]["protocol"], r["track"]) == (dataset, protocol,
                                                                               track)]
    return most_common_key(keys) if keys else None


def table_fingerprint(results_dir: str | os.PathLike, dataset: str, protocol: str,
                      track: str) -> str | None:
    """The split fingerprint of the existing table for (dataset, protocol, track), if any."""
    key = table_split(results_dir, dataset, protocol, track)
    return None if key is None else key[0]
