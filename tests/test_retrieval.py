"""faiss retrieval (benchmark/retrieval.py) and the retrieval baselines clip-text and two-tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baselines.clip_mean import ClipMean
from baselines.clip_recent import ClipRecent
from baselines.clip_text import ClipText
from baselines.random import RandomRanker
from baselines.two_tower import TwoTower
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.data.synthetic import synthesize
from benchmark.data.synthetic_text import SyntheticTextEncoder
from benchmark.errors import DataError
from benchmark.evaluate import evaluate_ranking
from benchmark.protocols import InteractionData, SideInfo
from benchmark.retrieval import (
    approximation_recall,
    build_index,
    exact_search,
    index_info,
    search,
)
from benchmark.runner import prepare_split, run_benchmark, track_data
from benchmark.schema import schema_of
from benchmark.splits import SplitConfig

RNG = np.random.default_rng(0)
ITEMS = RNG.standard_normal((2000, 32)).astype(np.float32)
QUERIES = RNG.standard_normal((60, 32)).astype(np.float32)


# --- benchmark/retrieval.py ----------------------------------------------------------------
def test_flat_equals_numpy_exact_topk():
    index = build_index(ITEMS, "flat", device="cpu")
    ids, scores = search(index, QUERIES, 25)
    full = QUERIES @ ITEMS.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(exact_search(ITEMS, QUERIES, 25), expected)
    assert approximation_recall(expected, ids) == 1.0
    assert index_info(index) == {"index": "IndexFlatIP", "ntotal": 2000, "device": "cpu"}


def test_l2_metric_and_k_beyond_pool():
    index = build_index(ITEMS[:5], "flat", metric="l2", device="cpu")
    ids, dist = search(index, ITEMS[:2], 10)  # k cut to the 5 items; nearest is itself
    assert ids.shape == (2, 5) and list(ids[:, 0]) == [0, 1]
    assert dist[:, 0] == pytest.approx([0.0, 0.0], abs=1e-5)


def test_approximate_indexes_report_their_recall_cost():
    exact, _ = search(build_index(ITEMS, "flat", device="cpu"), QUERIES, 20)
    ivf_all, _ = search(build_index(ITEMS, "ivf", nlist=16, nprobe=16, device="cpu"),
                        QUERIES, 20)
    assert approximation_recall(exact, ivf_all) == 1.0  # nprobe = nlist: every list searched
    ivf_one, _ = search(build_index(ITEMS, "ivf", nlist=16, nprobe=1, device="cpu"),
                        QUERIES, 20)
    hnsw, _ = search(build_index(ITEMS, "hnsw", m=4, ef_search=4, device="cpu"), QUERIES, 20)
    for approx in (ivf_one, hnsw):
        r = approximation_recall(exact, approx)
        assert 0.0 <= r < 1.0  # a real approximation on random data loses something
    assert approximation_recall(exact, ivf_one) < 0.6  # 1 of 16 lists


def test_approximation_recall_by_hand():
    # row 0: {4, 1} of {1, 2, 3, 4} found -> 1/2; row 1: all found -> 1; mean 3/4
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 9, 1, -1], [8, 7, 6, 5]])
    assert approximation_recall(exact, approx) == 0.75
    assert approximation_recall(np.array([[0, 1]]), np.array([[2, 3]])) == 0.0


def test_bad_input_is_a_data_error():
    bad = ITEMS[:10].copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match=r"row 4.*finite"):
        build_index(bad)
    with pytest.raises(DataError, match="one of"):
        build_index(ITEMS, "annoy")
    with pytest.raises(DataError, match="dimension 31"):
        search(build_index(ITEMS[:10], device="cpu"), QUERIES[:, :31], 3)
    with pytest.raises(DataError, match="no GPU"):
        import faiss

        if faiss.get_num_gpus() > 0:
            pytest.skip("a GPU is present")
        build_index(ITEMS, device="gpu")


# --- clip-text on a hand-made data set -----------------------------------------------------
def _day(d: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01") + pd.Timedelta(days=d)


def _write_text_dataset(out: Path) -> Dataset:
    """LoRAs on axes (l3 between l1 and l2); u1's allowed prompt points at l1."""
    loras = ["l0", "l1", "l2", "l3"]
    emb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]], np.float32)
    emb[3] /= np.sqrt(2)
    # i1: before the cutoff, LoRA in training -> used; i2: after the cutoff; i3: made with l2,
    # which is not one of u1's training items -> both left out (they point at l2)
    images = pd.DataFrame({
        "image_id": ["i1", "i2", "i3"], "user_id": ["u1", "u1", "u1"],
        "lora_ids": [["l0"], ["l0"], ["l0", "l2"]], "prompt": ["a", "b", "c"],
        "created_at": pd.Series([_day(1), _day(5), _day(1)]).astype("datetime64[s]"),
    })
    text = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 1]], np.float32)
    inter = pd.DataFrame({
        "user_id": ["u1", "u2"], "item_id": ["l0", "l1"], "item_kind": "lora",
        "kind": "generate", "timestamp": pd.Series([_day(1), _day(2)]).astype("datetime64[s]"),
        "weight": 1.0,
    })
    with DatasetWriter(out, {"name": "text-toy", "source": "test", "seed": 0}) as w:
        w.write_table("users", pd.DataFrame({"user_id": ["u1", "u2"]}), schema_of("users"))
        w.write_table("loras", pd.DataFrame({
            "lora_id": loras, "creator_id": "u1", "base_model": "SD 1.5", "tags": [["a"]] * 4,
            "created_at": pd.Series([_day(0)] * 4).astype("datetime64[s]")}), schema_of("loras"))
        w.write_table("images", images, schema_of("images"))
        w.write_table("interactions", pa.Table.from_pandas(inter, preserve_index=False)
                      .cast(schema_of("interactions")), schema_of("interactions"))
        w.open_embeddings("enc", "lora", emb.shape)[:] = emb
        w.open_embeddings("enc", "text", text.shape)[:] = text
        pq.write_table(pa.table({"id": ["i1", "i2", "i3"]}),
                       w.embedding_path("enc", "text").with_suffix(".ids.parquet"))
    return Dataset(out)


def test_clip_text_uses_only_the_users_own_past_prompts(tmp_path):
    ds = _write_text_dataset(tmp_path / "ds")
    inter = ds.table("interactions")
    train = InteractionData.from_frame(inter, pd.Index(["u1", "u2"], dtype=object),
                                       ds.ids("loras"), "lora")
    m = ClipText(n_candidates=3, device="cpu").fit(train, SideInfo(ds, "lora"))
    # u1: query = t(i1) = e1 -> l1: 1, l3: 1/sqrt2, l2: 0; l0 (history, +1 candidate) too
    s = m.score(np.array([0, 1]))
    assert s[0] == pytest.approx([0, 1, 0, 2**-0.5], abs=1e-6)
    # u2 has no prompt: clip-mean fallback, profile e1 -> same numbers
    assert s[1] == pytest.approx([0, 1, 0, 2**-0.5], abs=1e-6)
    assert list(m.n_prompts_) == [1, 0]
    assert m.extra_ == {"retrieval_recall@3": 1.0, "users_without_prompts": 0.5}
    # only 1 + 1 items retrieved per user when n_candidates = 1: the rest is -inf
    one = ClipText(n_candidates=1, device="cpu").fit(train, SideInfo(ds, "lora"))
    row = one.score(np.array([0]))[0]
    assert np.isfinite(row).sum() == 2 and row[1] == pytest.approx(1.0)


# --- synthetic text encoder ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Dataset:
    return synthesize("tiny", tmp_path_factory.mktemp("tiny") / "synthetic-tiny", seed=0,
                      progress=False)


def test_synthetic_text_encoder_follows_the_world(tiny):
    enc = SyntheticTextEncoder.from_dataset(tiny)
    prompts = tiny.arrow("images", ["prompt"]).column("prompt").combine_chunks()
    vec = enc.encode(prompts)
    assert vec.shape == (1500, 512) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vec, SyntheticTextEncoder.from_dataset(tiny).encode(prompts))
    # a prompt without cluster words is the shared direction alone
    empty = enc.encode(["masterpiece 8k"])[0]
    np.testing.assert_allclose(empty, enc.common / np.linalg.norm(enc.common), atol=1e-6)
    img = np.asarray(tiny.embeddings("synthetic-clip", "image"))
    own = (vec * img).sum(1).mean()
    shuffled = (vec * img[np.random.default_rng(1).permutation(len(img))]).sum(1).mean()
    assert own > shuffled + 0.1  # a prompt points at the style of the image made from it


# --- through the engine on synthetic-tiny --------------------------------------------------
@pytest.fixture(scope="module")
def tiny_track(tiny, tmp_path_factory):
    split = prepare_split(tiny, SplitConfig(protocol="leave-last-out", tracks=("lora-rec",)),
                          tmp_path_factory.mktemp("splits"), progress=False)
    fit, relevant = track_data(split, "lora", "test")
    return fit, relevant, SideInfo(tiny, "lora", seed=0)


def _evaluate(method, fit, relevant, side):
    method.fit(fit, side)
    return evaluate_ranking(method, fit.matrix, relevant, ["ndcg@10", "recall@50"],
                            progress=False)


def test_flat_retrieval_ranks_like_dense_scoring(tiny_track):
    fit, relevant, side = tiny_track
    retrieved = _evaluate(ClipText(device="cpu"), fit, relevant, side)
    dense = ClipText(device="cpu").fit(fit, side)

    class Dense(ClipMean):  # the same queries, scored densely
        def fit(self, train, side):
            return self

        def score(self, user_idx):
            return dense.user_vec_[user_idx] @ dense.item_vec_.T

    exact = evaluate_ranking(Dense(), fit.matrix, relevant, ["ndcg@10", "recall@50"],
                             progress=False)
    np.testing.assert_array_equal(retrieved.ranked, exact.ranked)
    assert retrieved.summary == exact.summary


@pytest.mark.parametrize("cls", [ClipMean, ClipRecent])
def test_profile_methods_through_faiss(tiny_track, cls):
    """index=None scores densely; "flat" ranks identically; "hnsw" records its recall cost."""
    fit, relevant, side = tiny_track
    dense = _evaluate(cls(), fit, relevant, side)
    flat_method = cls(index="flat")
    flat = _evaluate(flat_method, fit, relevant, side)
    # the same lists up to float rounding of near-ties (faiss's and numpy's products round
    # differently): where they differ, the items' dense scores agree to 1e-6
    scores = flat_method.profile_ @ flat_method.item_emb_.T
    users = flat.user_idx[:, None]
    np.testing.assert_allclose(scores[users, flat.ranked], scores[users, dense.ranked],
                               atol=1e-6)
    assert (flat.ranked != dense.ranked).mean() < 0.01
    for name, value in dense.summary.items():
        assert flat.summary[name] == pytest.approx(value, abs=1e-3)
    assert flat_method.extra_ == {"retrieval_recall@100": 1.0}
    hnsw = cls(index="hnsw").fit(fit, side)
    assert 0.0 < hnsw.retrieval_recall_ <= 1.0 and "retrieval_recall@100" in hnsw.extra_
    assert not hasattr(cls().fit(fit, side), "extra_")  # dense: nothing to record


def test_two_tower_starts_as_clip_mean_is_deterministic_and_beats_random(tiny_track):
    fit, relevant, side = tiny_track
    start = TwoTower(epochs=0, device="cpu", progress=False).fit(fit, side)
    mean = ClipMean().fit(fit, side)
    np.testing.assert_allclose(start.user_vec_, mean.profile_, atol=1e-6)
    np.testing.assert_allclose(start.item_vec_, mean.item_emb_, atol=1e-6)
    a = TwoTower(epochs=3, early_stopping=False, device="cpu", progress=False)
    trained = _evaluate(a, fit, relevant, side)
    b = TwoTower(epochs=3, early_stopping=False, device="cpu", progress=False).fit(fit, side)
    np.testing.assert_array_equal(a.item_vec_, b.item_vec_)
    np.testing.assert_array_equal(a.user_vec_, b.user_vec_)
    assert not np.allclose(a.item_vec_, start.item_vec_)  # training moved the towers
    assert a.best_epoch_ == 3 and len(a.history_) == 4
    rand = _evaluate(RandomRanker(seed=0), fit, relevant, side)
    assert trained.summary["recall@50"] > rand.summary["recall@50"] + 0.1


def test_methods_run_through_the_runner(tiny, tmp_path):
    result = run_benchmark(
        tiny.path, tracks=["lora-rec", "image-rec"],
        methods=["baselines.clip_text:ClipText", "baselines.two_tower:TwoTower"],
        data_dir=tmp_path / "data", results_dir=tmp_path / "results", leaderboard_dir=None,
        progress=False, echo=lambda *a: None,
    )
    names = sorted(Path(p).stem for p in result["records"])
    assert names == ["clip-text", "clip-text", "two-tower", "two-tower"]
    assert result["skipped"] == []
    # an approximate index through the same path, with its recall cost measured
    fit, relevant = track_data(result["split"], "image", "test")
    side = SideInfo(tiny, "image")
    ivf = ClipText(index="ivf", nlist=8, nprobe=2, device="cpu")
    _evaluate(ivf, fit, relevant, side)
    assert 0.0 < ivf.retrieval_recall_ <= 1.0
    assert set(ivf.extra_) == {"retrieval_recall@100", "users_without_prompts"}
