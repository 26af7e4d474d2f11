"""The one data schema every source is converted into (DESIGN.md, "Data").

A data set is a folder of parquet tables plus ``dataset.json``. Ids are kept as
the source's original strings on disk; the harness maps them to dense integer
indices (row order of the entity tables) when it builds matrices, and maps back
to strings for anything it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from benchmark.errors import DataError

TIMESTAMP = pa.timestamp("s")

#: required columns of each table, with their arrow types; extra columns are allowed
TABLES: dict[str, dict[str, pa.DataType]] = {
    "users": {"user_id": pa.string()},
    "loras": {
        "lora_id": pa.string(),
        "creator_id": pa.string(),
        "base_model": pa.string(),
        "tags": pa.list_(pa.string()),
        "created_at": TIMESTAMP,
    },
    "images": {
        "image_id": pa.string(),
        "user_id": pa.string(),
        "lora_ids": pa.list_(pa.string()),
        "prompt": pa.string(),
        "created_at": TIMESTAMP,
    },
    "interactions": {
        "user_id": pa.string(),
        "item_id": pa.string(),
        "item_kind": pa.string(),
        "kind": pa.string(),
        "timestamp": TIMESTAMP,
        "weight": pa.float32(),
    },
    "preferences": {
        "user_id": pa.string(),
        "image_a": pa.string(),
        "image_b": pa.string(),
        "label": pa.float32(),
    },
    "ratings": {
        "user_id": pa.string(),
        "image_id": pa.string(),
        "rating": pa.float32(),
    },
}

#: tables every data set has; the others are optional
REQUIRED_TABLES = ("users", "loras", "images", "interactions")

#: the primary key column of each entity table
ID_COLUMN = {"users": "user_id", "loras": "lora_id", "images": "image_id"}

#: item kinds and the entity table that lists them
ITEM_KINDS = {"lora": "loras", "image": "images"}

#: interaction kinds used by the loaders (others are allowed)
INTERACTION_KINDS = ("generate", "upload", "create", "like", "download", "rate")


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    type: pa.DataType


def schema_of(table: str, extra: pa.Schema | None = None) -> pa.Schema:
    """Arrow schema of ``table``: its required columns, then any ``extra`` ones."""
    fields = [pa.field(name, typ) for name, typ in TABLES[table].items()]
    if extra is not None:
        fields += [f for f in extra if f.name not in TABLES[table]]
    return pa.schema(fields)


def check_columns(table: str, schema: pa.Schema, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` if a required column is absent or mistyped."""
    for name, typ in TABLES[table].items():
        idx = schema.get_field_index(name)
        if idx < 0:
            raise DataError(
                f"missing column {name!r}",
                path=source,
                rule=f"table {table!r} needs columns {list(TABLES[table])}",
            )
        got = schema.field(idx).type
        if not _compatible(got, typ):
            raise DataError(
                f"column {name!r} has type {got}, expected {typ}",
                path=source,
                rule=f"schema of table {table!r}",
            )


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got.equals(want):
        return True
    if pa.types.is_dictionary(got):
        return _compatible(got.value_type, want)
    if pa.types.is_large_string(got) and pa.types.is_string(want):
        return True
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        return True
    if (pa.types.is_list(got) or pa.types.is_large_list(got)) and pa.types.is_list(want):
        return _compatible(got.value_type, want.value_type)
    return False
