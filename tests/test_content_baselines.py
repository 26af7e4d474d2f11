"""Content baselines (clip-mean, clip-recent, clip-multi, hybrid) on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from baselines.clip_mean import ClipMean
from baselines.clip_multi import ClipMulti, batched_spherical_kmeans, recent_history
from baselines.clip_recent import ClipRecent
from baselines.hybrid import Hybrid
from benchmark.errors import NotApplicable
from benchmark.protocols import InteractionData, SideInfo

# four items on the axes of a 3-d space; item 3 halfway between items 0 and 1
EMB = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
EMB[3] /= np.sqrt(2)


class FakeDataset:
    """Just the part of Dataset the content baselines read."""

    def __init__(self, emb):
        self.emb = emb

    def encoders(self):
        return ["test-clip"]

    def embeddings(self, encoder, kind):
        return self.emb

    def ids(self, kind):
        return pd.Index([f"i{j}" for j in range(len(self.emb))], dtype=object)


def data(histories: dict[int, list[int]], n_users: int = 2) -> InteractionData:
    rows = [(u, i, t) for u, items in histories.items() for t, i in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "timestamp"])
    matrix = sp.csr_matrix((np.ones(len(frame), np.float32),
                            (frame.user_idx, frame.item_idx)), shape=(n_users, len(EMB)))
    return InteractionData(pd.Index([f"u{u}" for u in range(n_users)], dtype=object),
                           pd.Index([f"i{j}" for j in range(len(EMB))], dtype=object),
                           matrix, frame, "lora")


SIDE = SideInfo(FakeDataset(EMB), "lora")


def test_clip_mean_by_hand():
    m = ClipMean().fit(data({0: [0, 1], 1: [2]}), SIDE)
    # user 0: mean of e0, e1 = (1,1,0)/sqrt(2); scores = (1/sqrt2, 1/sqrt2, 0, 1)
    assert m.score(np.array([0]))[0] == pytest.approx([2**-0.5, 2**-0.5, 0, 1], abs=1e-6)
    assert m.score(np.array([1]))[0] == pytest.approx([0, 0, 1, 0], abs=1e-6)


def test_clip_recent_weights_latest_most():
    # user 0 saw e0 then e1 (latest); half-life 1: weights 1/2 and 1 -> profile ∝ (0.5, 1, 0)
    m = ClipRecent(half_life=1.0).fit(data({0: [0, 1]}), SIDE)
    profile = np.array([0.5, 1.0, 0.0]) / np.linalg.norm([0.5, 1.0, 0.0])
    assert m.score(np.array([0]))[0] == pytest.approx(EMB @ profile, abs=1e-6)


def test_recent_history_keeps_the_latest():
    history, counts = recent_history(data({0: [0, 1, 2], 1: [3]}), max_history=2)
    assert history.tolist() == [[1, 2], [3, -1]]
    assert counts.tolist() == [2, 1]


def test_clip_multi_finds_both_interests():
    # user 0 likes e0 and e2 (two distinct tastes): the mean sits between them and scores
    # the mixed item 3 (0.5) as high as the real tastes; two interests score e0 and e2 at 1
    histories = {0: [0, 2, 0, 2], 1: [1]}
    multi = ClipMulti(n_interests=2).fit(data(histories), SIDE)
    scores = multi.score(np.array([0, 1]))
    assert scores[0] == pytest.approx([1, 0, 1, 2**-0.5], abs=1e-6)
    assert scores[1] == pytest.approx(EMB @ EMB[1], abs=1e-6)  # one item: one interest
    mean = ClipMean().fit(data(histories), SIDE).score(np.array([0]))[0]
    assert mean[0] == pytest.approx(2**-0.5, abs=1e-6)


def test_batched_kmeans_empty_and_padding():
    x = np.zeros((1, 3, 3), np.float32)
    x[0, :2] = EMB[:2]
    valid = np.array([[True, True, False]])
    centroids = batched_spherical_kmeans(x, valid, np.array([2]), n_iter=5)
    assert sorted(map(tuple, np.round(centroids[0], 6))) == [(0, 1, 0), (1, 0, 0)]


def test_hybrid_is_log_popularity_plus_beta_content():
    train = data({0: [0, 1], 1: [0]})
    hybrid = Hybrid(beta=2.0, cf="popularity", content="clip-mean").fit(train, SIDE)
    content = ClipMean().fit(train, SIDE).score(np.array([1]))[0]
    counts = np.array([2, 1, 0, 0], np.float32)
    assert hybrid.score(np.array([1]))[0] == pytest.approx(np.log1p(counts) + 2 * content)
    with pytest.raises(ValueError, match="cf is one of"):
        Hybrid(cf="nope").fit(train, SIDE)


def test_needs_embeddings():
    with pytest.raises(NotApplicable, match="embeddings"):
        ClipMean().fit(data({0: [0]}), SideInfo(None, "lora"))
