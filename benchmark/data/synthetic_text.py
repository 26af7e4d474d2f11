"""A text encoder for the synthetic world: prompts -> vectors in the ``synthetic-clip`` space.

The synthetic generator writes image and LoRA embeddings only. Its prompts are words of style
clusters (cluster c owns vocabulary words ``[c V, (c + 1) V)``) plus generic words, so a
CLIP-like text embedding follows from the world itself, which is a pure function of the data
set's config and seed (the generator's ``_world`` stream): nothing new has to be stored and
the generator's files stay byte-identical. The encoder, for a prompt with cluster words W::

    word(w)   = normalise(centre[cluster(w)] + eps_w),   eps_w ~ N(0, word_noise^2 / d_style I)
    style(p)  = normalise(sum_{w in W} word(w))          (0 when W is empty)
    text(p)   = normalise(common + style(p) P)

with ``common`` and ``P`` the generator's shared direction and orthonormal map (as for the
images), and eps_w drawn once per word from its own stream ``(seed, 1000)``: a word is a noisy
pointer at its cluster, as a real caption is a noisy pointer at a style. Generic words
("masterpiece", "8k") carry no style.

Like the generator, the encoder sends no float through the BLAS (its sums would depend on the
CPU kernel and the thread count): the word counts are a scipy sparse product (its own loops) and
``style(p) P`` is the generator's float64 ``einsum`` (``_matmul``), so a prompt's vector is
byte-identical on every machine with the same library versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from benchmark.data.store import Dataset
from benchmark.errors import DataError

if TYPE_CHECKING:
    from benchmark.data.synthetic import SyntheticConfig

__all__ = ["SyntheticTextEncoder"]

_TEXT_STREAM = 1000  # distinct from the generator's streams 0..6


class SyntheticTextEncoder:
    """Encodes prompts of a synthetic data set; ``from_dataset`` rebuilds the world."""

    def __init__(self, config: SyntheticConfig, seed: int, word_noise: float = 0.5):
        from benchmark.data.synthetic import _Generator
        from benchmark.data.synthetic_draws import normalise as _normalise

        gen = _Generator(config, seed, writer=None, progress=False)
        gen._world()  # the world stream only: centres, P, common direction, vocabulary
        self.n_cluster_words = int(gen.n_cluster_words)
        self.words_per_cluster = int(config.words_per_cluster)
        self.vocab = gen.vocab
        rng = np.random.default_rng([int(seed), _TEXT_STREAM])
        cluster = np.arange(self.n_cluster_words) // self.words_per_cluster
        noise = rng.standard_normal((self.n_cluster_words, config.d_style)).astype(np.float32)
        noise *= np.float32(word_noise / np.sqrt(config.d_style))
        words = _normalise(gen.centres[cluster].astype(np.float32) + noise)
        # generic words: a zero style row (index n_cluster_words .. len(vocab) - 1)
        pad = np.zeros((len(self.vocab) - self.n_cluster_words, config.d_style), np.float32)
        self.word_style = np.concatenate([words, pad])
        self.proj = gen.proj
        self.common = gen.common
        self.dim = int(config.emb_dim)

    @classmethod
    def from_dataset(cls, dataset: Dataset, word_noise: float = 0.5) -> SyntheticTextEncoder:
        from benchmark.data.synthetic import SyntheticConfig

        meta = dataset.meta
        if meta.get("source") != "synthetic" or "config" not in meta:
            raise DataError("not a synthetic data set (no generator config)",
                            path=str(dataset.path / "dataset.json"),
                            rule="the synthetic text encoder needs source 'synthetic'")
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        return cls(SyntheticConfig(**raw), int(meta.get("seed", 0)), word_noise)

    def encode(self, prompts: list[str] | pa.Array | np.ndarray) -> np.ndarray:
        """float32 [n, emb_dim], unit-norm rows, one per prompt (vectorised over all words)."""
        from benchmark.data.synthetic_draws import matmul as _matmul
        from benchmark.data.synthetic_draws import normalise as _normalise

        arr = pa.array(np.asarray(prompts, dtype=object), pa.string()) \
            if not isinstance(prompts, pa.Array) else prompts.cast(pa.string())
        arr = pc.fill_null(arr, "")
        tokens = pc.split_pattern(arr, " ")
        flat = pc.list_flatten(tokens)
        parent = pc.list_parent_indices(tokens).to_numpy()
        # cluster words first in the vocabulary: index_in finds their first occurrence
        word = pc.fill_null(pc.index_in(flat, value_set=self.vocab), -1).to_numpy()
        word = word.astype(np.int64)
        keep = (word >= 0) & (word < self.n_cluster_words)
        counts = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (parent[keep], word[keep])),
            shape=(len(arr), len(self.word_style)),
        )
        style = _normalise(np.asarray(counts @ self.word_style, dtype=np.float32))
        projected = _matmul(style, self.proj).astype(np.float32)  # no BLAS: see _matmul
        return _normalise(projected + self.common).astype(np.float32)
