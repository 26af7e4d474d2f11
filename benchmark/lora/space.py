"""Latent weight space: PCA over the canonical vectors of one bank group (weights2weights).

``z = (x - mean) @ components.T``; ``x_hat = z @ components + mean``. Fitting streams over the
memory-mapped vectors in batches with scikit-learn's ``IncrementalPCA`` (exact PCA when the
whole group fits in one batch), so a 100K-LoRA bank is never loaded at once. Edits happen on
``z``; :func:`write_edit` turns an edited ``z`` back into a safetensors file with the key style
of the source LoRA.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import DataError
from benchmark.lora.bank import BankIndex, Layout, from_vector, read_lora, write_lora
from benchmark.progress import progress_bar


class LatentSpace:
    """PCA space of LoRA vectors; ``n_components=None`` keeps min(n, dim) components."""

    def __init__(self, n_components: int | None = 64, batch_size: int = 4096,
                 progress: bool = False) -> None:
        self.n_components = n_components
        self.batch_size = batch_size
        self.progress = progress

    def get_params(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "batch_size": self.batch_size}

    def fit(self, vectors: np.ndarray, layout: Layout | None = None) -> LatentSpace:
        """Stream ``vectors`` (n, dim), e.g. a memmap, through IncrementalPCA."""
        from sklearn.decomposition import IncrementalPCA

        n, dim = vectors.shape
        k = min(n, dim) if self.n_components is None else self.n_components
        if not 1 <= k <= min(n, dim):
            raise DataError(f"n_components={k} but the group has {n} LoRAs of dim {dim}",
                            rule="1 <= n_components <= min(n_loras, dim)")
        batch = max(self.batch_size, k)
        # every batch must hold >= k rows: fold a short tail into the previous batch
        bounds = list(range(0, n, batch)) + [n]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < k:
            bounds.pop(-2)
        pca = IncrementalPCA(n_components=k)
        with progress_bar(len(bounds) - 1, "fit PCA", "batch", enabled=self.progress) as bar:
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                pca.partial_fit(np.asarray(vectors[a:b], dtype=np.float64))
                bar.update()
        self.mean_ = pca.mean_.astype(np.float64)
        self.components_ = pca.components_.astype(np.float64)
        self.explained_variance_ = pca.explained_variance_.astype(np.float64)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float64)
        self.n_samples_ = n
        self.layout_ = layout
        return self

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, np.float64) - self.mean_) @ self.components_.T)

    def transform_batches(self, vectors: np.ndarray) -> np.ndarray:
        """``transform`` over a memmap in batches: (n, k) float32 latents."""
        out = np.empty((len(vectors), self.components_.shape[0]), np.float32)
        for a in range(0, len(vectors), self.batch_size):
            out[a:a + self.batch_size] = self.transform(vectors[a:a + self.batch_size])
        return out

    def inverse_transform(self, latents: np.ndarray) -> np.ndarray:
        return (np.asarray(latents, np.float64) @ self.components_ + self.mean_).astype(np.float32)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        extra = {"layout": np.array(repr(self.layout_.to_json()))} if self.layout_ else {}
        np.savez(path, mean=self.mean_, components=self.components_,
                 explained_variance=self.explained_variance_,
                 explained_variance_ratio=self.explained_variance_ratio_,
                 n_samples=np.array(self.n_samples_), **extra)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatentSpace:
        import ast

        with np.load(path, allow_pickle=False) as z:
            space = cls(n_components=int(z["components"].shape[0]))
            space.mean_, space.components_ = z["mean"], z["components"]
            space.explained_variance_ = z["explained_variance"]
            space.explained_variance_ratio_ = z["explained_variance_ratio"]
            space.n_samples_ = int(z["n_samples"])
            space.layout_ = (Layout.from_json(ast.literal_eval(str(z["layout"])))
                             if "layout" in z.files else None)
        return space


def fit_space(index: BankIndex, group: int, n_components: int | None = 64,
              batch_size: int = 4096, progress: bool = False) -> LatentSpace:
    """Fit the latent space of one bank group, streaming over its memmap."""
    return LatentSpace(n_components, batch_size, progress).fit(index.vectors(group),
                                                               index.layout(group))


def write_edit(space: LatentSpace, latent: np.ndarray, source: str | os.PathLike,
               out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Decode ``latent`` and write it as a LoRA file keyed like ``source`` (kohya or PEFT)."""
    if space.layout_ is None:
        raise ValueError("the space has no layout; fit it with one")
    like = read_lora(source)
    layers = from_vector(space.inverse_transform(np.asarray(latent)[None])[0], space.layout_)
    return write_lora(out, layers, like=like, metadata=metadata)
