"""LoRA bank: read LoRA safetensors files, put each in a canonical flat vector, index them.

Two key styles are read (one file uses one style):

- kohya / sd-scripts: ``<prefix>.lora_up.weight`` (out x r), ``<prefix>.lora_down.weight``
  (r x in), optional scalar ``<prefix>.alpha`` (absent: alpha = r);
- diffusers / PEFT: ``<prefix>.lora_B.weight`` (out x r, "up"), ``<prefix>.lora_A.weight``
  (r x in, "down"), optional ``<prefix>.alpha``.

A layer's update is ``delta W = up @ down * alpha / r``. Layer names are made comparable across
styles: ``base_model.model.`` is stripped, ``.`` becomes ``_`` and a leading ``lora_`` is dropped
(``lora_unet_mid_block_proj`` and ``unet.mid_block.proj`` are both ``unet_mid_block_proj``).

Canonical forms (one flat float32 vector per LoRA, layers in sorted name order):

- ``rank1`` (default, the ImageGem / weights2weights choice): each delta W is cut to its top
  singular triple (s, u, v) and stored as ``[sqrt(s) u, sqrt(s) v]`` (out + in numbers), the sign
  fixed so that v's largest-magnitude entry is positive (a convention: a bank whose v change
  their dominant entry can still be split by flips). Mixed ranks land in one space; a rank-1
  LoRA round-trips exactly (up = sqrt(s) u, down = sqrt(s) v^T, alpha = 1).
- ``raw``: ``[(alpha / r) up, down]`` flattened; no information is lost, but only LoRAs with
  the same rank per layer share a space (the rank is part of the layout).

LoRAs are grouped by (base model, layout); each group's vectors are one float32 file opened as a
``np.memmap``, so a bank of 100K LoRAs never has to fit in memory. Files that cannot be read or
break a rule are listed (path, reason) in the index and skipped; indexing never stops for them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.io import atomic_write_text
from benchmark.errors import DataError
from benchmark.progress import progress_bar

__all__ = [
    "FORMS", "STYLES", "BankIndex", "Layout", "LoRAFile", "build_index", "canonical_layer_name",
    "from_vector", "layout_of", "open_index", "read_lora", "to_vector", "write_lora",
]

FORMS = ("rank1", "raw")
STYLES = ("kohya", "peft")
INDEX_SCHEMA = "gembench.lora-bank/1"
_SUFFIXES = {
    ".lora_up.weight": ("kohya", "up"),
    ".lora_down.weight": ("kohya", "down"),
    ".lora_B.weight": ("peft", "up"),
    ".lora_A.weight": ("peft", "down"),
    ".alpha": (None, "alpha"),
}
_BASE_MODEL_KEYS = ("gembench.base_model", "base_model", "ss_base_model_version")
Layer = tuple[np.ndarray, np.ndarray, float]  # up (out x r), down (r x in), alpha


def canonical_layer_name(prefix: str) -> str:
    """Style-independent layer name (see module docstring)."""
    name = prefix.removeprefix("base_model.model.").replace(".", "_")
    return name.removeprefix("lora_")


@dataclass
class LoRAFile:
    """One LoRA as read from disk: layers by canonical name, plus what is needed to write back."""

    path: str
    style: str
    layers: dict[str, Layer]
    prefixes: dict[str, str] = field(default_factory=dict)  # canonical name -> original prefix
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def lora_id(self) -> str:
        return self.metadata.get("gembench.lora_id") or Path(self.path).name.removesuffix(
            ".safetensors")

    @property
    def base_model(self) -> str:
        return next((self.metadata[k] for k in _BASE_MODEL_KEYS if self.metadata.get(k)),
                    "unknown")


def read_lora(path: str | os.PathLike) -> LoRAFile:
    """Read and check one LoRA file; any problem is a :class:`DataError` naming the file."""
    from safetensors import safe_open

    path = str(path)
    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for corrupt files
        raise DataError(f"not a readable safetensors file: {e}", path=path,
                        rule="LoRA files are safetensors") from None
    parts: dict[str, dict[str, np.ndarray]] = {}
    styles = set()
    for key in sorted(tensors):
        hit = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if hit is None:
            raise DataError(f"unrecognised tensor key {key!r}", path=path,
                            rule="keys end in .lora_{up,down,A,B}.weight or .alpha")
        style, role = _SUFFIXES[hit]
        if style:
            styles.add(style)
        parts.setdefault(key[: -len(hit)], {})[role] = tensors[key]
    if len(styles) != 1:
        raise DataError(f"key styles {sorted(styles) or 'none'} in one file", path=path,
                        rule="one key style per file (kohya lora_up/lora_down or PEFT lora_A/B)")
    layers, prefixes = {}, {}
    for prefix, p in parts.items():
        name = canonical_layer_name(prefix)
        if "up" not in p or "down" not in p:
            raise DataError(f"layer {prefix!r} lacks its {'up' if 'up' not in p else 'down'} "
                            "matrix", path=path, rule="every layer has both factors")
        up, down = p["up"], p["down"]
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
            raise DataError(f"layer {prefix!r}: up {up.shape} and down {down.shape} do not "
                            "multiply", path=path,
                            rule="up is (out, r), down is (r, in); conv (4-D) layers unsupported")
        rank = up.shape[1]
        alpha = float(np.asarray(p["alpha"]).reshape(-1)[0]) if "alpha" in p else float(rank)
        if not (np.isfinite(up).all() and np.isfinite(down).all() and np.isfinite(alpha)):
            raise DataError(f"layer {prefix!r} has non-finite values", path=path,
                            rule="weights are finite")
        if name in layers:
            raise DataError(f"two layers map to {name!r}", path=path,
                            rule="canonical layer names are unique")
        layers[name] = (up.astype(np.float32), down.astype(np.float32), alpha)
        prefixes[name] = prefix
    if not layers:
        raise DataError("no LoRA layers", path=path, rule="a LoRA has at least one layer")
    return LoRAFile(path, styles.pop(), dict(sorted(layers.items())), prefixes, metadata)


def write_lora(path: str | os.PathLike, layers: dict[str, Layer], *, style: str = "kohya",
               like: LoRAFile | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write layers as safetensors; ``like`` copies a source file's key style and prefixes."""
    from safetensors.numpy import save_file

    if like is not None:
        style = like.style
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    up_key, down_key = (("lora_up", "lora_down") if style == "kohya" else ("lora_B", "lora_A"))
    tensors = {}
    for name, (up, down, alpha) in layers.items():
        if like is not None and name in like.prefixes:
            prefix = like.prefixes[name]
        else:
            prefix = f"lora_{name}" if style == "kohya" else name
        tensors[f"{prefix}.{up_key}.weight"] = np.ascontiguousarray(up, dtype=np.float32)
        tensors[f"{prefix}.{down_key}.weight"] = np.ascontiguousarray(down, dtype=np.float32)
        tensors[f"{prefix}.alpha"] = np.asarray(alpha, dtype=np.float32)
    meta = {**(like.metadata if like is not None else {}), **(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={k: str(v) for k, v in meta.items()} or None)
    return path


@dataclass(frozen=True)
class Layout:
    """The shape of a canonical vector: form and (name, out, in, rank) per layer (rank: raw)."""

    form: str
    layers: tuple[tuple[str, int, int, int], ...]

    @property
    def dim(self) -> int:
        if self.form == "rank1":
            return sum(o + i for _, o, i, _ in self.layers)
        return sum((o + i) * r for _, o, i, r in self.layers)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.form, self.layers]).encode()).hexdigest()[:12]

    def slices(self) -> list[tuple[str, int, int, int, slice, slice]]:
        """(name, out, in, rank, up part, down part) of each layer inside a vector."""
        out, pos = [], 0
        for name, o, i, r in self.layers:
            k = 1 if self.form == "rank1" else r
            out.append((name, o, i, k, slice(pos, pos + o * k), slice(pos + o * k,
                                                                    pos + o * k + i * k)))
            pos += (o + i) * k
        return out

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "layers": [list(x) for x in self.layers]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Layout:
        return cls(obj["form"], tuple((str(n), int(o), int(i), int(r))
                                      for n, o, i, r in obj["layers"]))


def layout_of(lora: LoRAFile, form: str = "rank1") -> Layout:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}")
    return Layout(form, tuple((n, up.shape[0], down.shape[1], up.shape[1] if form == "raw" else 1)
                              for n, (up, down, _) in lora.layers.items()))


def _top_component(up: np.ndarray, down: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """sqrt(s) u and sqrt(s) v of the top singular triple of scale * up @ down (never formed)."""
    qu, ru = np.linalg.qr(up.astype(np.float64))
    qd, rd = np.linalg.qr(down.T.astype(np.float64))
    a, s, bt = np.linalg.svd(scale * ru @ rd.T)
    u, v = qu @ a[:, 0], qd @ bt[0]
    if v[np.argmax(np.abs(v))] < 0:
        u, v = -u, -v
    root = np.sqrt(s[0])
    return root * u, root * v


def to_vector(lora: LoRAFile, form: str = "rank1") -> np.ndarray:
    """The canonical float32 vector of ``lora`` (see module docstring)."""
    parts = []
    for up, down, alpha in lora.layers.values():
        scale = alpha / up.shape[1]
        if form == "rank1":
            parts.extend(_top_component(up, down, scale))
        elif form == "raw":
            parts.extend([(scale * up).ravel(), down.ravel()])
        else:
            raise ValueError(f"form must be one of {FORMS}")
    return np.concatenate(parts).astype(np.float32)


def from_vector(vector: np.ndarray, layout: Layout) -> dict[str, Layer]:
    """Layers (up, down, alpha) of a canonical vector; alpha = rank so the scale is 1."""
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape != (layout.dim,):
        raise ValueError(f"vector of shape {vector.shape}, layout wants ({layout.dim},)")
    return {name: (vector[su].reshape(o, k).copy(), vector[sd].reshape(k, i).copy(), float(k))
            for name, o, i, k, su, sd in layout.slices()}


# the index ---------------------------------------------------------------------------------------
@dataclass
class BankIndex:
    """An indexed bank: groups of (base model, layout), each a memory-mapped vector file."""

    path: Path
    meta: dict[str, Any]

    @property
    def form(self) -> str:
        return str(self.meta["form"])

    @property
    def groups(self) -> list[dict[str, Any]]:
        return list(self.meta["groups"])

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.meta["skipped"])

    def layout(self, group: int) -> Layout:
        return Layout.from_json(self.meta["groups"][group]["layout"])

    def vectors(self, group: int) -> np.ndarray:
        """The group's vectors, (n, dim) float32, memory-mapped read-only."""
        g = self.meta["groups"][group]
        if g["n"] == 0:
            return np.zeros((0, self.layout(group).dim), np.float32)
        return np.memmap(self.path / g["file"], dtype=np.float32, mode="r",
                         shape=(g["n"], self.layout(group).dim))

    def entries(self, group: int | None = None) -> list[dict[str, Any]]:
        rows = self.meta["entries"]
        return [r for r in rows if group is None or r["group"] == group]

    def ids(self, group: int) -> list[str]:
        return [r["lora_id"] for r in self.entries(group)]

    def largest_group(self, base_model: str | None = None) -> int:
        cands = [(g["n"], -k) for k, g in enumerate(self.groups)
                 if base_model is None or g["base_model"] == base_model]
        if not cands:
            raise DataError(f"no LoRAs for base model {base_model!r}", path=str(self.path),
                            rule="the bank holds that base model")
        return -max(cands)[1]


def _sources(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(sources, str | os.PathLike):
        root = Path(sources)
        if root.is_dir():
            return sorted(root.rglob("*.safetensors"))
        return [root]
    return [Path(p) for p in sources]


def build_index(sources: str | os.PathLike | Iterable[str | os.PathLike],
                out: str | os.PathLike, form: str = "rank1", progress: bool = True) -> BankIndex:
    """Read every LoRA of ``sources`` (a folder, searched recursively, or paths) into ``out``.

    Bad files are skipped and listed in ``index.json`` under ``skipped`` with the reason.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("group-*.f32"):
        old.unlink()
    paths = _sources(sources)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    handles: dict[tuple[str, str], Any] = {}
    entries, skipped, seen = [], [], set()
    try:
        with progress_bar(len(paths), "index LoRAs", "file", enabled=progress) as bar:
            for p in paths:
                bar.update()
                try:
                    lora = read_lora(p)
                    layout = layout_of(lora, form)
                    vec = to_vector(lora, form)
                except DataError as e:
                    skipped.append({"path": str(p), "reason": str(e)})
                    continue
                if lora.lora_id in seen:
                    skipped.append({"path": str(p),
                                    "reason": f"duplicate lora_id {lora.lora_id!r}"})
                    continue
                seen.add(lora.lora_id)
                key = (lora.base_model, layout.key)
                if key not in groups:
                    k = len(groups)
                    groups[key] = {"group": k, "base_model": lora.base_model,
                                   "layout": layout.to_json(), "n": 0,
                                   "file": f"group-{k:03d}.f32"}
                    handles[key] = open(out / groups[key]["file"], "wb")  # noqa: SIM115
                g = groups[key]
                handles[key].write(vec.tobytes())
                entries.append({"lora_id": lora.lora_id, "path": str(p), "group": g["group"],
                                "row": g["n"], "style": lora.style})
                g["n"] += 1
    finally:
        for h in handles.values():
            h.close()
    meta = {"schema": INDEX_SCHEMA, "form": form, "groups": list(groups.values()),
            "entries": entries, "skipped": skipped}
    atomic_write_text(out / "index.json", json.dumps(meta, indent=1) + "\n")
    return BankIndex(out, meta)


def open_index(path: str | os.PathLike) -> BankIndex:
    path = Path(path)
    try:
        meta = json.loads((path / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"not a LoRA bank index: {e}", path=str(path / "index.json"),
                        rule="build one with 'gembench loras index'") from None
    if meta.get("schema") != INDEX_SCHEMA:
        raise DataError(f"schema {meta.get('schema')!r}", path=str(path / "index.json"),
                        rule=f"schema is {INDEX_SCHEMA}")
    return BankIndex(path, meta)
