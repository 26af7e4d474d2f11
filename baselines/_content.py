"""Shared by the content baselines: item embeddings aligned with the engine's item order."""

from __future__ import annotations

import numpy as np

from benchmark.errors import NotApplicable
from benchmark.protocols import InteractionData, SideInfo


def item_embeddings(train: InteractionData, side: SideInfo, encoder: str | None) -> tuple[
        np.ndarray, str]:
    """float32 [n_items, d], unit-norm rows, in ``train.item_ids`` order, and the encoder used.

    ``encoder=None`` takes the data set's first encoder. Items without an embedding
    row raise :class:`NotApplicable` (a content method cannot score them honestly).
    """
    dataset = side.dataset
    if dataset is None or not dataset.encoders():
        raise NotApplicable("content methods need item embeddings (gembench embed, or the "
                            "synthetic data set's synthetic-clip)")
    name = encoder or dataset.encoders()[0]
    matrix = dataset.embeddings(name, side.item_kind)
    rows = dataset.ids(side.item_kind).get_indexer(train.item_ids)
    if (rows < 0).any():
        raise NotApplicable(f"{(rows < 0).sum()} items have no {name!r} embedding")
    emb = np.asarray(matrix[rows] if not _is_identity(rows) else matrix, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12), name


def _is_identity(rows: np.ndarray) -> bool:
    return bool(len(rows) and rows[0] == 0 and np.array_equal(rows, np.arange(len(rows))))


def positions_from_end(train: InteractionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``train.frame`` (sorted by user, then time): its user, how many of the
    user's rows come after it (0 = the latest), and each user's row count."""
    users = train.frame["user_idx"].to_numpy()
    sizes = np.bincount(users, minlength=train.n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.arange(len(users)) - np.repeat(starts, sizes)
    return users, sizes[users] - position - 1, sizes


def normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
