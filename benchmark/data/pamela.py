"""Import PAMELA (``bethgelab/PAMELA``, arXiv 2604.07427) personal ratings into the schema.

PAMELA: 69,904 aesthetic ratings of 5,077 generated images by 199 participants, in five
splits: ``train`` (50,222), ``val_seen`` (6,551), ``val_unseen`` (926), ``test_seen``
(9,735), ``test_unseen`` (2,470); ``*_unseen`` users never occur in ``train``.

Accepted layouts of ``src`` (the Hugging Face repo as downloaded, or its zip)::

    src/annotations/pamela_<split>.json            (+ src/images/*.png, not read)
    src/PAMELA/annotations/pamela_<split>.json
    src.zip  holding  [PAMELA/]annotations/pamela_<split>.json

Each JSON file is an array of rating records (one object per rating). Keys read:

- ``image_path`` (``./images/<name>.png``; the image id is the file stem) and
  ``image_metadata`` (an object; its scalar entries become ``images`` columns, ``prompt``
  the schema's prompt) — these two are confirmed by code that reads the release;
- the participant id: the first present of :data:`USER_KEYS`;
- the rating: the first present of :data:`RATING_KEYS`;
- demographics (optional): an object under one of :data:`DEMOGRAPHIC_KEYS`, or top-level
  ``age`` / ``gender`` / ``nationality``.

The user and rating key names and the rating scale could not be read from the dataset card
(see datasets/pamela.md): the loader accepts the listed aliases, records which were used in
``dataset.json`` (``source.keys``), and checks ``rating_scale`` when it is given.

Output: ``ratings(user_id, image_id, rating, split)``; ``users`` with demographics;
``images`` (no creator, no LoRAs, ``created_at`` null); an empty ``loras`` table; and
``rate`` interactions for the *train* rows only (weight = rating), so no held-out rating
leaks into a history. Exact duplicate (user, image) ratings keep the first and are counted
in ``meta["dropped"]``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmark.core.io import sha256_file
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.errors import DataError
from benchmark.progress import progress_bar
from benchmark.schema import schema_of

SPLITS = ("train", "val_seen", "val_unseen", "test_seen", "test_unseen")
HF_REPO = "bethgelab/PAMELA"
USER_KEYS = ("participant_id", "user_id", "worker_id", "participant", "rater_id")
RATING_KEYS = ("rating", "score", "aesthetic_rating", "aesthetic_score")
DEMOGRAPHIC_KEYS = ("participant_metadata", "user_metadata", "demographics")
DEMOGRAPHIC_FIELDS = ("age", "gender", "nationality")
LAYOUT_RULE = ("PAMELA layout: [PAMELA/]annotations/pamela_<split>.json for splits "
               + ", ".join(SPLITS) + " (a folder or a .zip)")


def _locate(src: Path) -> dict[str, tuple[str, Any]]:
    """split -> (label for errors, a zero-argument reader returning the JSON bytes)."""
    found: dict[str, tuple[str, Any]] = {}
    if src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            names = set(z.namelist())
        for split in SPLITS:
            for prefix in ("annotations/", "PAMELA/annotations/"):
                member = f"{prefix}pamela_{split}.json"
                if member in names:
                    found[split] = (f"{src}!{member}",
                                    lambda m=member: zipfile.ZipFile(src).read(m))
                    break
    elif src.is_dir():
        for split in SPLITS:
            for folder in (src / "annotations", src / "PAMELA" / "annotations"):
                path = folder / f"pamela_{split}.json"
                if path.is_file():
                    found[split] = (str(path), path.read_bytes)
                    break
    else:
        raise DataError("not a folder or a zip file", path=str(src), rule=LAYOUT_RULE)
    missing = [s for s in SPLITS if s not in found]
    if missing:
        raise DataError(f"no annotation file for splits {missing}", path=str(src),
                        rule=LAYOUT_RULE)
    return found


def _first_key(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in record), None)


def _read_split(label: str, data: bytes, split: str, rating_scale: tuple[float, float] | None,
                used: dict[str, str]) -> list[dict[str, Any]]:
    """Validate one annotation file and flatten its records."""
    try:
        records = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"malformed JSON: {e}", path=label, rule=LAYOUT_RULE) from e
    if not isinstance(records, list):
        raise DataError(f"top level is a {type(records).__name__}, not an array", path=label,
                        rule="an annotation file is a JSON array of rating records")
    rows = []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise DataError("record is not an object", path=label, row=i,
                            rule="an annotation file is a JSON array of rating records")
        ukey = _first_key(rec, USER_KEYS)
        rkey = _first_key(rec, RATING_KEYS)
        if ukey is None or rec[ukey] in (None, ""):
            raise DataError("no participant id", path=label, row=i,
                            rule=f"a record has one of {list(USER_KEYS)}")
        if rkey is None:
            raise DataError("no rating", path=label, row=i,
                            rule=f"a record has one of {list(RATING_KEYS)}")
        image_path = rec.get("image_path")
        if not isinstance(image_path, str) or not image_path.strip():
            raise DataError("no image_path", path=label, row=i,
                            rule="a record has image_path './images/<name>.png'")
        value = rec[rkey]
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise DataError(f"rating {value!r} is not a number", path=label, row=i,
                            rule="ratings are numbers")
        try:
            rating = float(value)
        except ValueError:
            raise DataError(f"rating {value!r} is not a number", path=label, row=i,
                            rule="ratings are numbers") from None
        if not np.isfinite(rating) or (rating_scale is not None and not
                                       rating_scale[0] <= rating <= rating_scale[1]):
            raise DataError(f"rating {value!r} is outside the scale", path=label, row=i,
                            rule=f"ratings lie in {list(rating_scale or ('-inf', 'inf'))}")
        meta = rec.get("image_metadata") or {}
        if not isinstance(meta, dict):
            raise DataError("image_metadata is not an object", path=label, row=i,
                            rule="image_metadata is a JSON object")
        dkey = _first_key(rec, DEMOGRAPHIC_KEYS)
        demo = rec.get(dkey) if dkey else {f: rec[f] for f in DEMOGRAPHIC_FIELDS if f in rec}
        used.setdefault("user", ukey)
        used.setdefault("rating", rkey)
        if dkey:
            used.setdefault("demographics", dkey)
        rows.append({
            "user_id": str(rec[ukey]),
            "image_id": Path(image_path.replace("\\", "/")).stem,
            "rating": rating,
            "split": split,
            "image_path": image_path.removeprefix("./"),
            "_image_meta": meta,
            "_demo": demo if isinstance(demo, dict) else {},
        })
    return rows


def _scalar_columns(dicts: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Scalar entries of each dict as string columns (null where absent); others dropped."""
    keys = sorted({k for d in dicts for k, v in d.items()
                   if k not in skip and (v is None or isinstance(v, str | int | float | bool))})
    return pd.DataFrame({k: [None if d.get(k) is None else str(d[k]) for d in dicts]
                         for k in keys}, dtype=object)


def import_pamela(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rating_scale: tuple[float, float] | None = None,
    progress: bool = True,
) -> Dataset:
    """Convert a local copy of PAMELA under ``src`` into a data set folder ``out``.

    ``rating_scale=(lo, hi)`` makes a rating outside ``[lo, hi]`` an error. The original split
    of every rating is kept in ``ratings.split`` (use
    :func:`benchmark.tracks.rating.track.rating_split_from_column` to evaluate on it).
    """
    src = Path(src)
    files = _locate(src)
    rows: list[dict[str, Any]] = []
    used: dict[str, str] = {}
    with progress_bar(total=len(SPLITS), desc="reading PAMELA", unit="file",
                      enabled=progress) as bar:
        for split in SPLITS:
            label, read = files[split]
            rows += _read_split(label, read(), split, rating_scale, used)
            bar.update()
    if not rows:
        raise DataError("no rating records", path=str(src), rule=LAYOUT_RULE)
    frame = pd.DataFrame(rows)
    dup = frame.duplicated(["user_id", "image_id"], keep="first").to_numpy()
    frame = frame[~dup].reset_index(drop=True)

    ratings = frame[["user_id", "image_id", "rating", "split"]].copy()
    ratings["rating"] = ratings["rating"].astype(np.float32)
    first_img = frame.drop_duplicates("image_id", keep="first")
    img_meta = _scalar_columns(first_img["_image_meta"].tolist(), skip=("prompt",))
    img_meta.columns = [f"meta_{c}" for c in img_meta.columns]
    images = pd.DataFrame({
        "image_id": first_img["image_id"].to_numpy(object),
        "user_id": pd.Series([None] * len(first_img), dtype=object),
        "lora_ids": [[] for _ in range(len(first_img))],
        "prompt": [None if m.get("prompt") is None else str(m["prompt"])
                   for m in first_img["_image_meta"]],
        "created_at": pd.Series([pd.NaT] * len(first_img), dtype="datetime64[s]"),
        "image_path": first_img["image_path"].to_numpy(object),
    })
    images = pd.concat([images, img_meta.reset_index(drop=True)], axis=1)
    images = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    first_user = frame.drop_duplicates("user_id", keep="first")
    users = pd.concat([pd.DataFrame({"user_id": first_user["user_id"].to_numpy(object)}),
                       _scalar_columns(first_user["_demo"].tolist()).reset_index(drop=True)],
                      axis=1).sort_values("user_id", kind="stable").reset_index(drop=True)
    train = ratings[ratings["split"] == "train"]
    inter = pd.DataFrame({
        "user_id": train["user_id"].to_numpy(object),
        "item_id": train["image_id"].to_numpy(object),
        "item_kind": "image", "kind": "rate",
        "timestamp": pd.Series([pd.NaT] * len(train), dtype="datetime64[s]"),
        "weight": train["rating"].to_numpy(np.float32),
    })
    train_users = set(train["user_id"])
    unseen_users = set(ratings.loc[ratings["split"].str.endswith("_unseen"), "user_id"])
    loras = schema_of("loras").empty_table()
    meta: dict[str, Any] = {
        "name": "pamela",
        "source": {
            "kind": "pamela", "hf_dataset": HF_REPO, "path": str(src), "keys": used,
            "files": {label: {"sha256": sha256_file(label) if Path(label).is_file()
                              else None} for label, _ in files.values()},
        },
        "options": {"rating_scale": None if rating_scale is None else list(rating_scale)},
        "counts": {
            "ratings": int(len(ratings)),
            "by_split": {s: int((ratings["split"] == s).sum()) for s in SPLITS},
            "users": int(len(users)), "images": int(len(images)),
            "rating_min": float(ratings["rating"].min()),
            "rating_max": float(ratings["rating"].max()),
            "unseen_users_also_in_train": len(unseen_users & train_users),
        },
        "dropped": {"duplicate_ratings": int(dup.sum())},
    }
    rating_schema = schema_of("ratings", pa.schema([("split", pa.string())]))
    image_schema = schema_of("images", _strings(images.columns))
    user_schema = schema_of("users", _strings(users.columns))
    with DatasetWriter(out, meta) as writer:
        writer.write_table("users", users, user_schema)
        writer.write_table("loras", loras, schema_of("loras"))
        writer.write_table("images", _typed(images, image_schema), image_schema)
        writer.write_table("interactions", inter, schema_of("interactions"))
        writer.write_table("ratings", ratings, rating_schema)
    return Dataset(out)


def _strings(columns: pd.Index) -> pa.Schema:
    """Extra columns are all strings (metadata and demographics are kept as text)."""
    return pa.schema([(str(c), pa.string()) for c in columns])


def _typed(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A frame as an arrow table of ``schema`` (null-only columns get the schema's type)."""
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
