"""LoRA weights for the synthetic world, and the renderer and judge that know its truth.

Generator (per data set seed; ``s`` = the LoRA's unit style, ``truth/lora_style``): a few tiny
layers ``l`` (:data:`LAYERS`), each with a fixed seeded matrix ``A_l`` (out x d_style) and unit
vector ``b_l`` (in). The LoRA's true update is rank one and linear in its style::

    delta W_l = (A_l s) b_l^T

A written LoRA of rank r (1, 2 or 4, seeded per LoRA) has ``up[:, 0] = A_l s + noise``,
``down[0] = b_l``, and r - 1 further weak noise components; kohya files (about half) carry
``alpha = 1`` (so ``up`` is multiplied by r to compensate), PEFT files no alpha (alpha = r).

Renderer: delta W of every layer (from weights or canonical vectors) -> least-squares style on
the known linear map ``vec(delta W) = M s`` -> unit style -> embedding
``normalise(common + P style)``, the noise-free version of the map the ``synthetic-clip``
embeddings use (``common`` and ``P`` are re-drawn from the data set's seed exactly as
``benchmark.data.synthetic`` draws them).
Judge: the user's true utility of a rendered style, ``beta * <user_taste_final[u], style>``
(style = normalise(P^T-part of the embedding)); an edited LoRA has no popularity, so the
popularity term of the world's utility is left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.store import Dataset
from benchmark.data.synthetic_draws import orthonormal_columns, rowdot
from benchmark.errors import DataError, NotApplicable
from benchmark.lora.bank import Layer, Layout, write_lora
from benchmark.progress import progress_bar

#: (canonical name, out, in) of the synthetic layers
LAYERS: tuple[tuple[str, int, int], ...] = (
    ("unet_down_blocks_0_attn_to_q", 24, 16),
    ("unet_up_blocks_0_attn_to_k", 16, 24),
    ("te_layers_0_mlp_fc1", 12, 8),
)
RANKS = (1, 2, 4)
#: part of the cache key of written banks: bump when weights or canonical vectors change
GENERATOR_VERSION = "1"
_GEN_STREAM, _LORA_STREAM = 9101, 9102


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class SyntheticWorld:
    """The synthetic data set's truth plus the LoRA weight generator."""

    def __init__(self, dataset: Dataset, noise: float = 0.02) -> None:
        if not dataset.has_truth:
            raise NotApplicable("the synthetic LoRA world needs a synthetic data set (truth/)")
        arrays, params = dataset.truth()
        cfg = params["config"]
        self.dataset, self.noise, self.seed = dataset, noise, int(params["seed"])
        self.beta = float(params["beta"])
        self.lora_style = np.asarray(arrays["lora_style"], np.float64)
        self.user_taste = np.asarray(arrays["user_taste_final"], np.float64)
        self.d = self.lora_style.shape[1]
        # the embedding map, re-drawn exactly as benchmark.data.synthetic._world draws it
        rng = np.random.default_rng([self.seed, 0])
        rng.standard_normal((cfg["n_clusters"], cfg["d_style"]))
        rng.dirichlet(np.full(cfg["n_clusters"], cfg["cluster_concentration"]))
        basis = orthonormal_columns(rng.standard_normal((cfg["emb_dim"], cfg["d_style"] + 1)))
        self.common = cfg["emb_common"] * basis[:, 0]
        self.proj = basis[:, 1:].T  # (d_style, emb_dim), orthonormal rows
        gen = np.random.default_rng([self.seed, _GEN_STREAM])
        self.A = {n: gen.standard_normal((o, self.d)) / np.sqrt(self.d) for n, o, _ in LAYERS}
        self.b = {n: _normalise(gen.standard_normal(i)) for n, _, i in LAYERS}
        # vec(delta W_l) = M_l s, stacked over layers; the renderer solves it by least squares
        self.M = np.concatenate([np.einsum("od,i->oid", self.A[n], self.b[n]).reshape(o * i, self.d)
                                 for n, o, i in LAYERS])
        self.M_pinv = np.linalg.pinv(self.M)
        self.lora_ids = dataset.ids("loras")
        self.user_ids = dataset.ids("users")

    def lora_layers(self, row: int) -> tuple[dict[str, Layer], str]:
        """Layers of LoRA ``row`` (dense index) and its key style, deterministic per row."""
        rng = np.random.default_rng([self.seed, _LORA_STREAM, int(row)])
        rank = int(RANKS[rng.integers(len(RANKS))])
        style = "kohya" if rng.random() < 0.5 else "peft"
        layers = {}
        for name, o, i in LAYERS:
            up = rng.standard_normal((o, rank)) * (self.noise / np.sqrt(o))
            up[:, 0] += rowdot(self.A[name], self.lora_style[row])  # no BLAS: same bytes anywhere
            down = rng.standard_normal((rank, i)) * (1.0 / np.sqrt(i))
            down[0] = self.b[name]
            alpha = 1.0 if style == "kohya" else float(rank)
            up *= rank / alpha
            layers[name] = (up.astype(np.float32), down.astype(np.float32), alpha)
        if style == "peft":  # PEFT files carry no alpha: the reader takes alpha = rank
            layers = {n: (u, d, float(u.shape[1])) for n, (u, d, _) in layers.items()}
        return layers, style

    def write_bank(self, out: str | os.PathLike, lora_ids: Sequence[str] | None = None,
                   limit: int | None = 2000, progress: bool = True) -> list[Path]:
        """Write LoRA files ``<out>/<lora_id>.safetensors`` (default: the first ``limit``)."""
        ids = list(self.lora_ids[:limit] if lora_ids is None else lora_ids)
        rows = self.lora_ids.get_indexer(pd.Index(ids, dtype=object))
        if (rows < 0).any():
            bad = ids[int(np.flatnonzero(rows < 0)[0])]
            raise DataError(f"unknown lora_id {bad!r}", path=str(self.dataset.path),
                            rule="LoRAs to write are in loras.parquet")
        written = []
        with progress_bar(len(ids), "write LoRAs", "file", enabled=progress) as bar:
            for lora_id, row in zip(ids, rows, strict=True):
                layers, style = self.lora_layers(int(row))
                written.append(_write_synthetic(Path(out) / f"{lora_id}.safetensors", layers,
                                                style, lora_id))
                bar.update()
        return written

    def delta_weights(self, weights: np.ndarray | Sequence[dict[str, Layer]],
                      layout: Layout | None = None) -> np.ndarray:
        """Stacked vec(delta W_l) over :data:`LAYERS`, (n, sum out*in); absent layers are 0."""
        if isinstance(weights, np.ndarray):
            if layout is None:
                raise ValueError("canonical vectors need their layout")
            w = np.asarray(weights, np.float64).reshape(-1, layout.dim)
            parts = {}
            for name, o, i, k, su, sd in layout.slices():
                up = w[:, su].reshape(-1, o, k)
                down = w[:, sd].reshape(-1, k, i)
                parts[name] = np.matmul(up, down).reshape(len(w), o * i)
            n = len(w)
        else:
            n = len(weights)
            parts = {}
            for name, o, i in LAYERS:
                mats = [np.asarray(lw[name][0], np.float64) @ lw[name][1] * (lw[name][2]
                        / lw[name][0].shape[1]) if name in lw else np.zeros((o, i))
                        for lw in weights]
                parts[name] = np.stack(mats).reshape(n, o * i) if mats else np.zeros((0, o * i))
        return np.concatenate([parts.get(name, np.zeros((n, o * i))) for name, o, i in LAYERS],
                              axis=1)

    def style_of(self, delta: np.ndarray) -> np.ndarray:
        """Unit style recovered from stacked delta W by least squares on the generator."""
        return _normalise(delta @ self.M_pinv.T)

    def embed(self, style: np.ndarray) -> np.ndarray:
        return _normalise(self.common + style @ self.proj).astype(np.float32)


def _write_synthetic(path: Path, layers: dict[str, Layer], style: str, lora_id: str) -> Path:
    if style == "peft":
        from safetensors.numpy import save_file

        tensors = {}
        for name, (up, down, _) in layers.items():
            tensors[f"{name.replace('_blocks_', '_blocks.')}.lora_B.weight"] = up
            tensors[f"{name.replace('_blocks_', '_blocks.')}.lora_A.weight"] = down
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"gembench.lora_id": lora_id,
                                                "gembench.base_model": "synthetic"})
        return path
    return write_lora(path, layers, style="kohya",
                      metadata={"gembench.lora_id": lora_id, "gembench.base_model": "synthetic"})


class SyntheticRenderer:
    """Renderer of the synthetic world (see module docstring); deterministic, no noise."""

    def __init__(self, world: SyntheticWorld) -> None:
        self.world = world

    def render(self, weights: np.ndarray | Sequence[dict[str, Layer]],
               layout: Layout | None = None) -> np.ndarray:
        w = self.world
        return w.embed(w.style_of(w.delta_weights(weights, layout)))


class SyntheticJudge:
    """The user's true utility of a render: ``beta * <taste_final[u], normalise(P e)>``."""

    def __init__(self, world: SyntheticWorld) -> None:
        self.world = world

    def score(self, user_ids: Sequence[str] | np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        w = self.world
        rows = w.user_ids.get_indexer(pd.Index(np.asarray(user_ids, dtype=object)))
        if (rows < 0).any():
            raise DataError(f"unknown user {np.asarray(user_ids)[rows < 0][0]!r}",
                            rule="judged users are in users.parquet")
        style = _normalise(np.asarray(embeddings, np.float64) @ w.proj.T)
        return w.beta * np.einsum("nd,nd->n", w.user_taste[rows], style)
