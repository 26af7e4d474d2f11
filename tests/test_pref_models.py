"""Preference baselines: history-attention, preference-tokens, clip-score, aesthetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_preference import planted_pairs

from baselines._pref_torch import carve_validation, user_histories
from baselines.pref_aesthetic import AestheticPredictor
from baselines.pref_clip_score import ClipScore
from baselines.pref_history import HistoryAttention
from baselines.pref_tokens import PreferenceTokens
from benchmark.data.synthetic import synthesize
from benchmark.errors import DataError
from benchmark.preference import evaluate_preference, make_preference_split
from benchmark.protocols import SideInfo


@pytest.fixture(scope="module")
def grouped():
    """4 taste groups (users u000..u059, group = index mod 4), 40 pairs each, 30% unseen."""
    rng = np.random.default_rng(1)
    groups = rng.normal(size=(4, 8))
    pairs, side = planted_pairs(n_users=60, pairs_per_user=40, tastes=groups[np.arange(60) % 4],
                                sharp=30.0)
    return make_preference_split(pairs, unseen_ratio=0.3, seed=0), side


def _fast(cls, **kw):
    return cls(hidden=16, lr=1e-2, progress=False, **kw)


@pytest.mark.parametrize("cls", [HistoryAttention, PreferenceTokens])
def test_learns_planted_tastes_and_improves_with_k(grouped, cls):
    split, side = grouped
    m0 = evaluate_preference(_fast(cls), split, 0, side=side, n_boot=10)["metrics"]
    mall = evaluate_preference(_fast(cls), split, "all", side=side, n_boot=10)["metrics"]
    # one global direction cannot serve four taste groups; the history can
    assert mall["accuracy_plain"] > 0.8
    assert mall["accuracy_plain_seen"] > 0.8
    # unseen users: global head only at k = 0, their own judgements at k = all
    assert mall["accuracy_plain_unseen"] > 0.8
    assert mall["accuracy_plain_unseen"] > m0["accuracy_plain_unseen"] + 0.15


@pytest.mark.parametrize("cls", [HistoryAttention, PreferenceTokens])
def test_same_seed_same_scores_exactly(cls):
    pairs, side = planted_pairs(n_users=6, pairs_per_user=20)
    users = np.array(["u000", "u003", "nobody"], dtype=object)
    images = np.array(["i0001", "i0002", "i0003"], dtype=object)
    s1 = cls(max_epochs=3, progress=False, seed=7).fit(pairs, side).score(users, images)
    s2 = cls(max_epochs=3, progress=False, seed=7).fit(pairs, side).score(users, images)
    s3 = cls(max_epochs=3, progress=False, seed=8).fit(pairs, side).score(users, images)
    assert s1.dtype == np.float32 and s1.shape == (3,)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)


def test_history_attention_unknown_user_is_the_global_head():
    pairs, side = planted_pairs(n_users=5, pairs_per_user=20)
    model = HistoryAttention(max_epochs=3, progress=False).fit(pairs, side)
    e = side.extra["image_embeddings"][[1, 2, 3]]
    head = model.net_.head.weight.detach().numpy()[0] @ e.T
    got = model.score(np.array(["nobody"] * 3, dtype=object),
                      np.array(["i0001", "i0002", "i0003"], dtype=object))
    np.testing.assert_allclose(got, head, rtol=1e-5, atol=1e-7)
    known = model.score(np.array(["u001"] * 3, dtype=object),
                        np.array(["i0001", "i0002", "i0003"], dtype=object))
    assert not np.allclose(known, head)


@pytest.mark.parametrize("cls", [HistoryAttention, PreferenceTokens])
def test_no_training_pairs_scores_zero(cls):
    _, side = planted_pairs(n_users=1, pairs_per_user=1)
    empty = pd.DataFrame({"user_id": [], "image_a": [], "image_b": [], "label": []})
    model = cls(progress=False).fit(empty, side)
    # untrained: the zero-initialised global head and no history -> 0 for everyone
    got = model.score(np.array(["u", "v"], dtype=object), np.array(["i0001", "i0002"],
                                                                   dtype=object))
    if cls is HistoryAttention:
        np.testing.assert_array_equal(got, [0.0, 0.0])
    assert got.shape == (2,) and model.history_ == []


def test_preference_tokens_mixture_uniform_without_history():
    pairs, side = planted_pairs(n_users=5, pairs_per_user=20)
    model = PreferenceTokens(n_tokens=4, max_epochs=3, progress=False).fit(pairs, side)
    mix = model.mixture(np.array(["nobody", "u001"], dtype=object))
    assert mix.shape == (2, 4)
    np.testing.assert_allclose(mix[0], [0.25] * 4, rtol=1e-6)
    np.testing.assert_allclose(mix.sum(1), [1.0, 1.0], rtol=1e-6)
    assert not np.allclose(mix[1], 0.25)


def test_contrastive_loss_is_bradley_terry_with_one_pair_per_user():
    pairs, side = planted_pairs(n_users=8, pairs_per_user=1)
    pairs["label"] = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.5]  # u007: a tie, skipped
    model = PreferenceTokens(max_epochs=0, progress=False).fit(pairs, side)
    d = model._prepare(pairs, side)
    hist = model._histories(d, np.arange(8))
    hist_row = hist.users.get_indexer(d["users"])
    with torch.no_grad():
        contrastive = float(model._pair_loss(hist, model.table_, d, hist_row, np.arange(7),
                                             "contrastive"))
        bt = float(model._pair_loss(hist, model.table_, d, hist_row, np.arange(7), "bt"))
    assert contrastive == pytest.approx(bt, rel=1e-6)
    assert model.history_ == [] and model.best_epoch_ == 0


def test_histories_and_validation_carve_by_hand():
    users = np.array(["u1", "u1", "u1", "u2"], dtype=object)
    liked = np.array([10, 12, 13, 11])
    disliked = np.array([11, 10, 14, 12])
    label = np.array([1.0, 0.0, 0.5, 1.0])  # the tie (row 2) gives no direction
    h = user_histories(users, liked, disliked, label, max_pairs=10, seed=0)
    assert h.users.tolist() == ["u1", "u2"]
    assert h.item.shape == (2, 4)
    got = {(int(i), bool(lk), int(p)) for i, lk, p in zip(h.item[0], h.liked[0], h.pair[0],
                                                          strict=True)}
    assert got == {(10, True, 0), (11, False, 0), (12, True, 1), (10, False, 1)}
    assert h.item[1].tolist() == [11, 12, -1, -1] and h.pair[1].tolist() == [3, 3, -1, -1]
    capped = user_histories(users, liked, disliked, label, max_pairs=1, seed=0)
    assert capped.item.shape == (2, 2) and (capped.item >= 0).all()
    # 10 pairs at ratio 0.2 -> 2 validation pairs; 4 pairs (< 5) -> none
    mask = carve_validation(np.array(["a"] * 10 + ["b"] * 4, dtype=object), 0.2, seed=0)
    assert mask[:10].sum() == 2 and mask[10:].sum() == 0
    np.testing.assert_array_equal(
        mask, carve_validation(np.array(["a"] * 10 + ["b"] * 4, dtype=object), 0.2, seed=0))


def test_torch_models_reject_bad_labels():
    pairs, side = planted_pairs(n_users=2, pairs_per_user=5)
    pairs.loc[3, "label"] = 2.0
    with pytest.raises(DataError, match=r"row 4.*label 2.0.*rule"):
        HistoryAttention(progress=False).fit(pairs, side)
    pairs, side = planted_pairs(n_users=2, pairs_per_user=5)
    pairs.loc[0, "image_b"] = "ghost"
    with pytest.raises(DataError, match="ghost"):
        PreferenceTokens(progress=False).fit(pairs, side)


# zero-shot scorers -------------------------------------------------------------------------
def _hand_side(**text):
    ids = np.array(["x", "y", "z"], dtype=object)
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
    return SideInfo(dataset=None, item_kind="image",
                    extra={"image_ids": ids, "image_embeddings": emb, **text})


def test_clip_score_is_the_image_prompt_cosine():
    side = _hand_side(text_ids=["z", "y", "x"],
                      text_embeddings=np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]))
    model = ClipScore().fit(pd.DataFrame(columns=["user_id", "image_a", "image_b", "label"]),
                            side)
    got = model.score(np.array(["u", "v", "w", "u"], dtype=object),
                      np.array(["x", "y", "z", "z"], dtype=object))
    # x: cos([1,0],[1,0]) = 1; y: 2 / (2 sqrt 2); z: 4 / 5; the same for every user
    np.testing.assert_allclose(got, [1.0, 1 / np.sqrt(2), 0.8, 0.8], rtol=1e-6)
    assert got.dtype == np.float32
    partial = _hand_side(text_ids=["x"], text_embeddings=np.array([[1.0, 0.0]]))
    with pytest.raises(DataError, match="'y' has no prompt embedding"):
        ClipScore().fit(pd.DataFrame(), partial).score(np.array(["u"]), np.array(["y"]))


def test_clip_score_reads_a_text_store_or_names_the_missing_one(tmp_path):
    ds = synthesize("tiny", seed=0, out=tmp_path / "t", progress=False)
    with pytest.raises(DataError, match=r"text\.npy.*gembench embed"):
        ClipScore().fit(pd.DataFrame(), SideInfo(dataset=ds, item_kind="image"))
    # a store whose rows are the image embeddings in reversed id order: cosine 1 iff the
    # ids are matched, not the rows
    folder = ds.path / "embeddings" / "synthetic-clip"
    img_ids = ds.ids("images")
    emb = np.asarray(ds.embeddings("synthetic-clip", "image"))
    np.save(folder / "text.npy", emb[::-1] * 3.0)
    pd.DataFrame({"id": list(img_ids[::-1])}).to_parquet(folder / "text.ids.parquet")
    model = ClipScore().fit(pd.DataFrame(), SideInfo(dataset=ds, item_kind="image"))
    got = model.score(np.array(["a"] * 5, dtype=object), img_ids[:5].to_numpy())
    np.testing.assert_allclose(got, np.ones(5), rtol=1e-6)


def test_aesthetic_by_hand_and_errors(tmp_path):
    state = {"layers.0.weight": torch.eye(2), "layers.0.bias": torch.zeros(2),
             "layers.2.weight": torch.tensor([[2.0, -1.0]]), "layers.2.bias": torch.tensor([0.5])}
    torch.save(state, tmp_path / "mlp.pth")
    side = _hand_side()
    side.extra["image_embeddings"] = np.array([[3.0, 4.0], [0.0, -5.0], [0.0, 0.0]], np.float32)
    model = AestheticPredictor(weights=str(tmp_path / "mlp.pth")).fit(pd.DataFrame(), side)
    got = model.score(np.array(["u", "u", "u"], dtype=object),
                      np.array(["x", "y", "z"], dtype=object))
    # [0.6, 0.8] -> 2*0.6 - 0.8 + 0.5 = 0.9; [0, -1] -> 1 + 0.5 = 1.5; zero vector -> bias 0.5
    np.testing.assert_allclose(got, [0.9, 1.5, 0.5], rtol=1e-6)
    relu = AestheticPredictor(weights=str(tmp_path / "mlp.pth"), activation="relu")
    got = relu.fit(pd.DataFrame(), side).score(np.array(["u"]), np.array(["y"], dtype=object))
    np.testing.assert_allclose(got, [0.5], rtol=1e-6)  # relu([0, -1]) = 0 -> bias only
    with pytest.raises(DataError, match="weights file"):
        AestheticPredictor().fit(pd.DataFrame(), side)
    with pytest.raises(DataError, match="not found"):
        AestheticPredictor(weights=str(tmp_path / "absent.pth")).fit(pd.DataFrame(), side)
    torch.save({"layers.0.weight": torch.zeros(1, 3)}, tmp_path / "wide.pth")
    with pytest.raises(DataError, match="3-d embeddings"):
        AestheticPredictor(weights=str(tmp_path / "wide.pth")).fit(pd.DataFrame(), side)


def test_aesthetic_matches_a_random_torch_mlp(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2),
                              torch.nn.Linear(16, 4), torch.nn.Dropout(0.1),
                              torch.nn.Linear(4, 1))
    holder = torch.nn.Module()
    holder.layers = mlp
    torch.save(holder.state_dict(), tmp_path / "rand.pth")
    save_file(holder.state_dict(), str(tmp_path / "rand.safetensors"))
    _, side = planted_pairs(n_users=1, pairs_per_user=1, n_images=20)
    e = torch.from_numpy(side.extra["image_embeddings"] * 3.0)
    side.extra["image_embeddings"] = e.numpy()
    with torch.no_grad():
        want = mlp.eval()(e / e.norm(dim=1, keepdim=True))[:, 0].numpy()
    ids = side.extra["image_ids"]
    for name in ("rand.pth", "rand.safetensors"):
        got = AestheticPredictor(weights=str(tmp_path / name)).fit(pd.DataFrame(), side)\
            .score(np.array(["u"] * 20, dtype=object), ids)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
