"""The preference track: split, few-shot views, metrics and the three baselines."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from baselines.pref_global import GlobalReward
from baselines.pref_oracle import PreferenceOracle
from baselines.pref_user import UserEmbedding
from benchmark.data.synthetic import synthesize
from benchmark.errors import DataError, NotApplicable
from benchmark.metrics import pairwise_accuracy
from benchmark.preference import (
    PreferenceSplit,
    accuracy_vs_k,
    evaluate_preference,
    load_preference_split,
    make_preference_split,
    tune_tie_threshold,
)
from benchmark.protocols import SideInfo
from benchmark.results import read_record


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("pref") / "t", progress=False)


def planted_pairs(n_users: int, pairs_per_user: int, tastes: np.ndarray | None = None,
                  d: int = 8, n_images: int = 200, seed: int = 0, sharp: float = 20.0):
    """Images with random unit embeddings; label ~ Bernoulli(sigmoid(sharp * <t_u, e_a - e_b>))."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_images, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    if tastes is None:
        tastes = np.tile(rng.normal(size=d), (n_users, 1))
    u = np.repeat(np.arange(n_users), pairs_per_user)
    a = rng.integers(0, n_images, len(u))
    b = (a + rng.integers(1, n_images, len(u))) % n_images
    z = sharp * np.einsum("ij,ij->i", tastes[u], emb[a] - emb[b])
    label = (rng.random(len(u)) < 1 / (1 + np.exp(-z))).astype(float)
    ids = np.array([f"i{j:04d}" for j in range(n_images)], dtype=object)
    pairs = pd.DataFrame({"user_id": [f"u{j:03d}" for j in u], "image_a": ids[a],
                          "image_b": ids[b], "label": label})
    side = SideInfo(dataset=None, item_kind="image",
                    extra={"image_ids": ids, "image_embeddings": emb})
    return pairs, side


def test_split_is_per_user_disjoint_seeded_and_fingerprinted(tiny, tmp_path):
    split = make_preference_split(tiny, seed=3)
    parts = [split.train, split.valid, split.test]
    keys = [set(zip(p["user_id"], p["order"], strict=True)) for p in parts]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    prefs = tiny.table("preferences")
    assert sum(len(p) for p in parts) <= len(prefs)
    # every user with pairs in the split has test and valid pairs; ~60/20/20 per user
    for _, g in split.test.groupby("user_id"):
        assert len(g) >= 1
    assert set(split.valid["user_id"]) == set(split.test["user_id"])
    # unseen users are unseen everywhere; the default training view excludes them
    unseen = set(split.unseen_users)
    assert unseen and unseen < set(split.test["user_id"])
    assert not unseen & set(split.few_shot(0)["user_id"])
    again = make_preference_split(tiny, seed=3)
    assert again.fingerprint == split.fingerprint
    pd.testing.assert_frame_equal(again.test, split.test)
    assert make_preference_split(tiny, seed=4).fingerprint != split.fingerprint
    # recompute the fingerprint by hand, then round-trip through disk
    lines = sorted(
        f"{name}\t{'unseen' if g else 'seen'}\t{u}\t{a}\t{b}\t{float(lab)!r}\n".encode()
        for name, p in zip(("train", "valid", "test"), parts, strict=True)
        for u, a, b, lab, g in p[["user_id", "image_a", "image_b", "label", "unseen"]]
        .itertuples(index=False)
    )
    assert hashlib.sha256(b"".join(lines)).hexdigest() == split.fingerprint
    split.save(tmp_path / "s")
    loaded = load_preference_split(tmp_path / "s")
    assert loaded.fingerprint == split.fingerprint
    pd.testing.assert_frame_equal(loaded.train, split.train)
    edited = pd.read_parquet(tmp_path / "s" / "test.parquet")
    edited.loc[0, "label"] = 1 - edited.loc[0, "label"]
    edited.to_parquet(tmp_path / "s" / "test.parquet", index=False)
    with pytest.raises(DataError, match="fingerprint"):
        load_preference_split(tmp_path / "s")


def test_per_user_proportions_and_min_pairs():
    pairs, _ = planted_pairs(n_users=6, pairs_per_user=10)
    pairs = pairs[~((pairs["user_id"] == "u005") & (pairs.index % 10 >= 3))]  # u005: 3 pairs
    split = make_preference_split(pairs, unseen_ratio=0.0, min_pairs=5, seed=0)
    for name, n in (("train", 6), ("valid", 2), ("test", 2)):
        sizes = getattr(split, name).groupby("user_id").size()
        assert set(sizes.index) == {f"u{j:03d}" for j in range(5)}
        assert (sizes == n).all()


def test_few_shot_is_nested_and_capped():
    pairs, _ = planted_pairs(n_users=10, pairs_per_user=40)
    split = make_preference_split(pairs, unseen_ratio=0.3, seed=1)
    unseen = set(split.unseen_users)
    assert len(unseen) == 3
    seen_train = split.train[~split.train["unseen"]]
    previous: set = set()
    for k in (0, 5, 10, 20):
        view = split.few_shot(k)
        mine = view[view["user_id"].isin(unseen)]
        assert mine.groupby("user_id").size().reindex(sorted(unseen), fill_value=0).eq(k).all()
        rows = set(map(tuple, mine[["user_id", "image_a", "image_b"]].to_numpy()))
        assert previous <= rows
        previous = rows
        assert len(view) - len(mine) == len(seen_train)  # seen users keep everything
    assert len(split.few_shot("all")) == len(split.train)
    capped_all = split.few_shot(5, who="all")
    assert capped_all.groupby("user_id").size().eq(5).all()


def test_tie_aware_accuracy_by_hand():
    diff = np.array([2.0, 0.05, -1.0, 0.3])
    label = np.array([1.0, 0.0, 1.0, 0.5])
    # t = 0.1: pred = [1, tie, 0, 1] -> credits [1, 0.5, 0, 0.5]
    credit = pairwise_accuracy(diff, np.zeros(4), label, 0.1)
    assert credit.tolist() == [1.0, 0.5, 0.0, 0.5]
    # t = 0: pred = [1, 1, 0, 1] -> [1, 0, 0, 0.5]
    assert pairwise_accuracy(diff, np.zeros(4), label, 0.0).mean() == pytest.approx(1.5 / 4)
    # the grid picks a threshold with the best valid accuracy; 0 when ties do not pay
    assert tune_tie_threshold(np.array([1.0, -1.0, 2.0]), np.array([1.0, 0.0, 1.0])) == 0.0
    t = tune_tie_threshold(np.array([0.01, -0.02, 3.0]), np.array([0.5, 0.5, 1.0]),
                           quantiles=(0.5,))
    assert t > 0


def test_global_reward_learns_planted_linear_utility():
    pairs, side = planted_pairs(n_users=20, pairs_per_user=50, sharp=30.0)
    split = make_preference_split(pairs, unseen_ratio=0.0, seed=0)
    out = evaluate_preference(GlobalReward(l2=0.1), split, side=side, n_boot=50)
    assert out["metrics"]["accuracy_plain"] > 0.9
    assert out["metrics"]["auc"] > 0.95


def test_user_embedding_beats_global_on_opposite_tastes():
    rng = np.random.default_rng(5)
    t = rng.normal(size=8)
    tastes = np.array([t if j % 2 == 0 else -t for j in range(20)])
    pairs, side = planted_pairs(n_users=20, pairs_per_user=60, tastes=tastes, sharp=30.0)
    split = make_preference_split(pairs, unseen_ratio=0.0, seed=0)
    glob = evaluate_preference(GlobalReward(l2=0.1), split, side=side, n_boot=50)["metrics"]
    user = evaluate_preference(UserEmbedding(l2=0.1, l2_user=0.5), split, side=side,
                               n_boot=50)["metrics"]
    assert glob["accuracy_plain"] < 0.7
    assert user["accuracy_plain"] > 0.85
    assert user["accuracy_plain"] > glob["accuracy_plain"] + 0.2


def test_user_embedding_falls_back_to_global_head():
    pairs, side = planted_pairs(n_users=5, pairs_per_user=30)
    model = UserEmbedding().fit(pairs, side)
    ids = np.array(["i0001", "i0002"], dtype=object)
    unknown = model.score(np.array(["nobody", "nobody"], dtype=object), ids)
    head = np.asarray(side.extra["image_embeddings"][[1, 2]]) @ model.w_
    np.testing.assert_allclose(unknown, head, rtol=1e-5)
    assert unknown.dtype == np.float32


def test_oracle_on_tiny_and_not_applicable_without_truth(tiny):
    split = make_preference_split(tiny, seed=0)
    out = evaluate_preference(PreferenceOracle(), split, dataset=tiny, n_boot=50)
    assert out["metrics"]["accuracy"] > 0.7
    pairs, side = planted_pairs(n_users=3, pairs_per_user=10)
    with pytest.raises(NotApplicable):
        PreferenceOracle().fit(pairs, side)


def test_evaluate_writes_a_valid_record(tiny, tmp_path):
    split = make_preference_split(tiny, seed=0)
    out = evaluate_preference(GlobalReward(), split, 5, dataset=tiny, results_dir=tmp_path,
                              n_boot=50)
    record = read_record(out["path"])
    assert record["track"] == "preference"
    assert record["split"]["fingerprint"] == split.fingerprint
    assert record["split"]["k"] == 5
    assert record["method"]["name"] == "global-reward"
    for name in ("accuracy", "accuracy_plain", "user_accuracy", "auc",
                 "accuracy_seen", "accuracy_unseen"):
        assert name in record["metrics"]
        lo, hi = record["intervals"][name]
        assert lo <= hi
    n = len(record["per_user"]["user_id"])
    assert n == record["n_users"] == len(record["per_user"]["user_accuracy"])
    assert np.mean(record["per_user"]["user_accuracy"]) == pytest.approx(
        record["metrics"]["user_accuracy"], abs=1e-6)
    json.dumps(record, allow_nan=False)


def test_accuracy_vs_k_rows(tiny):
    split = make_preference_split(tiny, seed=0)
    curve = accuracy_vs_k(PreferenceOracle, split, ks=(0, 5, "all"), dataset=tiny, n_boot=20)
    assert curve["k"].tolist() == [0, 5, "all"]
    assert {"accuracy_seen", "accuracy_unseen", "accuracy_unseen_low"} <= set(curve.columns)
    assert isinstance(split, PreferenceSplit)


def test_cluster_bootstrap_equals_resampling_users_one_draw_at_a_time():
    from benchmark.preference import _cluster_bootstrap, _pair_metrics

    rng = np.random.default_rng(7)
    n = 300
    users = rng.integers(0, 40, n).astype(str).astype(object)
    diff = np.round(rng.normal(size=n), 1)  # many tied differences
    label = rng.choice([0.0, 1.0, 0.5], n, p=[0.45, 0.45, 0.1])
    got = _cluster_bootstrap(diff, label, users, 0.1, 50, seed=3)
    # reference: concatenate the picked users' pairs, each pick a distinct cluster
    codes, uniq = pd.factorize(users)
    rows = [np.flatnonzero(codes == c) for c in range(len(uniq))]
    draw_rng = np.random.default_rng(3)
    draws = {}
    for _ in range(50):
        pick = draw_rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([rows[c] for c in pick])
        boot_users = np.repeat(np.arange(len(pick)), [len(rows[c]) for c in pick])
        for name, v in _pair_metrics(diff[idx], label[idx], boot_users, 0.1).items():
            draws.setdefault(name, []).append(v)
    for name, values in draws.items():
        want = np.quantile(np.asarray(values), [0.025, 0.975])
        assert np.allclose(got[name], want, atol=1e-7), name


def test_weighted_auc_with_unit_weights_is_plain_auc():
    from benchmark.preference import _auc, _weighted_auc

    diff = np.array([0.3, 0.3, -1.0, 2.0, 0.0, 0.3])
    label = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 1.0])
    # hand count over the 3 x 2 (pos, neg) pairs: pos {0.3, 2.0, 0.3}, neg {0.3, -1.0}
    # 0.3 vs 0.3 tie (0.5) and > -1 (1); 2.0 beats both (2); second 0.3 like the first (1.5)
    assert _auc(diff, label) == pytest.approx(5.0 / 6.0)
    w = np.ones((2, 6))
    w[1, 1] = 0.0  # drop the tied negative: every positive beats -1.0
    assert _weighted_auc(diff, label, w) == pytest.approx([5.0 / 6.0, 1.0])
