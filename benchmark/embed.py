"""``gembench embed``: image and text embeddings into an embedding store, resumable.

Store layout (the same as a data set folder's, so a data set can use it)::

    OUT/embeddings/<encoder>/<kind>.npy          float32 [n, d], L2-normalised, row = id
    OUT/embeddings/<encoder>/<kind>.ids.parquet  the ids of those rows, in order
    OUT/embeddings/<encoder>/<kind>.json         encoder, weights, preprocessing, missing ids

While a run is under way the rows go to ``<kind>.partial.npy`` (written batch by
batch) and ``<kind>.progress.json`` records how many batches are finished; it is
rewritten atomically after each flushed batch, so an interrupted run resumes at the
first unfinished batch. Inputs that cannot be read (a corrupt image) are counted and
listed in the metadata and left out of the final store; they are never fatal.

Encoders: ``open_clip:<arch>:<pretrained>`` (``<pretrained>`` a tag such as
``openai``, a local checkpoint file, or ``none`` for random initialisation) and
``hf:<model id or local folder>`` (transformers CLIP / SigLIP models). Weights are
read from a local path or the open_clip / Hugging Face cache; heavy imports
(torch, open_clip, transformers) happen inside functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.io import atomic_path, atomic_write_text
from benchmark.errors import DataError, GembenchError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
STORE_VERSION = 1


class EmbedError(GembenchError):
    """The encoder cannot be loaded or cannot do what was asked."""


# encoders ---------------------------------------------------------------------
def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _l2(x: Any) -> np.ndarray:
    """A torch tensor of features -> L2-normalised float32 numpy rows."""
    x = x.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x.detach().cpu().numpy().astype(np.float32, copy=False)


class Encoder:
    """An image (and text) encoder with a name and a record of its preprocessing."""

    name: str = ""
    meta: dict[str, Any] = {}

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:  # PIL images
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


class OpenClipEncoder(Encoder):
    def __init__(self, model: Any, preprocess: Callable, tokenizer: Any, name: str,
                 weights: str, device: str | None = None):
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        visual = model.visual
        cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", getattr(visual, "image_size", None))
        self.meta = {
            "library": "open_clip",
            "encoder": name,
            "weights": weights,
            "preprocessing": {
                "image_size": list(size) if isinstance(size, (tuple, list)) else size,
                "mean": list(cfg.get("mean", ())) or None,
                "std": list(cfg.get("std", ())) or None,
                "interpolation": cfg.get("interpolation"),
                "resize_mode": cfg.get("resize_mode"),
                "transform": repr(preprocess),
            },
        }

    @classmethod
    def load(cls, arch: str, pretrained: str, device: str | None = None) -> OpenClipEncoder:
        import open_clip

        weights = None if pretrained.lower() in ("none", "random", "") else pretrained
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=weights, device="cpu")
            tokenizer = open_clip.get_tokenizer(arch)
        except Exception as e:  # unknown arch, weights not local and no network, ...
            raise EmbedError(f"cannot load open_clip model {arch!r} with weights "
                             f"{pretrained!r}: {e}") from e
        return cls(model, preprocess, tokenizer, f"open_clip:{arch}:{pretrained}",
                   weights or "random-init", device)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            return _l2(self.model.encode_image(batch))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            return _l2(self.model.encode_text(tokens))


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of an image processor's size (dict, SizeDict, int)."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return list(value)
    try:
        items = dict(value).items()
    except (TypeError, ValueError):
        items = ((k, getattr(value, k, None))
                 for k in ("height", "width", "shortest_edge", "longest_edge"))
    return {str(k): v for k, v in items if isinstance(v, (int, float))}


class HFEncoder(Encoder):
    """transformers ``CLIPModel`` / ``SiglipModel`` (anything with get_image_features)."""

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any | None, name: str,
                 weights: str, device: str | None = None):
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.name = name
        ip = image_processor
        size = getattr(ip, "crop_size", None) if getattr(ip, "do_center_crop", False) else None
        size = size or getattr(ip, "size", None)
        self.meta = {
            "library": "transformers",
            "model_class": type(model).__name__,
            "encoder": name,
            "weights": weights,
            "preprocessing": {
                "image_size": _plain(size),
                "mean": list(getattr(ip, "image_mean", None) or []) or None,
                "std": list(getattr(ip, "image_std", None) or []) or None,
                "processor": type(ip).__name__,
                "resample": int(getattr(ip, "resample", -1) or -1),
            },
        }

    @classmethod
    def load(cls, model_id: str, device: str | None = None) -> HFEncoder:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            model = AutoModel.from_pretrained(model_id)
            processor = AutoImageProcessor.from_pretrained(model_id)
        except Exception as e:  # not local and not cached (no network), not a model, ...
            raise EmbedError(f"cannot load transformers model {model_id!r}: {e}") from e
        if not hasattr(model, "get_image_features"):
            raise EmbedError(f"{model_id!r} is a {type(model).__name__}, not a CLIP/SigLIP "
                             "model (no get_image_features)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id)
        except Exception:
            tokenizer = None
        return cls(model, processor, tokenizer, f"hf:{model_id}", model_id, device)

    @staticmethod
    def _features(out: Any) -> Any:
        # transformers 5 may return a model output instead of a tensor
        if hasattr(out, "pooler_output") and not hasattr(out, "norm"):
            return out.pooler_output
        return out

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        inputs = self.image_processor(images=list(images), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device)
        with torch.inference_mode():
            return _l2(self._features(self.model.get_image_features(pixel_values=pixel_values)))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self.tokenizer is None:
            raise EmbedError(f"{self.name}: no tokenizer found, cannot embed texts")
        padding = "max_length" if "Siglip" in type(self.model).__name__ else True
        inputs = self.tokenizer(list(texts), padding=padding, truncation=True,
                                return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return _l2(self._features(self.model.get_text_features(**inputs)))


def load_encoder(spec: str, device: str | None = None) -> Encoder:
    """``open_clip:<arch>:<pretrained>`` or ``hf:<model id or folder>``."""
    kind, _, rest = spec.partition(":")
    if kind == "open_clip":
        arch, _, pretrained = rest.partition(":")
        if not arch:
            raise EmbedError(f"bad encoder {spec!r}: use open_clip:<arch>:<pretrained>")
        return OpenClipEncoder.load(arch, pretrained or "none", device)
    if kind == "hf":
        if not rest:
            raise EmbedError(f"bad encoder {spec!r}: use hf:<model id or local folder>")
        return HFEncoder.load(rest, device)
    raise EmbedError(f"unknown encoder {spec!r}: use open_clip:<arch>:<pretrained> "
                     "or hf:<model id or local folder>")


def encoder_slug(name: str) -> str:
    """A folder name for an encoder.

    ``open_clip:ViT-B-32:openai`` -> ``open_clip-ViT-B-32-openai``; a local ``hf:`` folder
    -> ``hf-<folder name>``.
    """
    kind, _, rest = name.partition(":")
    if kind == "hf" and os.sep in rest and Path(rest).exists():
        rest = Path(rest).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{kind}-{rest}" if rest else kind).strip("-")
    return slug or "encoder"


# inputs -------------------------------------------------------------------------
def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str,
                               keep_default_na=False)
    except Exception as e:
        raise DataError(f"not a readable table: {e}", path=str(path)) from e
    raise DataError("unknown table format", path=str(path), rule="use .parquet, .csv or .tsv")


def _id_column(df: Any, id_column: str | None, path: Path,
               candidates: Sequence[str]) -> list[str]:
    if id_column:
        if id_column not in df.columns:
            raise DataError(f"no column {id_column!r}", path=str(path))
        return [str(v) for v in df[id_column]]
    for col in candidates:
        if col in df.columns:
            return [str(v) for v in df[col]]
    return [str(i) for i in range(len(df))]


def _check_unique(ids: list[str], path: Path) -> None:
    seen: set[str] = set()
    for row, i in enumerate(ids, 1):
        if i in seen:
            raise DataError(f"duplicate id {i!r}", path=str(path), row=row, rule="ids are unique")
        seen.add(i)


def list_images(images: str | os.PathLike, id_column: str | None = None,
                path_column: str = "path") -> tuple[list[str], list[Path]]:
    """(ids, paths) of a folder of images (id = relative path without extension) or of a
    table with an id column and a path column (relative paths: from the table's folder)."""
    src = Path(images)
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        ids = [p.relative_to(src).with_suffix("").as_posix() for p in paths]
    elif src.is_file():
        df = _read_table(src)
        if path_column not in df.columns:
            raise DataError(f"no column {path_column!r} (image paths)", path=str(src),
                            rule="pass --path-column")
        ids = _id_column(df, id_column, src, ("image_id", "id"))
        paths = [Path(p) if Path(p).is_absolute() else src.parent / p
                 for p in df[path_column].astype(str)]
    else:
        raise DataError("no such folder or table", path=str(src))
    _check_unique(ids, src)
    return ids, paths


def list_texts(table: str | os.PathLike, text_column: str = "prompt",
               id_column: str | None = None) -> tuple[list[str], list[str]]:
    src = Path(table)
    if not src.is_file():
        raise DataError("no such table", path=str(src))
    df = _read_table(src)
    if text_column not in df.columns:
        raise DataError(f"no column {text_column!r}", path=str(src), rule="pass --text-column")
    ids = _id_column(df, id_column, src, ("image_id", "lora_id", "id"))
    _check_unique(ids, src)
    texts = ["" if v is None or v != v else str(v) for v in df[text_column]]
    return ids, texts


def _load_image(path: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception:
        return None


# the store ------------------------------------------------------------------------
def _ids_digest(ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8") + b"\n")
    return h.hexdigest()


def _folder(out: str | os.PathLike, encoder: str) -> Path:
    return Path(out) / "embeddings" / encoder


def read_store(out: str | os.PathLike, encoder: str, kind: str = "images",
               mmap: bool = True) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(embeddings memory-mapped, ids, metadata) of a finished store."""
    import pyarrow.parquet as pq

    folder = _folder(out, encoder)
    path = folder / f"{kind}.npy"
    if not path.is_file():
        raise DataError(f"no {encoder!r} embeddings for {kind!r}", path=str(path))
    arr = np.load(path, mmap_mode="r" if mmap else None)
    ids = pq.read_table(folder / f"{kind}.ids.parquet").column("id").to_pylist()
    meta = json.loads((folder / f"{kind}.json").read_text())
    return arr, ids, meta


#: (encoder, ids, items, images?, batch_size, first batch, end batch, workers) ->
#: (batch index, positions read within the batch, their vectors or None, ids not readable)
#: for each batch in [first, end), in order
BatchResult = tuple[int, list[int], "np.ndarray | None", list[str]]
BatchSource = Callable[..., Iterator[BatchResult]]


def encode_batch(enc: Encoder, ids: Sequence[str], items: Sequence[Any], images: bool,
                 load: Callable[..., Any] = map) -> tuple[list[int], np.ndarray | None, list[str]]:
    """(positions read, their vectors, ids that could not be read) of one batch.

    The one place a batch is computed, whichever engine runs it (``load`` maps
    :func:`_load_image` over paths, e.g. a thread pool's ``map``).
    """
    if not images:
        return list(range(len(items))), enc.encode_texts(list(items)), []
    loaded = list(load(_load_image, items))
    ok = [j for j, im in enumerate(loaded) if im is not None]
    lost = [ids[j] for j, im in enumerate(loaded) if im is None]
    vecs = enc.encode_images([loaded[j] for j in ok]) if ok else None
    return ok, vecs, lost


def local_batches(enc: Encoder, ids: Sequence[str], items: Sequence[Any], images: bool,
                  batch_size: int, first: int, end: int, workers: int = 4
                  ) -> Iterator[BatchResult]:
    """Batches ``first`` .. ``end - 1`` computed in this process (images read by threads)."""
    pool = ThreadPoolExecutor(max(1, workers)) if images else None
    try:
        for b in range(first, end):
            lo, hi = b * batch_size, min(len(ids), (b + 1) * batch_size)
            ok, vecs, lost = encode_batch(enc, ids[lo:hi], items[lo:hi], images,
                                          pool.map if pool is not None else map)
            yield b, ok, vecs, lost
    finally:
        if pool is not None:
            pool.shutdown()


def embed(
    encoder: str | Encoder,
    out: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    texts: str | os.PathLike | None = None,
    text_column: str = "prompt",
    id_column: str | None = None,
    path_column: str = "path",
    kind: str | None = None,
    name: str | None = None,
    batch_size: int = 64,
    device: str | None = None,
    workers: int = 4,
    max_batches: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    progress: bool = True,
    compute: BatchSource | None = None,
) -> dict[str, Any]:
    """Embed images (``images``: folder or table) or texts (``texts``: table) into ``out``.

    Resumes an interrupted run of the same inputs, encoder and batch size. With
    ``max_batches`` it stops after that many new batches (``complete`` False);
    ``on_batch(i)`` is called after batch ``i`` is flushed and recorded.
    Returns the store's metadata plus ``path``, ``complete`` and ``computed_batches``.
    ``compute`` says where batches are computed (default :func:`local_batches`, in this
    process); :func:`benchmark.distributed.ray_embed` passes Ray's. Writing, resume and
    the final store are the same whatever computes the batches.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmark.progress import progress_bar

    if (images is None) == (texts is None):
        raise DataError("give exactly one of images or texts")
    if batch_size < 1:
        raise DataError(f"batch size {batch_size} must be at least 1")
    if images is not None:
        ids, items = list_images(images, id_column, path_column)
        kind = kind or "images"
        source = str(images)
    else:
        ids, items = list_texts(texts, text_column, id_column)
        kind = kind or "texts"
        source = str(texts)
    if not ids:
        raise DataError("nothing to embed (no images / rows found)", path=source)

    enc = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
    slug = name or encoder_slug(enc.name)
    folder = _folder(out, slug)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{kind}.partial.npy"
    progress_file = folder / f"{kind}.progress.json"
    n = len(ids)
    n_batches = -(-n // batch_size)
    job = {
        "encoder": enc.name,
        "weights": enc.meta.get("weights"),
        "modality": "image" if images is not None else "text",
        "text_column": text_column if texts is not None else None,
        "ids_sha256": _ids_digest(ids),
        "rows": n,
        "batch_size": batch_size,
    }

    # a finished store of the same job: nothing to do
    meta_file = folder / f"{kind}.json"
    if meta_file.is_file() and not progress_file.exists():
        try:
            old = json.loads(meta_file.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("job") == job and (folder / f"{kind}.npy").is_file():
            return {**old, "path": str(folder), "complete": True, "computed_batches": 0}

    state: dict[str, Any] = {"job": job, "done_batches": 0, "dim": None, "missing": []}
    if progress_file.is_file() and partial.is_file():
        try:
            saved = json.loads(progress_file.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("job") == job:
            state = saved
    mm = None
    if state["done_batches"] and state["dim"]:
        mm = np.load(partial, mmap_mode="r+")
        if mm.shape != (n, state["dim"]) or mm.dtype != np.float32:
            mm, state = None, {"job": job, "done_batches": 0, "dim": None, "missing": []}

    missing: list[str] = list(state["missing"])
    computed = 0
    start_time = time.perf_counter()
    end = n_batches if max_batches is None else min(n_batches,
                                                    state["done_batches"] + max(0, max_batches))
    batch_source = compute or local_batches
    batches = batch_source(enc, ids, items, images is not None, batch_size, state["done_batches"],
                     end, workers)
    try:
        with progress_bar(total=n, desc=f"embed {kind}", unit="img" if images else "text",
                          enabled=progress) as bar:
            bar.update(min(n, state["done_batches"] * batch_size))
            for b, ok, vecs, lost in batches:
                if b != state["done_batches"]:
                    raise EmbedError(f"batch {b} arrived out of order "
                                     f"(expected {state['done_batches']})")
                lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                missing.extend(lost)
                if vecs is not None and mm is None:
                    state["dim"] = int(vecs.shape[1])
                    mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                                   shape=(n, state["dim"]))
                if vecs is not None:
                    rows = np.zeros((hi - lo, vecs.shape[1]), dtype=np.float32)
                    rows[ok] = vecs
                    mm[lo:hi] = rows
                    mm.flush()
                state["done_batches"] = b + 1
                state["missing"] = missing
                atomic_write_text(progress_file, json.dumps(state) + "\n")
                computed += 1
                bar.update(hi - lo)
                if on_batch is not None:
                    on_batch(b)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    seconds = time.perf_counter() - start_time

    if state["done_batches"] < n_batches:
        del mm
        return {"job": job, "path": str(folder), "complete": False,
                "done_batches": state["done_batches"], "batches": n_batches,
                "computed_batches": computed, "missing": missing}

    # finish: keep the rows that were read, write the final files atomically
    missing_set = set(missing)
    keep = np.array([i not in missing_set for i in ids], dtype=bool)
    final = folder / f"{kind}.npy"
    dim = state["dim"] or 0
    with atomic_path(final) as tmp:
        out_arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(int(keep.sum()), dim))
        pos = 0
        step = 1 << 16
        for lo in range(0, n, step):
            sel = keep[lo:lo + step]
            k = int(sel.sum())
            if k and mm is not None:
                out_arr[pos:pos + k] = np.asarray(mm[lo:lo + step])[sel]
            pos += k
        out_arr.flush()
        del out_arr, mm
    kept_ids = [i for i, k in zip(ids, keep, strict=True) if k]
    with atomic_path(folder / f"{kind}.ids.parquet") as ids_tmp:
        pq.write_table(pa.table({"id": pa.array(kept_ids, pa.string())}), ids_tmp,
                       compression="zstd")
    meta = {
        "store_version": STORE_VERSION,
        **enc.meta,
        "kind": kind,
        "source": source,
        "rows": len(kept_ids),
        "dim": dim,
        "dtype": "float32",
        "normalised": "l2",
        "missing_count": len(missing),
        "missing": missing,
        "job": job,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "last_run_seconds": round(seconds, 3),
    }
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    progress_file.unlink()
    partial.unlink()
    return {**meta, "path": str(folder), "complete": True, "computed_batches": computed}
