"""Full-ranking engine and the light baselines, against hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from baselines.itemknn import ItemKNN, top_k_per_row
from baselines.oracle import Oracle
from baselines.popularity import Popularity
from baselines.random import RandomRanker, hashed_uniform
from benchmark.errors import GembenchError, NotApplicable
from benchmark.evaluate import chunk_size, evaluate_ranking
from benchmark.protocols import InteractionData, RankingMethod, SideInfo
from benchmark.runner import track_data
from benchmark.splits import SplitConfig, make_split

METRICS = ("recall@1", "recall@10", "ndcg@10", "mrr@10", "hit@1")


def lora_data(toy):
    split = make_split(toy, SplitConfig())
    return track_data(split, "lora", "test")


def test_popularity_by_hand(toy):
    fit, relevant = lora_data(toy)
    # fit = train + valid: u1 {l1,l2,l3}, u2 {l2,l3,l5}, u3 {l1,l2}
    method = Popularity().fit(fit, SideInfo(toy, "lora"))
    assert method.item_counts_.tolist() == [2, 3, 2, 0, 1]
    ev = evaluate_ranking(method, fit.matrix, relevant, METRICS, progress=False)
    item = {name: i for i, name in enumerate(fit.item_ids)}
    # u1: unmasked l4 (0), l5 (1) -> [l5, l4]; u2: [l1, l4]; u3: [l3, l5, l4]
    assert ev.ranked[0, :2].tolist() == [item["l5"], item["l4"]]
    assert ev.ranked[1, :2].tolist() == [item["l1"], item["l4"]]
    assert ev.ranked[2, :3].tolist() == [item["l3"], item["l5"], item["l4"]]
    assert (ev.ranked[0, 2:] == -1).all()  # only two unmasked items left for u1
    expected_ndcg = (1 / math.log2(3) + 1 + 1) / 3
    assert ev.summary["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-12)
    assert ev.summary["mrr@10"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-12)
    assert ev.summary["recall@1"] == pytest.approx(2 / 3, abs=1e-12)
    assert ev.n_users_evaluated == 3 and ev.n_users_skipped == 0


class Fixed(RankingMethod):
    name = "fixed"

    def __init__(self, scores):
        self.scores = scores

    def fit(self, train, side):
        return self

    def score(self, user_idx):
        return self.scores[user_idx]


def test_masking_skipping_and_chunking():
    rng = np.random.default_rng(0)
    n_users, n_items = 57, 40
    scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)  # many ties
    exclude = sp.random(n_users, n_items, density=0.2, random_state=1, format="csr")
    relevant = sp.random(n_users, n_items, density=0.1, random_state=2, format="csr")
    relevant = relevant - relevant.multiply(exclude.astype(bool))
    relevant.eliminate_zeros()
    relevant = relevant.tolil()
    relevant[5] = 0  # a user without held-out items is skipped
    relevant = relevant.tocsr()
    relevant.eliminate_zeros()
    metrics = ("recall@10", "ndcg@10", "mrr@10", "precision@5")
    big = evaluate_ranking(Fixed(scores), exclude, relevant, metrics, progress=False)
    tiny = evaluate_ranking(Fixed(scores), exclude, relevant, metrics,
                            memory_budget_mb=1e-4, progress=False)  # one user per chunk
    assert chunk_size(n_items, 1e-4) == 1
    assert np.array_equal(big.ranked, tiny.ranked)
    for name in metrics:
        assert np.array_equal(big.per_user[name], tiny.per_user[name])
    evaluated = set(big.user_idx.tolist())
    assert 5 not in evaluated
    assert big.n_users_skipped == n_users - len(evaluated)
    # no excluded item is ever ranked, and ties are broken by lower item index
    for row, user in enumerate(big.user_idx):
        ranked = big.ranked[row]
        assert not set(ranked.tolist()) & set(exclude[user].indices.tolist())
        s = scores[user, ranked]
        assert all((s[i] > s[i + 1]) or (s[i] == s[i + 1] and ranked[i] < ranked[i + 1])
                   for i in range(len(ranked) - 1))


def test_nan_and_shape_errors():
    exclude = sp.csr_matrix((3, 4), dtype=np.float32)
    relevant = sp.csr_matrix(np.eye(3, 4, dtype=np.float32))
    bad = np.zeros((3, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(GembenchError, match="NaN scores"):
        evaluate_ranking(Fixed(bad), exclude, relevant, ("recall@2",), progress=False)
    with pytest.raises(GembenchError, match="shape"):
        evaluate_ranking(Fixed(np.zeros((3, 5), np.float32)), exclude, relevant,
                         ("recall@2",), progress=False)


def test_random_is_chunk_independent():
    a = hashed_uniform(7, np.arange(10), 30)
    b = np.vstack([hashed_uniform(7, np.arange(5), 30), hashed_uniform(7, np.arange(5, 10), 30)])
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 1 and a.dtype == np.float32
    assert not np.array_equal(a, hashed_uniform(8, np.arange(10), 30))
    assert abs(float(hashed_uniform(0, np.arange(200), 500).mean()) - 0.5) < 0.01
    method = RandomRanker(seed=3)
    assert method.get_params() == {"seed": 3}


def test_itemknn_by_hand():
    # users x items: u0 {0,1}, u1 {0,1,2}, u2 {2}
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=np.float32))
    data = InteractionData(user_ids=None, item_ids=None, matrix=x, frame=None, item_kind="lora")
    data.user_ids, data.item_ids = list("abc"), list("xyz")
    knn = ItemKNN(k=10, shrink=0.0).fit(data, SideInfo(None, "lora"))
    # |U0|=2, |U1|=2, |U2|=2; co(0,1)=2, co(0,2)=1, co(1,2)=1
    sim = knn.similarity_.toarray()
    assert sim[0, 1] == pytest.approx(2 / 2) and sim[0, 2] == pytest.approx(1 / 2)
    assert sim[1, 2] == pytest.approx(1 / 2) and sim[0, 0] == 0
    # user u2 (item 2): scores = sim row of item 2 = [0.5, 0.5, 0]
    assert knn.score(np.array([2])).tolist() == [pytest.approx([0.5, 0.5, 0.0])]
    shrunk = ItemKNN(k=1, shrink=1.0).fit(data, SideInfo(None, "lora"))
    # each target keeps one neighbour: item 2's neighbours tie (1/3 each): lower index (0) wins
    assert shrunk.similarity_.toarray()[:, 2].tolist() == pytest.approx([1 / 3, 0, 0])


def test_top_k_per_row_ties():
    m = sp.csr_matrix(np.array([[3, 1, 3, 2], [0, 5, 0, 5]], dtype=np.float32))
    assert top_k_per_row(m, 2).toarray().tolist() == [[3, 0, 3, 0], [0, 5, 0, 5]]
    assert top_k_per_row(m, 1).toarray().tolist() == [[3, 0, 0, 0], [0, 5, 0, 0]]


def test_oracle_needs_truth(toy):
    fit, _ = lora_data(toy)
    with pytest.raises(NotApplicable):
        Oracle().fit(fit, SideInfo(toy, "lora"))
