"""Import RecBole atomic files into the gembench schema.

RecBole (recbole.io) stores a data set as tab-separated "atomic files" in one
folder: ``<name>.inter`` (interactions, required), ``<name>.item`` and
``<name>.user`` (features, optional). The first line is a typed header,
``field:type`` per column, with type one of ``token`` (a string), ``float``,
``token_seq`` (space-separated strings) and ``float_seq``. There is no quoting.

Reading them lets the collaborative-filtering path be checked against RecBole
itself on the same data (e.g. MovieLens-100K). Mapping:

- ``interactions``: ``user_id:token`` -> user_id, ``item_id:token`` -> item_id,
  kind ``rate``, weight = ``rating:float`` (1 when there is no rating field),
  ``timestamp:float`` (seconds since the epoch, UTC) -> timestamp (null when
  absent); other fields are kept as extra columns.
- items become rows of ``loras`` (``item_kind="lora"``, so the lora-rec track
  applies unchanged; creator_id, base_model and created_at are null, tags come
  from the ``class`` field when there is one, else ``[]``) or of ``images``
  (``item_kind="image"``). Items listed in ``.item`` come first in file order,
  then items only seen in ``.inter`` (counted in ``meta["counts"]``).
- ``users``: ``.user`` rows, then users only seen in ``.inter``.
- the other entity table is written empty, with its schema.

Field names other than RecBole's defaults (``USER_ID_FIELD`` etc.) are given
with the ``*_field`` keywords. Row numbers in errors count data rows from 0
(header excluded); messages also give the file's line number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm import tqdm

from benchmark.core.io import sha256_file
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.errors import DataError
from benchmark.schema import ITEM_KINDS, TABLES, TIMESTAMP, schema_of

#: RecBole's field types
FIELD_TYPES = ("token", "float", "token_seq", "float_seq")
_HEADER_RULE = "RecBole atomic header: tab-separated name:type, type in " + ", ".join(FIELD_TYPES)
_FILES_RULE = "RecBole atomic files: <name>.inter (required), <name>.item, <name>.user"


def import_recbole(
    src_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    item_kind: str = "lora",
    progress: bool = True,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    time_field: str = "timestamp",
    tag_field: str | None = "class",
    seq_separator: str = " ",
) -> Dataset:
    """Convert the RecBole atomic files ``<name>.*`` in ``src_dir`` into a data set ``out``.

    ``name`` defaults to the folder's name (RecBole's own convention), or to
    the stem of the folder's only ``.inter`` file. ``item_kind`` says which
    entity table the items fill ("lora" or "image").
    """
    if item_kind not in ITEM_KINDS:
        raise ValueError(f"item_kind must be one of {sorted(ITEM_KINDS)}, got {item_kind!r}")
    src_dir = Path(src_dir)
    name, inter_path = _find_inter(src_dir, name)
    paths = {"inter": inter_path}
    for suffix in ("item", "user"):
        if (src_dir / f"{name}.{suffix}").is_file():
            paths[suffix] = src_dir / f"{name}.{suffix}"

    tables: dict[str, pa.Table] = {}
    types: dict[str, dict[str, str]] = {}
    for key, path in tqdm(paths.items(), desc=f"reading {name}", unit="file",
                          disable=not progress):
        tables[key], types[key] = read_atomic(path, seq_separator=seq_separator)

    inter = tables["inter"]
    _require(inter, types["inter"], paths["inter"], [user_field, item_field])
    for key, field in (("item", item_field), ("user", user_field)):
        if key in tables:
            _require(tables[key], types[key], paths[key], [field])
            _check_unique(tables[key], field, paths[key])

    counts: dict[str, Any] = {}
    users = _entities(tables.get("user"), inter[user_field], user_field, "user_id", "users",
                      counts)
    items = _entities(tables.get("item"), inter[item_field], item_field,
                      "lora_id" if item_kind == "lora" else "image_id", ITEM_KINDS[item_kind],
                      counts)
    item_table = _items_table(items, item_kind, tag_field, types.get("item", {}))
    other = "images" if item_kind == "lora" else "loras"
    interactions = _interactions(inter, types["inter"], item_kind, user_field, item_field,
                                 rating_field, time_field, counts)

    meta: dict[str, Any] = {
        "name": name,
        "source": {
            "kind": "recbole",
            "path": str(src_dir),
            "files": {
                p.name: {"rows": tables[k].num_rows, "bytes": p.stat().st_size,
                         "sha256": sha256_file(p), "fields": types[k]}
                for k, p in paths.items()
            },
        },
        "options": {
            "item_kind": item_kind,
            "user_field": user_field,
            "item_field": item_field,
            "rating_field": rating_field,
            "time_field": time_field,
            "tag_field": tag_field,
            "seq_separator": seq_separator,
        },
        "counts": counts,
    }
    with DatasetWriter(out, meta) as writer:
        writer.write_table("users", users, schema_of("users", users.schema))
        table_name = ITEM_KINDS[item_kind]
        writer.write_table(table_name, item_table, schema_of(table_name, item_table.schema))
        writer.write_table(other, schema_of(other).empty_table(), schema_of(other))
        writer.write_table("interactions", interactions,
                           schema_of("interactions", interactions.schema))
    return Dataset(out)


# --------------------------------------------------------------------------- reading
def read_atomic(
    path: str | os.PathLike, *, seq_separator: str = " "
) -> tuple[pa.Table, dict[str, str]]:
    """One atomic file as an arrow table typed from its header, and ``{field: type}``.

    token -> string, float -> float64, token_seq -> list<string>,
    float_seq -> list<float64>; empty values are null.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read file: {e}", path=str(path), rule=_FILES_RULE) from e
    types: dict[str, str] = {}
    for spec in header.split("\t"):
        field, sep, typ = spec.strip().rpartition(":")
        if not sep or not field or typ not in FIELD_TYPES:
            raise DataError(f"header field {spec!r} is not name:type (line 1)",
                            path=str(path), rule=_HEADER_RULE)
        if field in types:
            raise DataError(f"header names field {field!r} twice (line 1)",
                            path=str(path), rule=_HEADER_RULE)
        types[field] = typ

    raw = _read_rows(path, list(types), use_threads=True)
    columns = {
        field: _convert(raw[field], typ, path, field, seq_separator)
        for field, typ in types.items()
    }
    return pa.table(columns), types


def _read_rows(path: Path, names: list[str], use_threads: bool) -> pa.Table:
    """All columns as strings; a row with the wrong number of fields is a DataError."""
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names,
                                           use_threads=use_threads),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable atomic file: {e}", path=str(path),
                        rule=_HEADER_RULE) from e
    if invalid:
        row = invalid[0]
        if row.number is None and use_threads:  # parallel parsing does not know the line
            return _read_rows(path, names, use_threads=False)
        line = row.number
        raise DataError(
            f"expected {row.expected_columns} tab-separated fields, got {row.actual_columns}"
            + (f" (line {line})" if line is not None else ""),
            path=str(path),
            row=None if line is None else line - 1,
            rule=_HEADER_RULE,
        )
    return table


def _convert(col: pa.ChunkedArray, typ: str, path: Path, field: str, sep: str) -> pa.Array:
    text = col.combine_chunks()
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if typ == "token":
        return text
    if typ == "float":
        return _floats(text, path, field)
    lists = pc.split_pattern(text, pattern=sep)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    keep = pc.fill_null(pc.not_equal(flat, ""), False)
    counts = np.bincount(parents.filter(keep).to_numpy(), minlength=len(lists))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    values = flat.filter(keep)
    if typ == "float_seq":
        parsed = _floats(values, path, field, parents=parents.filter(keep).to_numpy())
        return pa.ListArray.from_arrays(offsets, parsed)
    return pa.ListArray.from_arrays(offsets, values)


def _floats(text: pa.Array, path: Path, field: str, parents: np.ndarray | None = None) -> pa.Array:
    """Strings to float64; the first unparseable value is reported with its row."""
    values = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
    num = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero((values.notna() & num.isna()).to_numpy())
    if len(bad):
        row = int(bad[0] if parents is None else parents[bad[0]])
        raise DataError(
            f"field {field!r}: {values[bad[0]]!r} is not a float (line {row + 2})",
            path=str(path), row=row + 1, rule=f"{field} is declared float",
        )
    return pa.array(num.to_numpy(dtype=np.float64), pa.float64(), from_pandas=True)


def _find_inter(src_dir: Path, name: str | None) -> tuple[str, Path]:
    if not src_dir.is_dir():
        raise DataError("not a folder", path=str(src_dir), rule=_FILES_RULE)
    stem = name if name is not None else src_dir.name
    path = src_dir / f"{stem}.inter"
    if path.is_file():
        return stem, path
    found = sorted(src_dir.glob("*.inter"))
    if name is None and len(found) == 1:
        return found[0].stem, found[0]
    raise DataError(
        f"no {stem}.inter" + (f" (found {[p.name for p in found]}; pass name=)" if found else ""),
        path=str(src_dir),
        rule=_FILES_RULE,
    )


def _require(table: pa.Table, types: dict[str, str], path: Path, fields: list[str]) -> None:
    for field in fields:
        if field not in types:
            raise DataError(
                f"no field {field!r}; fields are {list(types)}",
                path=str(path),
                rule="name the id fields with user_field= / item_field= (RecBole's "
                     "USER_ID_FIELD / ITEM_ID_FIELD)",
            )
        if types[field] != "token":
            raise DataError(f"field {field!r} is {types[field]}, expected token",
                            path=str(path), rule="id fields are token")
        nulls = np.flatnonzero(~np.asarray(pc.is_valid(table[field]).to_numpy(
            zero_copy_only=False), dtype=bool))
        if len(nulls):
            row = int(nulls[0])
            raise DataError(f"field {field!r} is empty (line {row + 2})", path=str(path),
                            row=row + 1, rule="every row has an id")


def _check_unique(table: pa.Table, field: str, path: Path) -> None:
    ids = pd.Series(table[field].to_numpy(zero_copy_only=False), dtype=object)
    dup = np.flatnonzero(ids.duplicated().to_numpy())
    if len(dup):
        row = int(dup[0])
        raise DataError(f"duplicate {field} {ids[row]!r} (line {row + 2})", path=str(path),
                        row=row + 1, rule=f"{field} is unique in a feature file")


# --------------------------------------------------------------------------- building tables
def _entities(
    features: pa.Table | None,
    seen: pa.ChunkedArray,
    field: str,
    id_column: str,
    table: str,
    counts: dict[str, Any],
) -> pa.Table:
    """Feature-file rows in file order, then ids only seen in interactions."""
    seen_ids = pc.unique(seen)
    if features is None:
        counts[f"{table}_only_in_inter"] = len(seen_ids)
        return pa.table({id_column: seen_ids})
    features = _rename(features, {field: id_column}, reserved=set(TABLES[table]), prefix="feat_")
    extra = seen_ids.filter(pc.invert(pc.is_in(seen_ids, value_set=features[id_column])))
    counts[f"{table}_only_in_inter"] = len(extra)
    if not len(extra):
        return features
    return pa.concat_tables([features, pa.table({id_column: extra})], promote_options="default")


def _rename(table: pa.Table, names: dict[str, str], reserved: set[str], prefix: str) -> pa.Table:
    """Rename id fields; other fields that clash with schema columns get ``prefix``."""
    new = [names.get(n, prefix + n if n in reserved else n) for n in table.column_names]
    return table.rename_columns(new)


def _items_table(
    items: pa.Table, item_kind: str, tag_field: str | None, types: dict[str, str]
) -> pa.Table:
    """Items as ``loras`` (or ``images``) rows: required columns null, features as extras."""
    n = items.num_rows
    if tag_field is not None and types.get(tag_field) in ("token", "token_seq"):
        col = items[tag_field].combine_chunks()
        if types[tag_field] == "token":  # one tag per item
            valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)
            offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
            col = pa.ListArray.from_arrays(pa.array(offsets), col.filter(pa.array(valid)))
        tags = pc.if_else(pc.is_valid(col), col, pa.scalar([], pa.list_(pa.string())))
    else:
        tags = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)),
                                        pa.array([], pa.string()))
    empty_str = pa.nulls(n, pa.string())
    if item_kind == "lora":
        required = {
            "lora_id": items["lora_id"], "creator_id": empty_str, "base_model": empty_str,
            "tags": tags, "created_at": pa.nulls(n, TIMESTAMP),
        }
    else:
        required = {
            "image_id": items["image_id"], "user_id": empty_str,
            "lora_ids": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)),
                                                 pa.array([], pa.string())),
            "prompt": empty_str, "created_at": pa.nulls(n, TIMESTAMP),
        }
        if "tags" not in items.column_names:
            required["tags"] = tags
    extras = {c: items[c] for c in items.column_names if c not in required}
    return pa.table({**required, **extras})


def _interactions(
    inter: pa.Table,
    types: dict[str, str],
    item_kind: str,
    user_field: str,
    item_field: str,
    rating_field: str,
    time_field: str,
    counts: dict[str, Any],
) -> pa.Table:
    n = inter.num_rows
    if types.get(rating_field) == "float":
        weight = pc.cast(pc.fill_null(inter[rating_field], 1.0), pa.float32())
    else:
        weight = pa.repeat(pa.scalar(1.0, pa.float32()), n)
    if types.get(time_field) == "float":
        seconds = inter[time_field].to_numpy()
        missing = np.isnan(seconds)
        ts = pa.array(np.floor(np.where(missing, 0, seconds)).astype(np.int64), pa.int64(),
                      mask=missing)
        timestamp = pc.cast(ts, TIMESTAMP)
        counts["interactions_without_timestamp"] = int(missing.sum())
    else:
        timestamp = pa.nulls(n, TIMESTAMP)
        counts["interactions_without_timestamp"] = n
    used = {user_field, item_field, rating_field, time_field}
    reserved = set(TABLES["interactions"])
    extras = {("inter_" + c if c in reserved else c): inter[c]
              for c in inter.column_names if c not in used}
    return pa.table({
        "user_id": inter[user_field],
        "item_id": inter[item_field],
        "item_kind": pa.repeat(pa.scalar(item_kind, pa.string()), n),
        "kind": pa.repeat(pa.scalar("rate", pa.string()), n),
        "timestamp": timestamp,
        "weight": weight,
        **extras,
    })
