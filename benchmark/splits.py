"""Train / validation / test splits, saved as folders anyone can read without gembench.

A split folder holds::

    train.parquet  valid.parquet  test.parquet   user_id, item_id, item_kind, timestamp
    catalogue.parquet                            item_kind, item_id: the full ranking pool,
                                                 in the order the engine indexes it
    split.json                                   protocol, parameters, counts, fingerprints

Two fingerprints, both recomputable by any tool (pandas + hashlib):

* the **split fingerprint** (``split.json["fingerprint"]``, :attr:`Split.fingerprint`):
  sha256 of the lines ``part\\titem_kind\\tuser_id\\titem_id\\tunix_seconds\\n`` of every
  row of the three parts, the lines sorted in byte order. It spans every track split
  together and not the catalogue.
* the **track fingerprint** (``split.json["tracks"][track]["fingerprint"]``,
  :meth:`Split.track_fingerprint`), the one results are compared by: see
  :func:`track_fingerprint`. It covers one track's rows *and* its catalogue, so the same
  track data gives the same fingerprint whichever tracks were split together, and adding
  candidates to the ranking pool changes it.

Two results are comparable only when their track fingerprints match (and their data
set checksums: leaderboards group by both).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark import __version__
from benchmark.core.names import safe_name, under_root
from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.progress import progress_bar
from benchmark.tasks import TRACKS, get_track

PROTOCOLS = ("leave-last-out", "temporal", "random", "cold-start")
PARTS = ("train", "valid", "test")
SPLIT_COLUMNS = ["user_id", "item_id", "item_kind", "timestamp"]


@dataclass(frozen=True)
class SplitConfig:
    """How to split. Ratios are per user (temporal, random) or per item (cold-start)."""

    protocol: str = "leave-last-out"
    tracks: tuple[str, ...] = ("lora-rec", "image-rec")
    valid: bool = True
    test_ratio: float = 0.2
    valid_ratio: float = 0.1
    cold_item_ratio: float = 0.1
    min_history: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        for name in self.tracks:
            get_track(name)
        for name in ("test_ratio", "valid_ratio", "cold_item_ratio"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {value}")
        if self.min_history < 1:
            raise ValueError("min_history must be >= 1")


@dataclass
class Split:
    """A split in memory: three parts, the catalogue and the metadata."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    catalogue: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def fingerprint(self) -> str:
        """The whole-split fingerprint: every part's rows of every track, no catalogue."""
        return str(self.meta["fingerprint"])

    def track_fingerprint(self, track: str) -> str:
        """The fingerprint of ``track``: its rows of every part and its catalogue.

        Stored in ``split.json`` under ``tracks[track]["fingerprint"]`` (computed here
        for a split written before per-track fingerprints); see :func:`track_fingerprint`.
        """
        stats = (self.meta.get("tracks") or {}).get(track)
        if stats is None:
            raise KeyError(f"track {track!r} is not part of this split (its tracks: "
                           f"{sorted(self.meta.get('tracks') or {})})")
        if "fingerprint" not in stats:
            stats["fingerprint"] = track_fingerprint(self, track)
        return str(stats["fingerprint"])

    def part(self, name: str, item_kind: str | None = None) -> pd.DataFrame:
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; parts are {PARTS}")
        frame: pd.DataFrame = getattr(self, name)
        if item_kind is not None:
            frame = frame[frame["item_kind"] == item_kind]
        return frame

    def items(self, item_kind: str) -> pd.Index:
        """The ranking pool of ``item_kind`` in engine order."""
        ids = self.catalogue.loc[self.catalogue["item_kind"] == item_kind, "item_id"]
        return pd.Index(ids.to_numpy(dtype=object), dtype=object)

    def save(self, out: str | os.PathLike) -> Path:
        """Write the folder atomically (temporary folder, then rename)."""
        out = Path(out)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            for name in PARTS:
                pq.write_table(_to_arrow(getattr(self, name)), tmp / f"{name}.parquet")
            pq.write_table(
                pa.Table.from_pandas(self.catalogue, preserve_index=False),
                tmp / "catalogue.parquet",
            )
            (tmp / "split.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.path = out
        return out


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("item_kind", pa.string()),
            ("timestamp", pa.timestamp("s")),
        ]
    )
    cols = {c: frame[c].astype(str).to_numpy() if c != "timestamp" else frame[c] for c in
            SPLIT_COLUMNS}
    return pa.Table.from_pandas(pd.DataFrame(cols), schema=schema, preserve_index=False)


def load_split(path: str | os.PathLike) -> Split:
    """Read a split folder written by :meth:`Split.save` (or by hand in the same layout)."""
    path = Path(path)
    meta_path = path / "split.json"
    if not meta_path.is_file():
        raise DataError("not a split folder (no split.json)", path=str(path),
                        rule="make one with 'gembench split'")
    meta = json.loads(meta_path.read_text())
    parts = {}
    for name in PARTS:
        file = path / f"{name}.parquet"
        try:
            table = pq.read_table(file)
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"cannot read split part: {e}", path=str(file)) from e
        missing = [c for c in SPLIT_COLUMNS if c not in table.column_names]
        if missing:
            raise DataError(f"missing columns {missing}", path=str(file),
                            rule=f"split parts have columns {SPLIT_COLUMNS}")
        parts[name] = table.select(SPLIT_COLUMNS).to_pandas()
    file = path / "catalogue.parquet"
    try:
        catalogue = pq.read_table(file).to_pandas()
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"cannot read the catalogue: {e}", path=str(file)) from e
    missing = [c for c in ("item_kind", "item_id") if c not in catalogue.columns]
    if missing:
        raise DataError(f"missing columns {missing}", path=str(file),
                        rule="the catalogue has columns ['item_kind', 'item_id']")
    split = Split(**parts, catalogue=catalogue, meta=meta, path=path)
    if not meta.get("verify", True):
        return split
    if fingerprint(split) != meta.get("fingerprint"):
        raise DataError(
            "split rows do not match the fingerprint in split.json",
            path=str(path),
            rule="a split folder is not edited after it is written",
        )
    for track, stats in (meta.get("tracks") or {}).items():
        if track not in TRACKS:
            continue
        got = track_fingerprint(split, track)
        if "fingerprint" not in stats:  # written before per-track fingerprints
            stats["fingerprint"] = got
        elif got != stats["fingerprint"]:
            raise DataError(
                f"the {track} rows or catalogue do not match its fingerprint in split.json",
                path=str(path),
                rule="a split folder is not edited after it is written",
            )
    return split


def _row_lines(split: Split, item_kind: str | None = None) -> pa.Array | None:
    """The lines ``part\\titem_kind\\tuser_id\\titem_id\\tunix_seconds\\n`` of every row of
    the three parts (only rows of ``item_kind`` when given), sorted in byte order."""
    lines = []
    for name in PARTS:
        frame = getattr(split, name)
        if item_kind is not None:
            frame = frame[frame["item_kind"].astype(str) == item_kind]
        if len(frame) == 0:
            continue
        ts = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
        cols = [
            pa.array(np.full(len(frame), name, dtype=object), pa.string()),
            pa.array(frame["item_kind"].astype(str).to_numpy(), pa.string()),
            pa.array(frame["user_id"].astype(str).to_numpy(), pa.string()),
            pa.array(frame["item_id"].astype(str).to_numpy(), pa.string()),
            pc.cast(pa.array(ts), pa.string()),
        ]
        line = pc.binary_join_element_wise(*cols, "\t")
        lines.append(pc.binary_join_element_wise(line, "", "\n"))
    if not lines:
        return None
    allrows = pa.concat_arrays(lines)
    ordered = pc.take(allrows, pc.sort_indices(allrows))
    if isinstance(ordered, pa.ChunkedArray):
        ordered = ordered.combine_chunks()
    return ordered


def _feed(h: Any, lines: pa.Array | None) -> None:
    """Hash the concatenated bytes of a string array (no copy of its data buffer)."""
    if lines is None or len(lines) == 0:
        return
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start = offsets[lines.offset]
    stop = offsets[lines.offset + len(lines)]
    h.update(memoryview(lines.buffers()[2])[start:stop])


def fingerprint(split: Split) -> str:
    """sha256 of the sorted lines ``part\\titem_kind\\tuser_id\\titem_id\\tunix_seconds\\n``."""
    h = hashlib.sha256()
    _feed(h, _row_lines(split))
    return h.hexdigest()


def track_fingerprint(split: Split, track: str) -> str:
    """The fingerprint of one track of ``split``: its rows and its catalogue.

    With ``k`` the track's item kind (``lora`` for lora-rec, ``image`` for image-rec; a
    split holds one interaction kind per item kind, recorded in ``split.json``), it is
    the sha256 of, in this order:

    1. the lines ``part\\titem_kind\\tuser_id\\titem_id\\tunix_seconds\\n`` of every row
       of train, valid and test whose ``item_kind`` is ``k`` (the split fingerprint's
       lines, restricted to the track), sorted in byte order; then
    2. the lines ``catalogue\\tk\\titem_id\\n`` of every catalogue row of kind ``k``, in
       the catalogue's order (the engine's item order, which breaks ties in scores).

    The encoding is UTF-8, ``unix_seconds`` a base-10 integer. The track's name, the other
    tracks and the split parameters do not enter: a ``--tracks lora-rec`` split and a
    ``lora-rec,image-rec`` split of the same data give the same lora-rec fingerprint.
    """
    kind = get_track(track).item_kind
    h = hashlib.sha256()
    _feed(h, _row_lines(split, kind))
    items = split.items(kind)
    if len(items):
        ids = pa.array(items.astype(str).to_numpy(), pa.string())
        n = len(ids)
        lines = pc.binary_join_element_wise(
            pa.array(np.full(n, "catalogue", dtype=object), pa.string()),
            pa.array(np.full(n, kind, dtype=object), pa.string()), ids, "\t")
        _feed(h, pc.binary_join_element_wise(lines, "", "\n"))
    return h.hexdigest()


def make_split(dataset: Dataset, config: SplitConfig | None = None, progress: bool = False
               ) -> Split:
    """Split each track's interactions of ``dataset`` per ``config``."""
    config = config or SplitConfig()
    with progress_bar(total=len(config.tracks) + 2, desc=f"split ({config.protocol})",
                      unit="step", enabled=progress) as bar:
        return _make_split(dataset, config, bar)


def _make_split(dataset: Dataset, config: SplitConfig, bar) -> Split:
    bar.set_postfix_str("reading interactions")
    interactions = dataset.table(
        "interactions", ["user_id", "item_id", "item_kind", "kind", "timestamp"]
    )
    bar.update(1)
    parts: dict[str, list[pd.DataFrame]] = {p: [] for p in PARTS}
    catalogue, per_track = [], {}
    for track_name in config.tracks:
        bar.set_postfix_str(track_name)
        bar.update(1)
        track = TRACKS[track_name]
        rows, kind = track.select(interactions)
        items = dataset.ids(track.item_kind)
        catalogue.append(pd.DataFrame({"item_kind": track.item_kind, "item_id": items}))
        if kind is None:
            per_track[track_name] = {"interaction_kind": None, "note": "no interactions"}
            continue
        assigned, stats = _split_rows(rows, config)
        stats["interaction_kind"] = kind
        per_track[track_name] = stats
        for name in PARTS:
            parts[name].append(assigned[name])
    frames = {
        name: (pd.concat(parts[name], ignore_index=True) if parts[name]
               else pd.DataFrame(columns=SPLIT_COLUMNS))
        for name in PARTS
    }
    split = Split(**frames, catalogue=pd.concat(catalogue, ignore_index=True))
    split.meta = {
        "gembench_version": __version__,
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.path.resolve()),
            "source": dataset.meta.get("source"),
            "seed": dataset.meta.get("seed"),
            "files_sha256": dataset.files_sha256,
        },
        "protocol": config.protocol,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "tracks": per_track,
        "counts": {name: int(len(frames[name])) for name in PARTS},
        "fingerprint_rule": "sha256 of sorted lines part\\titem_kind\\tuser_id\\titem_id\\t"
                            "unix_seconds\\n over train, valid, test",
        "track_fingerprint_rule": "sha256 of the sorted lines part\\titem_kind\\tuser_id\\t"
                                  "item_id\\tunix_seconds\\n of the track's item kind over "
                                  "train, valid, test, then catalogue\\titem_kind\\titem_id\\n "
                                  "of its catalogue in engine order",
    }
    bar.set_postfix_str("fingerprint")
    split.meta["fingerprint"] = fingerprint(split)
    for track_name in config.tracks:
        per_track[track_name]["fingerprint"] = track_fingerprint(split, track_name)
    bar.update(1)
    return split


def _split_rows(rows: pd.DataFrame, config: SplitConfig) -> tuple[dict[str, pd.DataFrame], dict]:
    """Assign one track's rows to train / valid / test; vectorised over users."""
    frame = pd.DataFrame(
        {
            "user_id": rows["user_id"].astype(str).to_numpy(),
            "item_id": rows["item_id"].astype(str).to_numpy(),
            "item_kind": rows["item_kind"].astype(str).to_numpy(),
            "timestamp": rows["timestamp"].to_numpy(),
        }
    )
    n_raw = len(frame)
    # one row per (user, item): the first time, ties broken by item id
    frame = frame.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="first")
    n_dedup = len(frame)
    stats: dict[str, Any] = {"rows_in": n_raw, "duplicates_dropped": n_raw - n_dedup}

    if config.protocol == "cold-start":
        part = _cold_start_parts(frame, config)
    else:
        sizes = frame.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
        keep = sizes >= config.min_history
        stats["users_dropped_min_history"] = int(frame.loc[~keep, "user_id"].nunique())
        frame = frame[keep]
        sizes = sizes[keep]
        if config.protocol == "random":
            rng = np.random.default_rng(config.seed)
            frame = frame.assign(_key=rng.random(len(frame)))
            frame = frame.sort_values(["user_id", "_key"], kind="mergesort").drop(columns="_key")
        position_from_end = (
            sizes - frame.groupby("user_id", sort=False).cumcount().to_numpy() - 1
        )
        if config.protocol == "leave-last-out":
            n_test = np.ones_like(sizes)
            n_valid = np.ones_like(sizes) if config.valid else np.zeros_like(sizes)
        else:
            n_test = np.maximum(1, np.floor(sizes * config.test_ratio + 0.5)).astype(np.int64)
            n_valid = (np.maximum(1, np.floor(sizes * config.valid_ratio + 0.5)).astype(np.int64)
                       if config.valid else np.zeros_like(sizes))
        # never leave a user without training rows: validation gives way first, then test
        n_test = np.minimum(n_test, np.maximum(sizes - 1, 0))
        n_valid = np.minimum(n_valid, np.maximum(sizes - n_test - 1, 0))
        part = np.where(
            position_from_end < n_test, 2, np.where(position_from_end < n_test + n_valid, 1, 0)
        )
    frame = frame.assign(_part=part)
    out = {name: frame.loc[frame["_part"] == i, SPLIT_COLUMNS].reset_index(drop=True)
           for i, name in enumerate(PARTS)}
    for name in PARTS:
        stats[f"{name}_rows"] = int(len(out[name]))
        stats[f"{name}_users"] = int(out[name]["user_id"].nunique())
    return out, stats


def _cold_start_parts(frame: pd.DataFrame, config: SplitConfig) -> np.ndarray:
    """Hold out whole items: a fraction of items goes to test (and valid), unseen in training.

    Evaluation rows are kept only for users with at least ``min_history`` training
    rows, so every evaluated user has a history to recommend from.
    """
    items = np.sort(frame["item_id"].unique())
    rng = np.random.default_rng(config.seed)
    n_cold = max(2 if config.valid else 1, int(round(len(items) * config.cold_item_ratio)))
    cold = rng.permutation(items)[:n_cold]
    n_valid_items = n_cold // 2 if config.valid else 0
    part_of_item = pd.Series(2, index=cold)
    part_of_item.iloc[:n_valid_items] = 1
    part = frame["item_id"].map(part_of_item).fillna(0).astype(np.int64).to_numpy()
    n_train = pd.Series(part == 0).groupby(frame["user_id"].to_numpy()).transform("sum")
    enough = n_train.to_numpy() >= config.min_history
    # evaluation rows of users with too little history are dropped (-1), never trained on
    return np.where((part > 0) & ~enough, -1, part)


def cached_split(dataset: Dataset, label: str, key: list[Any], data_dir: str | os.PathLike,
                 load: Any, make: Any) -> Any:
    """The one split cache: ``data_dir/splits/<data set>/<label>-<hash>``.

    The hash covers the data set's file checksums and ``key`` (the split's parameters), so
    a changed data set or parameter never reuses a stale folder. ``load(path)`` reads a
    cached folder (and checks its fingerprint); ``make()`` builds a split with ``save``.
    """
    digest = hashlib.sha256(json.dumps([dataset.meta.get("files", {}), *key], sort_keys=True,
                                       default=list).encode()).hexdigest()[:12]
    name = safe_name(dataset.name, "data set name", path=Path(dataset.path) / "dataset.json")
    path = under_root(data_dir, Path(data_dir) / "splits" / name
                      / f"{safe_name(label, 'split protocol')}-{digest}")
    if (path / "split.json").is_file():
        return load(path)
    split = make()
    split.save(path)
    return split


def prepare_split(dataset: Dataset, config: SplitConfig, data_dir: str | os.PathLike = "data",
                  progress: bool = True) -> Split:
    """The split for ``config``, cached under ``data_dir/splits`` and reused when unchanged."""
    return cached_split(dataset, config.protocol, [asdict(config)], data_dir, load_split,
                        lambda: make_split(dataset, config, progress=progress))
