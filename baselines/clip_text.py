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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import scipy.sparse as sp

from baselines._content import item_embeddings, normalise_rows
from baselines._retrieval import FaissRetrieval
from benchmark.errors import DataError, NotApplicable
from benchmark.protocols import InteractionData, SideInfo

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
        dataset = side.dataset
        if dataset is None or not dataset.has_table("images"):
            raise NotApplicable("clip-text needs the images table (prompts)")
        image_idx, user_of = self._history_images(train, side)
        text = self._prompt_vectors(side, image_idx)
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
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the images table whose prompts the user may use, and their users."""
        dataset = side.dataset
        columns = ["user_id", "created_at"] + (["lora_ids"] if side.item_kind == "lora" else [])
        table = dataset.arrow("images", columns)
        user = train.user_ids.get_indexer(
            table.column("user_id").to_numpy(zero_copy_only=False).astype(str))
        created = table.column("created_at").cast("int64").to_numpy()  # seconds
        frame = train.frame
        last = np.full(train.n_users, np.iinfo(np.int64).min)
        if len(frame):
            seconds = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
            np.maximum.at(last, frame["user_idx"].to_numpy(), seconds)
        keep = (user >= 0) & (created <= last[np.maximum(user, 0)])
        if side.item_kind == "lora":  # drop images made with a LoRA outside u's training items
            loras = table.column("lora_ids").combine_chunks()
            parent = pc.list_parent_indices(loras).to_numpy()
            lora = train.item_ids.get_indexer(
                pc.list_flatten(loras).to_numpy(zero_copy_only=False).astype(str))
            owner = user[parent]
            ok = (lora >= 0) & (owner >= 0)
            seen = np.zeros(len(parent), bool)
            seen[ok] = np.asarray(train.matrix[owner[ok], lora[ok]]).ravel() > 0
            unseen = np.bincount(parent[~seen], minlength=len(user)) > 0
            keep &= ~unseen
        rows = np.flatnonzero(keep)
        return rows, user[rows]

    def _prompt_vectors(self, side: SideInfo, image_rows: np.ndarray) -> np.ndarray:
        """Unit-norm text embeddings of the prompts of ``image_rows`` (images table rows)."""
        dataset = side.dataset
        name = self.text_encoder or self.encoder_
        path = Path(dataset.path) / "embeddings" / name / f"{TEXT_KIND}.npy"
        if path.is_file():
            ids_path = path.with_name(f"{TEXT_KIND}.ids.parquet")
            if not ids_path.is_file():
                raise DataError("text embeddings without their ids", path=str(ids_path),
                                rule="text.npy comes with text.ids.parquet (image ids)")
            stored = pd.Index(pd.read_parquet(ids_path).iloc[:, 0].astype(str))
            wanted = dataset.ids("images")[image_rows]
            rows = stored.get_indexer(wanted)
            if (rows < 0).any():
                first = int(np.flatnonzero(rows < 0)[0])
                raise DataError(f"image {wanted[first]!r} has no text embedding",
                                path=str(ids_path), rule="every history image has a row")
            matrix = dataset.embeddings(name, TEXT_KIND)
            return normalise_rows(np.asarray(matrix[rows], dtype=np.float32))
        if dataset.meta.get("source") == "synthetic":
            from benchmark.data.synthetic_text import SyntheticTextEncoder

            prompts = dataset.arrow("images", ["prompt"]).column("prompt").combine_chunks()
            chosen = prompts.take(image_rows)
            codes, uniques = pd.factorize(
                np.asarray(chosen.to_numpy(zero_copy_only=False), dtype=object))
            vectors = SyntheticTextEncoder.from_dataset(dataset).encode(list(uniques))
            return vectors[codes] if len(codes) else np.zeros((0, vectors.shape[1]), np.float32)
        raise NotApplicable(f"no prompt embeddings ({path} is missing): run gembench embed "
                            "--texts on the images table with --kind text")
