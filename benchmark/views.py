"""Training views: everything a method may read besides its training rows, and nothing more.

Why: a method used to receive the whole data set folder, so held-out images, prompts,
interactions and the synthetic truth were one ``open()`` away, and fairness rested on each
method filtering by itself. The harness now builds one :class:`TrainingView` per (track,
part) and hands it to ``fit`` (as ``side.view``). A view holds:

* the data set's **static content**: entity ids, every embedding store (item kinds as
  stored; per-image stores such as ``text`` only for visible images), the ``users`` and
  ``loras`` tables (LoRA metadata);
* the **visible per-user rows**: on the ranking tracks an image row of the ``images`` table
  (its creator, prompt, LoRAs, time) is visible only when it was created at or before its
  creator's last visible interaction on the track, every LoRA it used is among the creator's
  visible LoRAs (lora-rec), and it is not a held-out item of its creator (image-rec); on the
  preference track images are the judged items, so the ``images`` table is static content
  and the judgements are the training pairs passed to ``fit``;
* **never** a path, a file handle or a :class:`~benchmark.data.store.Dataset`; arrays are
  anonymous read-only memory maps (no file name behind them); no ``interactions``,
  ``preferences`` or ``ratings`` table (the visible ones are ``fit``'s first argument);
* the synthetic **truth** only in views made for registered reference rows (``oracle``,
  ``oracle-direction``: :attr:`benchmark.registry.MethodSpec.reference`).

Python cannot sandbox code that runs in the same process: a method that scans the disk or
the interpreter's memory goes around its view, and that is cheating by definition
(docs/submitting.md). What the view guarantees is that nothing reachable from what a method
is handed leads to held-out data; ``tests/test_views.py`` walks that graph with an
adversarial method on every track.
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from benchmark.errors import DataError, NotApplicable

if TYPE_CHECKING:
    from benchmark.data.store import Dataset
    from benchmark.protocols import InteractionData, SideInfo

#: tables a view never holds: their visible rows are what ``fit`` is given
PER_USER_TABLES = ("interactions", "preferences", "ratings")
#: tables of static content
STATIC_TABLES = ("users", "loras")
#: dataset.json keys a view copies (labels; no path, no generator configuration)
META_KEYS = ("name", "source", "scale", "version", "format_version")


def anonymous_array(path: Any) -> np.ndarray:
    """A read-only view of a ``.npy`` file through an anonymous memory map.

    ``np.load(mmap_mode="r")`` returns a ``np.memmap`` whose ``filename`` names the data
    set folder; this array's base is a bare ``mmap.mmap`` (no name), and the file is
    closed once mapped. Same bytes, same lazy paging.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0 or dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


#: id(array) -> (weak reference, file relative to the data set): lets the harness save a
#: judge's embedding attribute as a reference to the data set file instead of a copy
_STORE_FILES: dict[int, tuple[weakref.ref, str]] = {}


def stored_file(array: Any) -> str | None:
    """The data-set-relative ``.npy`` file a whole-store view array maps, or None."""
    entry = _STORE_FILES.get(id(array))
    if entry is not None and entry[0]() is array:
        return entry[1]
    return None


def _register(array: np.ndarray, relative: str) -> np.ndarray:
    key = id(array)
    _STORE_FILES[key] = (weakref.ref(array, lambda _, k=key: _STORE_FILES.pop(k, None)),
                         relative)
    return array


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    from benchmark.data.store import categorical_ids

    return categorical_ids(table).to_pandas()


class TrainingView:
    """What a method may read beyond its training rows (module docstring: the rules).

    Mirrors the read methods of :class:`benchmark.data.store.Dataset` that methods use
    (``ids``, ``encoders``, ``embeddings``, ``has_table``, ``table``, ``arrow``,
    ``has_truth``, ``truth``, ``meta``, ``name``), so a method reads a view as it read a
    data set, minus what is held out. Built by :func:`ranking_view` /
    :func:`preference_view`, never by a method.
    """

    def __init__(self, *, meta: Mapping[str, Any], item_kind: str,
                 ids: Mapping[str, pd.Index], tables: Mapping[str, pa.Table],
                 embeddings: Mapping[tuple[str, str], tuple[pd.Index | None, np.ndarray]],
                 truth: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None,
                 text_encoder: Any = None, visible: str = "") -> None:
        self.meta = {k: meta[k] for k in META_KEYS if k in meta}
        self.item_kind = item_kind
        self.visible = visible
        self._ids = dict(ids)
        self._tables = dict(tables)
        self._embeddings = dict(embeddings)
        self._truth = truth
        self._text_encoder = text_encoder

    def __repr__(self) -> str:
        return (f"TrainingView({self.name!r}, item_kind={self.item_kind!r}, "
                f"visible={self.visible!r}, tables={sorted(self._tables)}, "
                f"truth={self._truth is not None})")

    # ---------------------------------------------------------------- Dataset-like reads
    @property
    def name(self) -> str:
        return str(self.meta.get("name", "dataset"))

    def ids(self, entity: str) -> pd.Index:
        """Original string ids of ``entity`` (``users``, ``loras``, ``images``) in row order."""
        from benchmark.schema import ITEM_KINDS

        entity = ITEM_KINDS.get(entity, entity)
        if entity not in self._ids:
            raise DataError(f"the training view has no {entity!r} ids")
        return self._ids[entity]

    def encoders(self) -> list[str]:
        return sorted({enc for enc, _ in self._embeddings})

    def embedding_kinds(self, encoder: str) -> list[str]:
        return sorted(kind for enc, kind in self._embeddings if enc == encoder)

    def embeddings(self, encoder: str, kind: str, mmap: bool = True) -> np.ndarray:
        """float32 rows of ``encoder``'s ``kind`` store (rows: :meth:`embedding_ids`)."""
        if (encoder, kind) not in self._embeddings:
            raise DataError(f"no {encoder!r} embeddings for {kind!r} in the training view")
        return self._embeddings[(encoder, kind)][1]

    def embedding_ids(self, encoder: str, kind: str) -> pd.Index:
        """The ids of :meth:`embeddings`' rows (an item kind's store: that kind's ids)."""
        if (encoder, kind) not in self._embeddings:
            raise DataError(f"no {encoder!r} embeddings for {kind!r} in the training view")
        ids, _ = self._embeddings[(encoder, kind)]
        if ids is None:
            from benchmark.schema import ITEM_KINDS

            return self.ids(ITEM_KINDS.get(kind, kind))
        return ids

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        if name not in self._tables:
            why = (" (its visible rows are fit's first argument)" if name in PER_USER_TABLES
                   else "")
            raise DataError(f"table {name!r} is not in the training view{why}")
        table = self._tables[name]
        return table.select(columns) if columns is not None else table

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A table as pandas (string id columns as categoricals, as Dataset.table)."""
        return _to_pandas(self.arrow(name, columns))

    @property
    def has_truth(self) -> bool:
        return self._truth is not None

    def truth(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The synthetic truth; only in views made for registered reference rows."""
        if self._truth is None:
            raise NotApplicable("the ground truth goes to registered reference rows (oracle) "
                                "only; this view has none")
        return self._truth

    def text_encoder(self) -> Any:
        """The synthetic world's prompt encoder (synthetic data sets only), built by the harness."""
        if self._text_encoder is None:
            raise NotApplicable("no synthetic text encoder for this data set")
        return self._text_encoder

    # ---------------------------------------------------------------- derived views
    def with_truth(self, dataset: Dataset) -> TrainingView:
        """The same view plus ``dataset``'s truth: for registered reference rows only."""
        if not dataset.has_truth:
            return self
        out = TrainingView.__new__(TrainingView)
        out.__dict__.update(self.__dict__)
        out._truth = dataset.truth()
        return out


# ------------------------------------------------------------------------------ building
def _static_parts(dataset: Dataset, visible_ids: pd.Index | None
                  ) -> tuple[dict[str, pd.Index], dict[str, pa.Table],
                             dict[tuple[str, str], tuple[pd.Index | None, np.ndarray]]]:
    """Ids, static tables and embedding stores; per-image stores cut to ``visible_ids``.

    A store of an entity kind (``lora``, ``image``, ``user``) is static content, kept
    whole; any other store (``text``: one row per image's prompt) keeps the rows of
    ``visible_ids`` only (None keeps every row: on the preference track images are items).
    """
    ids = {entity: dataset.ids(entity) for entity in ("users", "loras", "images")
           if dataset.has_table(entity)}
    tables = {name: dataset.arrow(name) for name in STATIC_TABLES if dataset.has_table(name)}
    stores: dict[tuple[str, str], tuple[pd.Index | None, np.ndarray]] = {}
    folder = dataset.path / "embeddings"
    for encoder in dataset.encoders():
        for npy in sorted((folder / encoder).glob("*.npy")):
            kind = npy.stem
            id_file = npy.with_name(f"{kind}.ids.parquet")
            relative = f"embeddings/{encoder}/{npy.name}"
            if kind in ("lora", "image", "user"):
                stores[(encoder, kind)] = (None, _register(anonymous_array(npy), relative))
                continue
            if not id_file.is_file():
                continue  # a per-image store without ids cannot be cut to the visible rows
            store_ids = pd.Index(pq.read_table(id_file).column(0).to_numpy(
                zero_copy_only=False).astype(str), dtype=object)
            matrix = anonymous_array(npy)
            if visible_ids is None:
                stores[(encoder, kind)] = (store_ids, _register(matrix, relative))
            else:
                keep = np.flatnonzero(store_ids.isin(visible_ids))
                stores[(encoder, kind)] = (store_ids[keep],
                                           np.ascontiguousarray(matrix[keep]))
    return ids, tables, stores


def _text_encoder(dataset: Dataset) -> Any:
    if dataset.meta.get("source") != "synthetic" or "config" not in dataset.meta:
        return None
    from benchmark.data.synthetic_text import SyntheticTextEncoder

    return SyntheticTextEncoder.from_dataset(dataset)


def text_encoder_of(source: Any) -> Any:
    """The synthetic prompt encoder of a training view (or, in tests, of a whole data set)."""
    if isinstance(source, TrainingView):
        return source.text_encoder()
    encoder = _text_encoder(source)
    if encoder is None:
        raise NotApplicable("no synthetic text encoder for this data set")
    return encoder


def pairs_in(matrix: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each (rows[j], cols[j]) is a stored non-zero of ``matrix`` (vectorised)."""
    coo = matrix.tocoo()
    stored = coo.row.astype(np.int64)[coo.data != 0] * matrix.shape[1] \
        + coo.col.astype(np.int64)[coo.data != 0]
    wanted = np.asarray(rows, np.int64) * matrix.shape[1] + np.asarray(cols, np.int64)
    return np.isin(wanted, stored)


def visible_images(images: pa.Table, fit: InteractionData, hidden: sp.csr_matrix | None
                   ) -> np.ndarray:
    """Row numbers of the ``images`` rows visible to a ranking method fitted on ``fit``.

    Rules (all must hold): the creator is a user of ``fit``; ``created_at`` is at or before
    the creator's last ``fit`` interaction; on a LoRA track every LoRA of the image is among
    the creator's ``fit`` items; on an image track the image is not among the creator's
    ``hidden`` (held-out) items. Vectorised over rows.
    """
    user = fit.user_ids.get_indexer(
        images.column("user_id").to_numpy(zero_copy_only=False).astype(str))
    created = images.column("created_at").cast(pa.int64()).to_numpy()  # seconds
    last = np.full(fit.n_users, np.iinfo(np.int64).min)
    if len(fit.frame):
        seconds = fit.frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
        np.maximum.at(last, fit.frame["user_idx"].to_numpy(), seconds)
    keep = (user >= 0) & (created <= last[np.maximum(user, 0)])
    if fit.item_kind == "lora":
        loras = images.column("lora_ids").combine_chunks()
        parent = pc.list_parent_indices(loras).to_numpy()
        lora = fit.item_ids.get_indexer(
            pc.list_flatten(loras).to_numpy(zero_copy_only=False).astype(str))
        owner = user[parent]
        ok = (lora >= 0) & (owner >= 0)
        seen = np.zeros(len(parent), bool)
        seen[ok] = pairs_in(fit.matrix, owner[ok], lora[ok])
        keep &= ~(np.bincount(parent[~seen], minlength=len(user)) > 0)
    elif fit.item_kind == "image" and hidden is not None and hidden.nnz:
        item = fit.item_ids.get_indexer(
            images.column("image_id").to_numpy(zero_copy_only=False).astype(str))
        ok = keep & (item >= 0)
        held = np.zeros(len(user), bool)
        held[ok] = pairs_in(hidden, user[ok], item[ok])
        keep &= ~held
    return np.flatnonzero(keep)


def ranking_view(dataset: Dataset, fit: InteractionData, hidden: sp.csr_matrix | None = None,
                 *, visible: str = "train") -> TrainingView:
    """The view of a ranking track whose methods fit on ``fit``.

    ``hidden``: every held-out interaction of the track (the parts not in ``fit``), in
    ``fit``'s indexing; it hides an image-rec item's own row. ``visible`` names the parts
    in ``fit`` (``train`` or ``train+valid``), for the record and ``repr``.
    """
    tables: dict[str, pa.Table] = {}
    visible_ids = pd.Index([], dtype=object)
    if dataset.has_table("images"):
        images = dataset.arrow("images")
        rows = visible_images(images, fit, hidden)
        tables["images"] = images.take(pa.array(rows, pa.int64()))
        visible_ids = pd.Index(tables["images"].column("image_id").to_numpy(
            zero_copy_only=False).astype(str), dtype=object)
    ids, static, stores = _static_parts(dataset, visible_ids)
    return TrainingView(meta=dataset.meta, item_kind=fit.item_kind, ids=ids,
                        tables={**static, **tables}, embeddings=stores,
                        text_encoder=_text_encoder(dataset), visible=visible)


def preference_view(dataset: Dataset | None) -> TrainingView | None:
    """The view of the preference track: images are the judged items (static content)."""
    if dataset is None:
        return None
    ids, static, stores = _static_parts(dataset, None)
    if dataset.has_table("images"):
        static["images"] = dataset.arrow("images")
    return TrainingView(meta=dataset.meta, item_kind="image", ids=ids, tables=static,
                        embeddings=stores, text_encoder=_text_encoder(dataset),
                        visible="training judgements")


def side_for(method_name: str, cls: type, side: SideInfo, ds: Dataset | None) -> SideInfo:
    """``side`` with the truth added when ``method_name`` is a registered reference row."""
    from benchmark.protocols import SideInfo
    from benchmark.registry import is_reference

    if ds is None or side.view is None or not is_reference(method_name, cls):
        return side
    return SideInfo(view=side.view.with_truth(ds), item_kind=side.item_kind, seed=side.seed,
                    extra=side.extra)
