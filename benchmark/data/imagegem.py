"""Import the ImageGem release into the gembench schema.

ImageGem (arXiv 2510.18433) ships metadata only, as two Hugging Face datasets:
``MAPS-research/ImageGem-images`` (29 columns, one row per (image, LoRA version)
pair) and ``MAPS-research/ImageGem-models`` (45 columns, one row per model file).

Accepted layouts of ``src`` (each table is looked up on its own, in this order):

1. One folder per table, as the Hugging Face hub or ``datasets`` writes it::

       src/ImageGem-images/**/*.parquet   e.g. data/train-00000-of-00012.parquet
       src/ImageGem-models/**/*.parquet

   e.g. ``huggingface-cli download MAPS-research/ImageGem-images --repo-type
   dataset --local-dir src/ImageGem-images``. A folder without parquet files may
   hold the Arrow shards of ``Dataset.save_to_disk`` (``**/*.arrow``) instead.
   Shards are read in sorted path order; hidden folders (``.cache``) and the
   ``cache-*.arrow`` files of the ``datasets`` cache are skipped.
2. A local export: ``src/images.parquet`` + ``src/models.parquet``, or
   ``src/images.csv`` + ``src/models.csv`` (comma-separated, header row, quoted
   as pandas writes it).

Every file must carry all the release's columns (:data:`IMAGES_COLUMNS`,
:data:`MODELS_COLUMNS`); only the ones converted are read (column projection).
Row numbers in errors count data rows of that file from 0 (header excluded).

Mapping (what each derived table holds and why):

- ``loras``: one row per ``modelVersionId`` (a LoRA version is what a user picks
  when generating). With several file rows per version the ``primary`` one is
  kept, else the first; ``primary_only`` drops versions with no primary file.
- ``images``: one row per ``imageId``; ``lora_ids`` lists its versions in file
  order. Attributes come from the image's first row.
- ``users``: every ``userHash`` of a kept image or a kept LoRA's uploader.
- ``interactions``: ``generate`` (user -> LoRA, one per (user, LoRA), timestamp =
  the earliest ``createdAt``, weight = number of images), ``upload`` (uploader
  -> LoRA at ``publishedAt``, weight 1) and ``create`` (user -> image at
  ``createdAt``, weight 1).

Decisions, each counted in ``dataset.json`` ``meta["dropped"]``:

- A ``modelVersionId`` used by images but absent from the models table has no
  uploader, base model or tags, and an interaction with it could not be resolved
  to a ``loras`` row: the reference is dropped (``image_lora_refs_unknown_lora``,
  distinct ids in ``unknown_loras``). LoRAs removed by ``primary_only`` or
  ``base_models`` are dropped from images the same way.
- An image left with no kept LoRA is dropped with its ``create`` interaction
  (``images_without_kept_lora``): every image of the data set references at
  least one row of ``loras``.
- Rows without an ``imageId`` or ``userHash``, interactions without a timestamp
  (null ``createdAt`` / ``publishedAt``) and duplicate (image, LoRA) rows are
  dropped and counted. Null dates are allowed; unparseable ones are errors.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from benchmark.core.io import sha256_file
from benchmark.data.imagegem_values import CONVERTERS, KINDS
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.errors import DataError
from benchmark.schema import TIMESTAMP, schema_of

#: the 29 columns of ``MAPS-research/ImageGem-images`` (SEEDS.md)
IMAGES_COLUMNS: tuple[str, ...] = (
    "imageId", "modelVersionId", "postId", "url", "hash", "nsfw", "browsingLevel", "type",
    "height", "width", "seed", "steps", "prompt", "negativePrompt", "sampler", "cfgScale",
    "clipSkip", "hiresUpscale", "hiresUpscaler", "denoisingStrength", "createdAt", "comfy",
    "cryCount", "laughCount", "likeCount", "dislikeCount", "heartCount", "commentCount",
    "userHash",
)

#: the 45 columns of ``MAPS-research/ImageGem-models`` (SEEDS.md)
MODELS_COLUMNS: tuple[str, ...] = (
    "modelId", "modelName", "modelVersionId", "modelVersionName", "fileId", "fileName",
    "modelDescription", "allowNoCredit", "allowCommercialUse", "allowDerivatives",
    "allowDifferentLicense", "modelType", "minor", "poi", "modelNsfwLevel", "cosmetic", "tags",
    "publishedAt", "baseModel", "baseModelType", "availability", "modelVersionNsfwLevel",
    "modelVersionDescription", "trainedWords", "sizeKB", "fileType", "fp", "format",
    "pickleScanResult", "pickleScanMessage", "virusScanResult", "scannedAt", "hashAutoV1",
    "hashAutoV2", "hashSHA256", "hashCRC32", "hashBLAKE3", "downloadUrl", "primary",
    "downloadCount", "ratingCount", "rating", "thumbsUpCount", "thumbsDownCount", "userHash",
)

IMAGES_TABLE = "ImageGem-images"
MODELS_TABLE = "ImageGem-models"
HF_REPOS = ("MAPS-research/ImageGem-images", "MAPS-research/ImageGem-models")

LAYOUTS = (
    "src/ImageGem-images/**/*.parquet and src/ImageGem-models/**/*.parquet "
    "(Hugging Face hub layout; .arrow shards of datasets' save_to_disk also accepted)",
    "src/images.parquet and src/models.parquet",
    "src/images.csv and src/models.csv",
)
_LAYOUT_RULE = "accepted layouts: " + "; ".join(LAYOUTS)

#: columns read from each table: source name -> (schema name, kind of value)
_IMAGE_FIELDS: dict[str, tuple[str, str]] = {
    "imageId": ("image_id", "id"),
    "modelVersionId": ("lora_id", "id"),
    "userHash": ("user_id", "id"),
    "prompt": ("prompt", "str"),
    "createdAt": ("created_at", "date"),
    "url": ("url", "str"),
    "nsfw": ("nsfw", "label"),
    "likeCount": ("like_count", "int"),
    "heartCount": ("heart_count", "int"),
}
_MODEL_FIELDS: dict[str, tuple[str, str]] = {
    "modelVersionId": ("lora_id", "id"),
    "userHash": ("creator_id", "id"),
    "baseModel": ("base_model", "str"),
    "tags": ("tags", "list"),
    "publishedAt": ("created_at", "date"),
    "modelId": ("model_id", "id"),
    "modelName": ("name", "str"),
    "modelVersionName": ("version_name", "str"),
    "modelType": ("model_type", "str"),
    "trainedWords": ("trained_words", "list"),
    "fileId": ("file_id", "id"),
    "downloadCount": ("download_count", "int"),
    "ratingCount": ("rating_count", "int"),
    "rating": ("rating", "float"),
    "thumbsUpCount": ("thumbs_up_count", "int"),
    "primary": ("primary", "flag"),
}

# --------------------------------------------------------------------------- public API
def import_imagegem(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    primary_only: bool = False,
    base_models: list[str] | None = None,
    exclude_own_loras: bool = False,
    progress: bool = True,
) -> Dataset:
    """Convert the ImageGem release under ``src`` into a data set folder ``out``.

    ``primary_only`` drops LoRA versions with no primary file; ``base_models``
    keeps only LoRAs with those exact ``baseModel`` values (and the images and
    interactions that use them); ``exclude_own_loras`` drops ``generate`` rows
    where the user uploaded the LoRA, so the track is not won by "you like what
    you made". See the module docstring for layouts and decisions.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError("not a folder", path=str(src), rule=_LAYOUT_RULE)
    sources = {which: _locate(src, which) for which in ("images", "models")}
    models = _read_source(sources["models"], MODELS_COLUMNS, _MODEL_FIELDS, progress)
    images = _read_source(sources["images"], IMAGES_COLUMNS, _IMAGE_FIELDS, progress)

    dropped: dict[str, int] = {}
    known_ids, loras = _derive_loras(models, primary_only, base_models, dropped)
    images_tab, pairs = _derive_images(images, known_ids, loras, dropped)
    interactions = _derive_interactions(pairs, loras, images_tab, exclude_own_loras, dropped)
    users = _derive_users(images_tab, loras)

    kinds = pc.value_counts(interactions["kind"]).to_pylist()
    meta: dict[str, Any] = {
        "name": "imagegem",
        "source": {
            "kind": "imagegem",
            "hf_datasets": list(HF_REPOS),
            "path": str(src),
            "layout": {k: s.describe() for k, s in sources.items()},
            "files": {
                str(f.relative_to(src)): {
                    "rows": sources[k].rows[i],
                    "bytes": f.stat().st_size,
                    "sha256": sha256_file(f),
                }
                for k in sources
                for i, f in enumerate(sources[k].files)
            },
        },
        "options": {
            "primary_only": primary_only,
            "base_models": None if base_models is None else list(base_models),
            "exclude_own_loras": exclude_own_loras,
        },
        "counts": {
            "image_rows": images.num_rows,
            "model_rows": models.num_rows,
            "interactions": {d["values"]: d["counts"] for d in kinds},
        },
        "dropped": dropped,
    }
    with DatasetWriter(out, meta) as writer:
        writer.write_table("users", users, schema_of("users"))
        writer.write_table("loras", loras, schema_of("loras", loras.schema))
        writer.write_table("images", images_tab, schema_of("images", images_tab.schema))
        writer.write_table("interactions", interactions, schema_of("interactions"))
    return Dataset(out)


# --------------------------------------------------------------------------- locating files
@dataclass
class _Source:
    table: str
    fmt: str
    files: list[Path]
    rows: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return f"{len(self.files)} {self.fmt} file(s)"


def _locate(src: Path, which: str) -> _Source:
    """Find one table of the release under ``src`` in one of the accepted layouts."""
    table = IMAGES_TABLE if which == "images" else MODELS_TABLE
    folder = src / table
    if folder.is_dir():
        for fmt in ("parquet", "arrow"):
            files = _shards(folder, f".{fmt}")
            if files:
                return _Source(table, fmt, files)
        raise DataError(
            f"the {table} folder holds no .parquet or .arrow files",
            path=str(folder),
            rule=_LAYOUT_RULE,
        )
    for fmt in ("parquet", "csv"):
        path = src / f"{which}.{fmt}"
        if path.is_file():
            return _Source(table, fmt, [path])
    raise DataError(f"no {table} table found", path=str(src), rule=_LAYOUT_RULE)


def _shards(folder: Path, ext: str) -> list[Path]:
    """Data files under ``folder``, skipping hidden folders and ``datasets`` cache files."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            Path(root) / f
            for f in files
            if f.endswith(ext) and not f.startswith((".", "cache-"))
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


# --------------------------------------------------------------------------- reading files
def _read_source(
    source: _Source,
    expected: Sequence[str],
    fields: dict[str, tuple[str, str]],
    progress: bool,
) -> pa.Table:
    """Read, check and convert every file of one table, then stack them."""
    parts = []
    for path in tqdm(source.files, desc=f"reading {source.table}", unit="file",
                     disable=not progress):
        raw = _read_file(path, source, expected, fields)
        parts.append(
            pa.table(
                {out: CONVERTERS[kind](raw.column(col), path, col)
                 for col, (out, kind) in fields.items()}
            )
        )
        source.rows.append(raw.num_rows)
    return _concat(parts, source)


def _read_file(
    path: Path, source: _Source, expected: Sequence[str], fields: dict[str, tuple[str, str]]
) -> pa.Table:
    """Check one file's columns and types, then read only the ``fields`` columns."""
    what = f"not a readable {source.fmt} file"
    try:
        if source.fmt == "parquet":
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
        elif source.fmt == "arrow":
            reader = _open_arrow(path)
            schema = reader.schema
        else:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            schema = pa.schema([(name, pa.string()) for name in dict.fromkeys(header)])
    except (pa.ArrowException, OSError, ValueError, csv.Error) as e:
        raise DataError(f"{what}: {e}", path=str(path), rule=f"{source.table} table") from e

    missing = [c for c in expected if c not in schema.names]
    if missing:
        raise DataError(
            f"missing columns {missing}",
            path=str(path),
            rule=f"{source.table} has the release's {len(expected)} columns: {', '.join(expected)}",
        )
    for col, (_, kind) in fields.items():
        typ = schema.field(col).type
        label, accepts = KINDS[kind]
        if not accepts(typ):
            raise DataError(
                f"column {col!r} has type {typ}, expected {label}",
                path=str(path),
                rule=f"column types of {source.table}",
            )
    columns = list(fields)
    try:
        if source.fmt == "parquet":
            return pf.read(columns=columns)
        if source.fmt == "arrow":
            return reader.read_all().select(columns)
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={c: pa.string() for c in columns},
                null_values=[""],  # a prompt "NA" is text, not a missing value
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{what}: {e}", path=str(path), rule=f"{source.table} table") from e


def _open_arrow(path: Path) -> pa.ipc.RecordBatchStreamReader | pa.ipc.RecordBatchFileReader:
    """``datasets`` writes Arrow IPC streams; plain Arrow files are accepted too."""
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(str(path)))


def _concat(parts: list[pa.Table], source: _Source) -> pa.Table:
    """Stack converted shards; columns whose types differ between shards become strings."""
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        names = [n for n in parts[0].column_names
                 if len({p.schema.field(n).type for p in parts}) > 1]
        fixed = []
        for part in parts:
            for name in names:
                i = part.schema.get_field_index(name)
                part = part.set_column(i, name, pc.cast(part[name], pa.string()))
            fixed.append(part)
        return pa.concat_tables(fixed)


# --------------------------------------------------------------------------- derivation
def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean arrow result as a numpy mask, nulls counted as False."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _derive_loras(
    models: pa.Table,
    primary_only: bool,
    base_models: list[str] | None,
    dropped: dict[str, int],
) -> tuple[pa.Array, pa.Table]:
    """One row per version (primary file, else the first), then the filters.

    Returns every version id of the release (to tell unknown LoRAs from
    filtered ones) and the kept ``loras`` table in first-appearance order.
    """
    valid = _mask(pc.is_valid(models["lora_id"]))
    dropped["model_rows_without_version_id"] = int((~valid).sum())
    models = models.filter(pa.array(valid))
    codes = pc.dictionary_encode(models["lora_id"].combine_chunks()).indices.to_numpy()
    primary = _mask(models["primary"])
    # per version: primary rows first, then file order
    order = np.lexsort((np.arange(len(codes)), ~primary, codes))
    first = np.r_[True, codes[order][1:] != codes[order][:-1]] if len(order) else order
    chosen = order[first.astype(bool)]
    dropped["duplicate_file_rows"] = int(len(codes) - len(chosen))
    has_primary = np.bincount(codes, weights=primary, minlength=len(chosen)) > 0
    table = models.take(pa.array(chosen))
    known_ids = table["lora_id"].combine_chunks()

    keep = np.ones(table.num_rows, dtype=bool)
    if primary_only:
        dropped["loras_non_primary"] = int((keep & ~has_primary).sum())
        keep &= has_primary
    if base_models is not None:
        wanted = pa.array([str(b) for b in base_models], pa.string())
        present = set(pc.unique(table["base_model"]).to_pylist())
        if not present.intersection(wanted.to_pylist()):
            raise DataError(
                f"no LoRA has base model {wanted.to_pylist()}",
                path=MODELS_TABLE,
                rule=f"base_models are exact baseModel values: {sorted(map(str, present))}",
            )
        in_set = _mask(pc.is_in(table["base_model"], value_set=wanted))
        dropped["loras_other_base_model"] = int((keep & ~in_set).sum())
        keep &= in_set
    return known_ids, table.filter(pa.array(keep)).drop_columns(["primary"])


def _derive_images(
    images: pa.Table, known_ids: pa.Array, loras: pa.Table, dropped: dict[str, int]
) -> tuple[pa.Table, pa.Table]:
    """The ``images`` table (one row per image) and its deduplicated (image, LoRA) pairs."""
    valid = _mask(pc.and_(pc.is_valid(images["image_id"]), pc.is_valid(images["user_id"])))
    dropped["image_rows_without_image_or_user"] = int((~valid).sum())
    images = images.filter(pa.array(valid))

    lora = images["lora_id"].combine_chunks()
    has_lora = _mask(pc.is_valid(lora))
    known = _mask(pc.is_in(lora, value_set=known_ids))
    kept = _mask(pc.is_in(lora, value_set=loras["lora_id"].combine_chunks()))
    unknown = has_lora & ~known
    dropped["image_rows_without_lora"] = int((~has_lora).sum())
    dropped["image_lora_refs_unknown_lora"] = int(unknown.sum())
    dropped["unknown_loras"] = len(pc.unique(lora.filter(pa.array(unknown))))
    dropped["image_lora_refs_filtered_lora"] = int((known & ~kept).sum())

    icode = pc.dictionary_encode(images["image_id"].combine_chunks()).indices.to_numpy()
    lcode = pc.dictionary_encode(lora).indices.fill_null(0).to_numpy()
    n_images = int(icode.max()) + 1 if len(icode) else 0
    _, first_row = np.unique(icode, return_index=True)  # codes follow first appearance

    rows = np.flatnonzero(kept)
    key = icode[rows].astype(np.int64) * (int(lcode.max(initial=0)) + 1) + lcode[rows]
    _, first_pair = np.unique(key, return_index=True)
    rows = rows[np.sort(first_pair)]
    dropped["duplicate_image_lora_rows"] = int(kept.sum() - len(rows))

    used = np.zeros(n_images, dtype=bool)
    used[icode[rows]] = True
    dropped["images_without_kept_lora"] = int((~used).sum())
    position = np.cumsum(used) - 1  # kept image code -> its row in the images table
    pos = position[icode[rows]]
    order = np.argsort(pos, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(pos, minlength=int(used.sum())))])
    lora_ids = pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), lora.take(pa.array(rows[order]))
    )
    is_first = np.zeros(images.num_rows, dtype=bool)
    is_first[first_row[used]] = True  # ascending: filtering keeps first-appearance order
    table = images.filter(pa.array(is_first)).drop_columns(["lora_id"]).combine_chunks()
    table = table.append_column("lora_ids", lora_ids)

    # each pair takes the image's user and date from the image's first row
    head = table.select(["image_id", "user_id", "created_at"]).take(pa.array(pos))
    pairs = head.append_column("lora_id", lora.take(pa.array(rows)))
    return table, pairs


def _derive_interactions(
    pairs: pa.Table,
    loras: pa.Table,
    images: pa.Table,
    exclude_own_loras: bool,
    dropped: dict[str, int],
) -> pa.Table:
    """generate (first use, weight = images), upload and create, sorted by time."""
    gen = pairs.group_by(["user_id", "lora_id"], use_threads=False).aggregate(
        [("created_at", "min"), ("image_id", "count")]
    )
    if exclude_own_loras:
        idx = pc.index_in(gen["lora_id"], value_set=loras["lora_id"].combine_chunks())
        creator = loras["creator_id"].combine_chunks().take(idx)
        own = _mask(pc.equal(creator, gen["user_id"]))
        dropped["generate_own_lora"] = int(own.sum())
        gen = gen.filter(pa.array(~own))
    parts = [
        _interactions(gen["user_id"], gen["lora_id"], "lora", "generate",
                      gen["created_at_min"], pc.cast(gen["image_id_count"], pa.float32()),
                      dropped),
        _interactions(loras["creator_id"], loras["lora_id"], "lora", "upload",
                      loras["created_at"], None, dropped),
        _interactions(images["user_id"], images["image_id"], "image", "create",
                      images["created_at"], None, dropped),
    ]
    table = pa.concat_tables(parts).combine_chunks()
    # the parts are in a deterministic order and arrow's sort is stable
    return table.sort_by([("timestamp", "ascending"), ("kind", "ascending")])


def _interactions(
    user: pa.ChunkedArray,
    item: pa.ChunkedArray,
    item_kind: str,
    kind: str,
    timestamp: pa.ChunkedArray,
    weight: pa.ChunkedArray | None,
    dropped: dict[str, int],
) -> pa.Table:
    n = len(user)
    table = pa.table(
        {
            "user_id": pc.cast(user, pa.string()),
            "item_id": pc.cast(item, pa.string()),
            "item_kind": pa.repeat(pa.scalar(item_kind, pa.string()), n),
            "kind": pa.repeat(pa.scalar(kind, pa.string()), n),
            "timestamp": pc.cast(timestamp, TIMESTAMP),
            "weight": weight if weight is not None else pa.repeat(pa.scalar(1.0, pa.float32()), n),
        },
        schema=schema_of("interactions"),
    )
    no_user = ~_mask(pc.is_valid(table["user_id"]))
    no_time = ~_mask(pc.is_valid(table["timestamp"])) & ~no_user
    if no_user.any():
        dropped[f"{kind}_without_user"] = int(no_user.sum())
    dropped[f"{kind}_without_timestamp"] = int(no_time.sum())
    return table.filter(pa.array(~(no_user | no_time)))


def _derive_users(images: pa.Table, loras: pa.Table) -> pa.Table:
    """Everyone who made a kept image or uploaded a kept LoRA, sorted."""
    ids = pa.chunked_array(images["user_id"].chunks + loras["creator_id"].chunks, pa.string())
    ids = pc.unique(ids.drop_null())
    return pa.table({"user_id": ids.take(pc.array_sort_indices(ids))})
