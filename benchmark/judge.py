"""Judges: fitted preference models saved to a folder and loaded back (``gembench judge``).

The generative track scores its edits with a judge, and a judge must be the *same* model
every time, so it is fitted once and saved rather than refitted. A judge folder holds::

    judge.json   method (registered name and ``module:Class``), its parameters, the data
                 set and preference split it was fitted on, and the state manifest
    state.npz    the learned arrays (attributes ending in ``_``), no pickle

Learned state is what scikit-learn style methods keep in attributes ending in ``_``:
numpy arrays, pandas indexes of ids, numbers, strings, lists of numbers. An array that is a
memory map of the data set's own files (an embedding store) is stored as a reference to that
file, checked by size on load, instead of being copied. A method with other state (a torch
module) implements ``get_state() -> dict`` and ``set_state(dict)`` with arrays and JSON values.
Nothing is unpickled on load (``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.io import atomic_write_text
from benchmark.errors import DataError
from benchmark.tracks.preference.track import dataset_info
from benchmark.views import stored_file

JUDGE_SCHEMA = "gembench.judge/1"


def _target(method: Any) -> str:
    cls = type(method)
    return f"{cls.__module__}:{cls.__qualname__}"


def _split_state(method: Any, dataset_root: Path | None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays for state.npz, JSON manifest entry per attribute)."""
    if hasattr(method, "get_state"):
        state = dict(method.get_state())
    else:
        state = {k: v for k, v in vars(method).items()
                 if k.endswith("_") and not k.startswith("_")}
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {}
    for name, value in sorted(state.items()):
        if isinstance(value, np.memmap) and value.filename and dataset_root is not None:
            file = Path(value.filename).resolve()
            if file.is_relative_to(dataset_root.resolve()):
                manifest[name] = {"kind": "dataset_memmap",
                                  "file": str(file.relative_to(dataset_root.resolve())),
                                  "shape": list(value.shape), "dtype": str(value.dtype)}
                continue
        relative = stored_file(value) if dataset_root is not None else None
        if relative is not None:  # a training view's whole embedding store (same file)
            manifest[name] = {"kind": "dataset_memmap", "file": relative,
                              "shape": list(value.shape), "dtype": str(value.dtype)}
            continue
        if isinstance(value, pd.Index):
            arrays[name] = np.asarray(value.astype(str), dtype=str)
            manifest[name] = {"kind": "index"}
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                arrays[name] = np.asarray(value.astype(str), dtype=str)
                manifest[name] = {"kind": "object_array"}
            else:
                arrays[name] = np.asarray(value)
                manifest[name] = {"kind": "array"}
        elif isinstance(value, (bool, int, float, str, type(None))) or (
                isinstance(value, (list, tuple, dict)) and _jsonable(value)):
            manifest[name] = {"kind": "json", "value": value}
        elif isinstance(value, (np.floating, np.integer, np.bool_)):
            manifest[name] = {"kind": "json", "value": value.item()}
        else:
            raise DataError(
                f"cannot save attribute {name!r} of type {type(value).__name__}",
                rule=f"{_target(method)} keeps state the judge format does not hold; give it "
                     "get_state()/set_state() with arrays and JSON values")
    return arrays, manifest


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def save_judge(method: Any, out: str | os.PathLike, *, name: str | None = None,
               dataset: Any = None, split: Any = None, extra: dict[str, Any] | None = None
               ) -> Path:
    """Write a fitted preference method to the folder ``out`` (replaced atomically)."""
    out = Path(out)
    root = Path(dataset.path) if dataset is not None else None
    arrays, manifest = _split_state(method, root)
    params = method.get_params() if hasattr(method, "get_params") else {}
    meta = {
        "schema": JUDGE_SCHEMA,
        "method": {"name": name or str(getattr(method, "name", type(method).__name__)),
                   "target": _target(method), "params": params},
        "dataset": None if dataset is None else dataset_info(dataset, absolute=True),
        "split": None if split is None else {"fingerprint": split.fingerprint,
                                             "protocol": split.meta.get("protocol")},
        "state": manifest,
        "custom_state": hasattr(method, "get_state"),
        **(extra or {}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        np.savez(tmp / "state.npz", **arrays)
        atomic_write_text(tmp / "judge.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_judge(path: str | os.PathLike, dataset_path: str | os.PathLike | None = None,
               trust_code: bool = False) -> Any:
    """A fitted preference method from a judge folder (no refitting, no unpickling).

    ``dataset_path`` overrides where memory-mapped embeddings are read from (a moved data set).
    The method is a registered name or registered class; a judge of any other class is
    loaded only with ``trust_code`` (``--trust-code``), and only when the class has fit and
    score (``benchmark.registry.resolve_from_file``): ``judge.json`` is a file anyone can edit.
    """
    path = Path(path)
    meta_file = path / "judge.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"not a judge folder: {e}", path=str(meta_file),
                        rule="a judge folder is written by `gembench judge fit`") from e
    if meta.get("schema") != JUDGE_SCHEMA:
        raise DataError(f"unknown judge schema {meta.get('schema')!r}", path=str(meta_file),
                        rule=f"schema is {JUDGE_SCHEMA}")
    from benchmark.registry import resolve_from_file

    spec = meta.get("method") or {}
    try:
        cls = resolve_from_file(spec.get("target"), path=meta_file, name=spec.get("name"),
                                track="preference", trust_code=trust_code)
    except KeyError as e:  # a registered name that does not run on pairs
        raise DataError(str(e.args[0] if e.args else e), path=str(meta_file)) from e
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    method = cls(**{k: v for k, v in meta["method"]["params"].items() if k in accepted})
    try:
        with np.load(path / "state.npz", allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable judge state: {e}", path=str(path / "state.npz")) from e
    root = Path(dataset_path or (meta.get("dataset") or {}).get("path") or ".")
    state: dict[str, Any] = {}
    for name, entry in meta["state"].items():
        kind = entry["kind"]
        if kind == "json":
            state[name] = entry["value"]
        elif kind == "dataset_memmap":
            file = root / entry["file"]
            if not file.is_file():
                raise DataError("the judge's embeddings are missing", path=str(file),
                                rule="pass --dataset-path where the data set now lives")
            arr = np.load(file, mmap_mode="r")
            if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
                raise DataError(f"embedding file has shape {list(arr.shape)} {arr.dtype}, the "
                                f"judge was fitted on {entry['shape']} {entry['dtype']}",
                                path=str(file), rule="a judge is used with its own data set")
            state[name] = arr
        elif name not in stored:
            raise DataError(f"state.npz lacks {name!r}", path=str(path / "state.npz"))
        elif kind == "index":
            state[name] = pd.Index(stored[name].astype(object), dtype=object)
        elif kind == "object_array":
            state[name] = stored[name].astype(object)
        else:
            state[name] = stored[name]
    if meta.get("custom_state"):
        method.set_state(state)
    else:
        for name, value in state.items():
            setattr(method, name, value)
    method.judge_meta_ = meta
    return method


def score_pairs(judge: Any, pairs: pd.DataFrame) -> pd.DataFrame:
    """``d = s(u, a) - s(u, b)`` and ``p_a = sigmoid(d)`` per ``(user_id, image_a, image_b)``."""
    from scipy.special import expit

    from benchmark.tracks.preference.track import pair_scores

    missing = [c for c in ("user_id", "image_a", "image_b") if c not in pairs]
    if missing:
        raise DataError(f"pairs lack columns {missing}",
                        rule="pairs have columns user_id, image_a, image_b")
    d = pair_scores(judge, pairs)
    out = pairs.loc[:, ["user_id", "image_a", "image_b"]].copy()
    out["score_diff"] = d
    out["p_a"] = expit(d)
    return out


class EmbeddingJudge:
    """A preference model as the lora-edit track's judge: ``score(user_ids, embeddings)``.

    The track renders an edited LoRA to image embeddings that no data set has; a judge must
    score those directly, so the model needs ``score_embeddings(user_ids, embeddings)``
    (``global-reward``, ``user-embedding``, ``history-attention``, ``preference-tokens``).
    """

    def __init__(self, model: Any) -> None:
        if not hasattr(model, "score_embeddings"):
            raise DataError(f"{type(model).__name__} cannot score new embeddings",
                            rule="a lora-edit judge has score_embeddings(user_ids, embeddings)")
        self.model = model

    def score(self, user_ids: Any, embeddings: np.ndarray) -> np.ndarray:
        users = np.asarray(user_ids, dtype=object).astype(str)
        return np.asarray(self.model.score_embeddings(users, np.asarray(embeddings, np.float32)),
                          dtype=np.float64)
