"""``clip-text``: the user's own prompts, as text queries, retrieve items through faiss.

A user u who created images with prompts p_1..p_n (before the end of their training history)
is the query q_u = normalise(sum_j t(p_j)), t the text embedding in the item encoder's space
(CLIP: text and image towers share one space), and

    score(u, i) = <q_u, e_i>,   e_i the unit-norm item embedding,

retrieved through a faiss index (exact ``flat`` by default; see baselines/_retrieval.py). What
a user writes is a taste signal that interactions do not carry, and it exists for cold items.

Which prompts count (no peeking at the held-out part): images of u created at or before u's
last training interaction, and on the LoRA track only images all of whose LoRAs are among u's
training items (an image made with a held-out LoRA would reveal it). Users with no such prompt
fall back to the clip-mean profile of their history (``fallback="history"``) or a zero query
(``"none"``: every item ties). Text embeddings come from ``embeddings/<text_encoder>/text.npy``
(rows = image ids listed in ``text.ids.parquet``; ``gembench embed --texts images.parquet
--id-column image_id --kind text``) or, on a synthetic data set without them, from
:class:`benchmark.data.synthetic_text.SyntheticTextEncoder`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from baselines._content import item_embeddings, normalise_rows
from baselines._retrieval import FaissRetrieval
from benchmark.errors import DataError, NotApplicable
from benchmark.protocols import InteractionData, SideInfo
from benchmark.views import text_encoder_of

TEXT_KIND = "text"


class ClipText(FaissRetrieval):
    name = "clip-text"

    def __init__(
        self,
        encoder: str | None = None,
        text_encoder: str | None = None,
        fallback: str = "history",
        index: str = "flat",
        n_candidates: int = 100,
        nlist: int | None = None,
        nprobe: int = 8,
        m: int = 32,
        ef_search: int = 128,
        device: str = "auto",
        seed: int = 0,
    ):
        self.encoder = encoder
        self.text_encoder = text_encoder
        self.fallback = fallback
        self.index = index
        self.n_candidates = n_candidates
        self.nlist = nlist
        self.nprobe = nprobe
        self.m = m
        self.ef_search = ef_search
        self.device = device
        self.seed = seed

    def fit(self, train: InteractionData, side: SideInfo) -> ClipText:
        if self.fallback not in ("history", "none"):
            raise ValueError(f"fallback must be 'history' or 'none', got {self.fallback!r}")
        item_emb, self.encoder_ = item_embeddings(train, side, self.encoder)
        if side.view is None or not side.view.has_table("images"):
            raise NotApplicable("clip-text needs the images table (prompts)")
        image_ids, user_of = self._history_images(train, side)
        text = self._prompt_vectors(side, image_ids)
        if text.shape[1] != item_emb.shape[1]:
            raise NotApplicable(f"text embeddings have dimension {text.shape[1]}, items "
                                f"{item_emb.shape[1]}: they must share one space")
        pooled = sp.csr_matrix(
            (np.ones(len(user_of), np.float32), (user_of, np.arange(len(user_of)))),
            shape=(train.n_users, len(user_of)),
        ) @ text
        queries = normalise_rows(np.asarray(pooled, dtype=np.float32))
        self.n_prompts_ = np.bincount(user_of, minlength=train.n_users)
        missing = self.n_prompts_ == 0
        if self.fallback == "history" and missing.any():
            profile = normalise_rows(np.asarray(train.matrix[missing] @ item_emb, np.float32))
            queries[missing] = profile
        self._fit_index(queries, item_emb, np.diff(train.matrix.indptr))
        self.extra_["users_without_prompts"] = float(missing.mean()) if len(missing) else 0.0
        return self

    def _history_images(self, train: InteractionData, side: SideInfo
                        ) -> tuple[pd.Index, np.ndarray]:
        """Ids of the images whose prompts the user may use, and their users.

        The harness's training view already holds only visible images; the same rule is
        applied again here so the method stays honest when handed a whole data set.
        """
        from benchmark.views import visible_images

        columns = ["image_id", "user_id", "created_at"] + (
            ["lora_ids"] if side.item_kind == "lora" else [])
        table = side.view.arrow("images", columns)
        rows = visible_images(table, train, None)
        user = train.user_ids.get_indexer(
            table.column("user_id").to_numpy(zero_copy_only=False).astype(str))
        ids = pd.Index(table.column("image_id").to_numpy(zero_copy_only=False).astype(str),
                       dtype=object)
        return ids[rows], user[rows]

    def _prompt_vectors(self, side: SideInfo, image_ids: pd.Index) -> np.ndarray:
        """Unit-norm text embeddings of the prompts of the images ``image_ids``."""
        view = side.view
        name = self.text_encoder or self.encoder_
        if TEXT_KIND in view.embedding_kinds(name):
            stored = view.embedding_ids(name, TEXT_KIND)
            rows = stored.get_indexer(image_ids)
            if (rows < 0).any():
                first = int(np.flatnonzero(rows < 0)[0])
                raise DataError(f"image {image_ids[first]!r} has no text embedding",
                                path=f"embeddings/{name}/{TEXT_KIND}.ids.parquet",
                                rule="every history image has a row")
            matrix = view.embeddings(name, TEXT_KIND)
            return normalise_rows(np.asarray(matrix[rows], dtype=np.float32))
        if view.meta.get("source") == "synthetic":
            images = view.arrow("images", ["image_id", "prompt"])
            at = pd.Index(images.column("image_id").to_numpy(zero_copy_only=False).astype(str),
                          dtype=object).get_indexer(image_ids)
            chosen = images.column("prompt").combine_chunks().take(pa.array(at, pa.int64()))
            codes, uniques = pd.factorize(
                np.asarray(chosen.to_numpy(zero_copy_only=False), dtype=object))
            vectors = text_encoder_of(view).encode(list(uniques))
            return vectors[codes] if len(codes) else np.zeros((0, vectors.shape[1]), np.float32)
        raise NotApplicable(f"no prompt embeddings (embeddings/{name}/{TEXT_KIND}.npy is "
                            "missing): run gembench embed --texts on the images table with "
                            "--kind text")
