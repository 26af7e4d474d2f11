"""Reading and writing a data set folder in the one schema.

Layout of a data set folder::

    dataset.json                 name, source, version, scale, seed, row counts, sha256 of files
    users.parquet  loras.parquet  images.parquet  interactions.parquet
    preferences.parquet / ratings.parquet          (optional)
    embeddings/<encoder>/<kind>.npy                float32 [n_entities, d], row = entity row
    embeddings/<encoder>/<kind>.ids.parquet        the ids of those rows, in order
    truth/*.npy + truth/truth.json                 synthetic ground truth (optional)

A folder is written under a temporary name and renamed into place when it is
complete, so a crash never leaves a half-written data set that looks whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.core.io import atomic_write_text, sha256_file  # noqa: F401  (re-exported)
from benchmark.errors import DataError
from benchmark.schema import (
    ID_COLUMN,
    ITEM_KINDS,
    REQUIRED_TABLES,
    TABLES,
    TIMESTAMP,
    check_columns,
)

META_FILE = "dataset.json"
FORMAT_VERSION = 1


class DatasetWriter:
    """Builds a data set folder; use as a context manager.

    Tables can be written whole (:meth:`write_table`) or streamed in chunks
    (:meth:`open_table`), so the ``full`` synthetic scale never holds a whole
    table in memory.
    """

    def __init__(self, out: str | os.PathLike, meta: dict[str, Any], overwrite: bool = True):
        self.out = Path(out)
        self.meta = dict(meta)
        self.overwrite = overwrite
        self.tmp = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}")
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, int] = {}
        self._embeddings: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> DatasetWriter:
        if self.out.exists() and not self.overwrite:
            raise DataError("output folder exists", path=str(self.out), rule="no overwrite")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self._finish()

    # tables -----------------------------------------------------------------
    def open_table(self, name: str, schema: pa.Schema) -> None:
        check_columns(name, schema, source=f"<{name} being written>")
        self._writers[name] = pq.ParquetWriter(
            self.tmp / f"{name}.parquet", schema, compression="zstd"
        )
        self._rows[name] = 0

    def append(self, name: str, chunk: pa.Table | pd.DataFrame) -> None:
        writer = self._writers[name]
        if isinstance(chunk, pd.DataFrame):
            chunk = pa.Table.from_pandas(chunk, schema=writer.schema, preserve_index=False)
        else:
            chunk = chunk.select(writer.schema.names).cast(writer.schema)
        writer.write_table(chunk)
        self._rows[name] += chunk.num_rows

    def close_table(self, name: str) -> None:
        self._writers.pop(name).close()

    def write_table(self, name: str, table: pa.Table | pd.DataFrame, schema: pa.Schema) -> None:
        self.open_table(name, schema)
        self.append(name, table)
        self.close_table(name)

    # arrays -----------------------------------------------------------------
    def embedding_path(self, encoder: str, kind: str) -> Path:
        folder = self.tmp / "embeddings" / encoder
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{kind}.npy"

    def open_embeddings(self, encoder: str, kind: str, shape: tuple[int, int]) -> np.memmap:
        """A writable float32 memmap for ``kind`` rows; fill it in chunks, then flush."""
        path = self.embedding_path(encoder, kind)
        self._embeddings.setdefault(encoder, {})[kind] = {"dim": int(shape[1]), "rows": shape[0]}
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)

    def write_embedding_ids(self, encoder: str, kind: str, ids: pa.Array) -> None:
        path = self.embedding_path(encoder, kind).with_suffix(".ids.parquet")
        pq.write_table(pa.table({"id": ids}), path, compression="zstd")

    def write_truth(self, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> None:
        folder = self.tmp / "truth"
        folder.mkdir(exist_ok=True)
        for key, value in arrays.items():
            np.save(folder / f"{key}.npy", value)
        (folder / "truth.json").write_text(json.dumps(params, indent=2, sort_keys=True))

    # finish -----------------------------------------------------------------
    def _finish(self) -> None:
        missing = [t for t in REQUIRED_TABLES if not (self.tmp / f"{t}.parquet").exists()]
        if missing:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise DataError(f"data set lacks tables {missing}", path=str(self.out))
        files = sorted(
            p for p in self.tmp.rglob("*") if p.is_file() and p.name != META_FILE
        )
        meta = {
            "format_version": FORMAT_VERSION,
            **self.meta,
            "tables": {
                p.stem: {"rows": pq.ParquetFile(p).metadata.num_rows}
                for p in sorted(self.tmp.glob("*.parquet"))
            },
            "embeddings": self._embeddings,
            "files": {str(p.relative_to(self.tmp)): sha256_file(p) for p in files},
        }
        (self.tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.out)


class Dataset:
    """A data set folder, read lazily."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DataError(
                "not a gembench data set (no dataset.json)",
                path=str(self.path),
                rule="build one with 'gembench data synth' or 'gembench data import'",
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON: {e}", path=str(meta_path)) from e
        self._ids: dict[str, pd.Index] = {}

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def files_sha256(self) -> str:
        """The data set's checksum: sha256 of its ``dataset.json`` file checksums (sorted
        JSON). Records and tables are comparable only when it matches."""
        return hashlib.sha256(json.dumps(self.meta.get("files", {}), sort_keys=True)
                              .encode()).hexdigest()

    def record_block(self, absolute: bool = False) -> dict[str, Any]:
        """The ``dataset`` block of a result record: name, path (as given, so the same on
        every clone, unless ``absolute``) and :attr:`files_sha256`."""
        path = self.path.resolve() if absolute else self.path
        return {"name": self.name, "path": str(path), "files_sha256": self.files_sha256}

    def has_table(self, name: str) -> bool:
        return (self.path / f"{name}.parquet").is_file()

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        path = self.path / f"{name}.parquet"
        if not path.is_file():
            raise DataError(f"table {name!r} is missing", path=str(path))
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"not a readable parquet file: {e}", path=str(path)) from e
        if name in TABLES:
            check_columns(name, pf.schema_arrow, source=str(path))
        table = pf.read(columns=columns)
        # parquet has no seconds unit: timestamps come back as ms; restore the schema's unit
        fields = [
            pa.field(f.name, TIMESTAMP) if pa.types.is_timestamp(f.type) and f.type != TIMESTAMP
            else f
            for f in table.schema
        ]
        return table.cast(pa.schema(fields), safe=False)

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A table as pandas; string id columns come back as categoricals (compact)."""
        return categorical_ids(self.arrow(name, columns)).to_pandas()

    def ids(self, entity: str) -> pd.Index:
        """Original string ids of ``entity`` ('users', 'loras', 'images') in row order."""
        entity = ITEM_KINDS.get(entity, entity)
        if entity not in self._ids:
            col = ID_COLUMN[entity]
            values = self.arrow(entity, [col]).column(col).to_numpy(zero_copy_only=False)
            index = pd.Index(values, dtype=object)
            if not index.is_unique:
                dup = index[index.duplicated()][0]
                row = int(np.flatnonzero(index == dup)[1])
                raise DataError(
                    f"duplicate {col} {dup!r}",
                    path=str(self.path / f"{entity}.parquet"),
                    row=row,
                    rule=f"{col} is unique",
                )
            self._ids[entity] = index
        return self._ids[entity]

    def embeddings(self, encoder: str, kind: str, mmap: bool = True) -> np.ndarray:
        path = self.path / "embeddings" / encoder / f"{kind}.npy"
        if not path.is_file():
            raise DataError(f"no {encoder!r} embeddings for {kind!r}", path=str(path))
        return np.load(path, mmap_mode="r" if mmap else None)

    def embedding_ids(self, encoder: str, kind: str) -> pd.Index:
        """The ids of :meth:`embeddings`' rows: ``<kind>.ids.parquet``, else ``kind``'s ids."""
        path = self.path / "embeddings" / encoder / f"{kind}.ids.parquet"
        if path.is_file():
            column = pq.read_table(path).column(0)
            return pd.Index(column.to_numpy(zero_copy_only=False).astype(str), dtype=object)
        if kind in ITEM_KINDS or kind == "user":
            return self.ids(ITEM_KINDS.get(kind, "users"))
        raise DataError(f"{kind!r} embeddings without their ids", path=str(path),
                        rule="<kind>.npy comes with <kind>.ids.parquet")

    def embedding_kinds(self, encoder: str) -> list[str]:
        folder = self.path / "embeddings" / encoder
        return sorted(p.stem for p in folder.glob("*.npy")) if folder.is_dir() else []

    def encoders(self) -> list[str]:
        folder = self.path / "embeddings"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    @property
    def has_truth(self) -> bool:
        return (self.path / "truth" / "truth.json").is_file()

    def truth(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Synthetic ground truth: arrays (memory-mapped) and parameters."""
        folder = self.path / "truth"
        if not self.has_truth:
            raise DataError("this data set has no ground truth", path=str(folder))
        params = json.loads((folder / "truth.json").read_text())
        arrays = {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}
        return arrays, params

    def verify(self) -> list[str]:
        """Files whose sha256 differs from dataset.json (empty when intact)."""
        bad = []
        for rel, digest in self.meta.get("files", {}).items():
            p = self.path / rel
            if not p.is_file() or sha256_file(p) != digest:
                bad.append(rel)
        return bad


_CATEGORICAL = {
    "user_id", "item_id", "item_kind", "kind", "creator_id", "base_model",
    "image_a", "image_b", "lora_id", "image_id",
}


def categorical_ids(table: pa.Table) -> pa.Table:
    """``table`` with its string id columns dictionary-encoded (pandas categoricals: compact)."""
    return table.cast(pa.schema([
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
        if f.name in _CATEGORICAL and pa.types.is_string(f.type) else f
        for f in table.schema
    ]))


def load_dataset(path: str | os.PathLike) -> Dataset:
    return Dataset(path)


def iter_batches(table: pa.Table, size: int) -> Iterable[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)
