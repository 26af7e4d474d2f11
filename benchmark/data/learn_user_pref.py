"""Import the Pick-a-Pic-derived records of arXiv 2508.08220 (learn-user-pref) into the schema.

*Learning User Preferences for Image Generation Model* releases, per split, a pickled pandas
DataFrame whose rows are ``user_id, reference_list (liked images), reference_list_bad
(disliked), [reference_prompt_list], image0, image1, [prompt], label0`` (label0 > 0.5: image0
preferred). Unpickling runs code from the file, so a pickle is read only with
``allow_pickle=True`` (``--allow-pickle`` on the CLI), and only once: each pickle is converted
to a parquet cache next to the output (``<out>.cache/<stem>.parquet`` + the pickle's sha256);
later imports read the cache and need no flag while the pickle is unchanged.

``src`` is one ``.pkl`` / ``.pickle`` file or a folder of them; the file stem is the split
name (``train``, ``test``, ...), kept in ``preferences.split``.

Output: ``preferences(user_id, image_a = image0, image_b = image1, label, split, label0,
prompt)`` with label 1 if label0 > 0.5, 0 if label0 < 0.5 and 0.5 (a tie) if label0 == 0.5;
``interactions`` ``like`` (each image of ``reference_list``) and ``dislike`` (each of
``reference_list_bad``), one per (user, image, kind), timestamp null, weight 1; ``images``
(every image id met, prompt where the record gives one); ``users``; an empty ``loras``.
Image ids are kept as strings; raw bytes are replaced by ``sha1:<hex>`` of the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.core.io import atomic_path, atomic_write_text, sha256_file
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.errors import DataError
from benchmark.progress import progress_bar
from benchmark.schema import schema_of

REQUIRED_COLUMNS = ("user_id", "reference_list", "reference_list_bad", "image0", "image1",
                    "label0")
OPTIONAL_COLUMNS = ("reference_prompt_list", "prompt")
PICKLE_SUFFIXES = (".pkl", ".pickle")
PICKLE_RULE = ("pickle files can run arbitrary code when read: pass allow_pickle=True "
               "(--allow-pickle) only for files from a source you trust")
ARXIV = "2508.08220"
#: interaction kinds written; ``dislike`` is not in schema.INTERACTION_KINDS (allowed extra)
KINDS = {"reference_list": "like", "reference_list_bad": "dislike"}


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix in PICKLE_SUFFIXES)
    else:
        raise DataError("no such file or folder", path=str(src),
                        rule="src is a .pkl/.pickle file or a folder of them")
    if not files or any(p.suffix not in PICKLE_SUFFIXES for p in files):
        raise DataError("no pickled pandas files (.pkl / .pickle)", path=str(src),
                        rule="src is a .pkl/.pickle file or a folder of them")
    return files


def cache_dir(out: str | os.PathLike) -> Path:
    """The parquet cache of an output folder: ``<out>.cache`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".cache")


def _image_id(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return "sha1:" + hashlib.sha1(bytes(value)).hexdigest()
    return str(value)


def _id_list(value: Any, path: Path, row: int, column: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | np.ndarray
                                                          | pd.Series):
        raise DataError(f"{column} is a {type(value).__name__}, not a list", path=str(path),
                        row=row, rule=f"{column} is a list of image ids")
    ids = [_image_id(v) for v in value]
    if any(i is None for i in ids):
        raise DataError(f"{column} holds a missing image id", path=str(path), row=row,
                        rule=f"{column} is a list of image ids")
    return ids  # type: ignore[return-value]


def _validate(frame: Any, path: Path) -> pd.DataFrame:
    """Check the unpickled object and normalise it to plain columns (ids as strings)."""
    if isinstance(frame, list):
        frame = pd.DataFrame(frame)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"unpickled a {type(frame).__name__}, not a pandas DataFrame",
                        path=str(path), rule="each file is one pickled DataFrame")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"missing columns {missing}", path=str(path),
                        rule=f"records have columns {list(REQUIRED_COLUMNS)}")
    frame = frame.reset_index(drop=True)
    label0 = pd.to_numeric(frame["label0"], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~(np.isfinite(label0) & (label0 >= 0) & (label0 <= 1)))
    if len(bad):
        raise DataError(f"label0 {frame['label0'].iloc[bad[0]]!r} is not a number in [0, 1]",
                        path=str(path), row=int(bad[0]) + 1, rule="label0 lies in [0, 1]")
    out = pd.DataFrame({"label0": label0})
    for col in ("user_id", "image0", "image1"):
        values = [_image_id(v) for v in frame[col]]
        miss = [i for i, v in enumerate(values) if v is None or v == ""]
        if miss:
            raise DataError(f"{col} is missing", path=str(path), row=miss[0] + 1,
                            rule=f"every record has a {col}")
        out[col] = pd.Series(values, dtype=object)
    same = np.flatnonzero(out["image0"].to_numpy(object) == out["image1"].to_numpy(object))
    if len(same):
        raise DataError("image0 and image1 are the same image", path=str(path),
                        row=int(same[0]) + 1, rule="a pair compares two different images")
    for col in ("reference_list", "reference_list_bad"):
        out[col] = pd.Series([_id_list(v, path, i + 1, col)
                              for i, v in enumerate(frame[col])], dtype=object)
    out["prompt"] = pd.Series([None if v is None or (isinstance(v, float) and np.isnan(v))
                               else str(v) for v in frame["prompt"]], dtype=object) \
        if "prompt" in frame else pd.Series([None] * len(frame), dtype=object)
    if "reference_prompt_list" in frame:
        out["reference_prompt_list"] = pd.Series(
            [[str(p) for p in v] if isinstance(v, list | tuple | np.ndarray) else []
             for v in frame["reference_prompt_list"]], dtype=object)
    else:
        out["reference_prompt_list"] = pd.Series([[] for _ in range(len(frame))],
                                                 dtype=object)
    return out


_CACHE_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("image0", pa.string()), ("image1", pa.string()),
    ("label0", pa.float64()), ("prompt", pa.string()),
    ("reference_list", pa.list_(pa.string())), ("reference_list_bad", pa.list_(pa.string())),
    ("reference_prompt_list", pa.list_(pa.string())),
])


def read_records(path: Path, cache: Path, allow_pickle: bool) -> tuple[pd.DataFrame, bool]:
    """One split's records: from the parquet cache when it matches the pickle's sha256,
    else by unpickling (only with ``allow_pickle``) and writing the cache. Returns the
    frame and whether the cache was used."""
    digest = sha256_file(path)
    parquet = cache / f"{path.stem}.parquet"
    stamp = cache / f"{path.stem}.json"
    if parquet.is_file() and stamp.is_file():
        try:
            ok = json.loads(stamp.read_text()).get("sha256") == digest
        except json.JSONDecodeError:
            ok = False
        if ok:
            return pd.read_parquet(parquet), True
    if not allow_pickle:
        raise DataError("refusing to unpickle (no allow_pickle / --allow-pickle given)",
                        path=str(path), rule=PICKLE_RULE)
    try:
        obj = pd.read_pickle(path)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a data error
        raise DataError(f"cannot unpickle: {type(e).__name__}: {e}", path=str(path),
                        rule="each file is one pickled pandas DataFrame") from e
    frame = _validate(obj, path)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pandas(frame[_CACHE_SCHEMA.names], schema=_CACHE_SCHEMA,
                                            preserve_index=False), tmp, compression="zstd")
    atomic_write_text(stamp, json.dumps({"source": str(path), "sha256": digest}) + "\n")
    return frame, False


def _label(label0: np.ndarray) -> np.ndarray:
    return np.where(label0 > 0.5, 1.0, np.where(label0 < 0.5, 0.0, 0.5)).astype(np.float32)


def import_learn_user_pref(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    progress: bool = True,
) -> Dataset:
    """Convert the pickled learn-user-pref release under ``src`` into a data set ``out``.

    Without ``allow_pickle`` only splits already in the parquet cache can be read; any other
    split is refused with a :class:`DataError` naming ``--allow-pickle``.
    """
    src, out = Path(src), Path(out)
    files = _sources(src)
    cache = cache_dir(out)
    parts, cached = [], {}
    with progress_bar(total=len(files), desc="reading learn-user-pref", unit="file",
                      enabled=progress) as bar:
        for path in files:
            frame, hit = read_records(path, cache, allow_pickle)
            parts.append(frame.assign(split=path.stem))
            cached[path.stem] = hit
            bar.update()
    rec = pd.concat(parts, ignore_index=True)

    prefs = pd.DataFrame({
        "user_id": rec["user_id"].to_numpy(object),
        "image_a": rec["image0"].to_numpy(object),
        "image_b": rec["image1"].to_numpy(object),
        "label": _label(rec["label0"].to_numpy(np.float64)),
        "split": rec["split"].to_numpy(object),
        "label0": rec["label0"].to_numpy(np.float32),
        "prompt": rec["prompt"].to_numpy(object),
    })
    refs = []
    for col, kind in KINDS.items():
        ex = rec[["user_id", col]].explode(col).dropna(subset=[col])
        refs.append(pd.DataFrame({"user_id": ex["user_id"].to_numpy(object),
                                  "item_id": ex[col].to_numpy(object), "kind": kind}))
    ref = pd.concat(refs, ignore_index=True).drop_duplicates(
        ["user_id", "item_id", "kind"]).sort_values(["user_id", "kind", "item_id"],
                                                    kind="stable")
    inter = pd.DataFrame({
        "user_id": ref["user_id"].to_numpy(object), "item_id": ref["item_id"].to_numpy(object),
        "item_kind": "image", "kind": ref["kind"].to_numpy(object),
        "timestamp": pd.Series([pd.NaT] * len(ref), dtype="datetime64[s]"),
        "weight": np.ones(len(ref), np.float32),
    })
    # images: pair images carry the record's prompt, references their reference prompt
    pair_imgs = pd.DataFrame({"image_id": np.concatenate([rec["image0"], rec["image1"]]),
                              "prompt": np.concatenate([rec["prompt"], rec["prompt"]])})
    aligned = rec[rec["reference_prompt_list"].map(len) == rec["reference_list"].map(len)]
    ref_imgs = pd.DataFrame({
        "image_id": aligned["reference_list"].explode().dropna().to_numpy(object),
        "prompt": aligned.loc[aligned["reference_list"].map(len) > 0,
                              "reference_prompt_list"].explode().to_numpy(object),
    }) if len(aligned) else pd.DataFrame({"image_id": [], "prompt": []})
    all_imgs = pd.concat([pair_imgs, ref_imgs,
                          pd.DataFrame({"image_id": inter["item_id"].to_numpy(object),
                                        "prompt": None})], ignore_index=True)
    all_imgs = all_imgs.sort_values("prompt", na_position="last", kind="stable")
    img = all_imgs.drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)
    images = pd.DataFrame({
        "image_id": img["image_id"].to_numpy(object),
        "user_id": pd.Series([None] * len(img), dtype=object),
        "lora_ids": [[] for _ in range(len(img))],
        "prompt": img["prompt"].to_numpy(object),
        "created_at": pd.Series([pd.NaT] * len(img), dtype="datetime64[s]"),
    })
    users = pd.DataFrame({"user_id": np.sort(pd.unique(
        np.concatenate([rec["user_id"].to_numpy(object),
                        inter["user_id"].to_numpy(object)])).astype(str)).astype(object)})
    meta: dict[str, Any] = {
        "name": "learn-user-pref",
        "source": {"kind": "learn-user-pref", "paper": f"arXiv {ARXIV}", "path": str(src),
                   "files": {p.name: {"sha256": sha256_file(p)} for p in files},
                   "cache": str(cache), "read_from_cache": cached},
        "counts": {"records": int(len(rec)),
                   "by_split": {k: int(v) for k, v in rec["split"].value_counts().items()},
                   "ties": int((prefs["label"] == 0.5).sum()),
                   "interactions": {k: int(v) for k, v in inter["kind"].value_counts().items()}},
    }
    pref_schema = schema_of("preferences", pa.schema([("split", pa.string()),
                                                      ("label0", pa.float32()),
                                                      ("prompt", pa.string())]))
    with DatasetWriter(out, meta) as writer:
        writer.write_table("users", users, schema_of("users"))
        writer.write_table("loras", schema_of("loras").empty_table(), schema_of("loras"))
        writer.write_table("images", images, schema_of("images"))
        writer.write_table("interactions", inter, schema_of("interactions"))
        writer.write_table("preferences", prefs, pref_schema)
    return Dataset(out)
