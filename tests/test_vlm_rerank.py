"""vlm-rerank and the rerank protocol, with a tiny randomly initialised LLaVA built offline.

Why LLaVA: its processor is a plain ``CLIPImageProcessor`` (fixed square resize, no image
splitting) plus *any* tokenizer with an ``<image>`` token, so a WordLevel tokenizer from
the ``tokenizers`` library and a one-line chat template are enough; the model is a tiny
CLIP vision tower + tiny Llama. Idefics3 / SmolVLM need image-splitting row/column tokens
and Qwen2-VL needs its special vision tokens, a BPE tokenizer and 3-D rotary positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from baselines.vlm_rerank import (  # noqa: E402
    VLMReranker,
    choice_messages,
    describe_messages,
    yes_no_messages,
)
from benchmark.protocols import InteractionData, RankingMethod, SideInfo  # noqa: E402
from benchmark.rerank import (  # noqa: E402
    Candidates,
    evaluate_rerank,
    make_candidates,
    order_candidates,
)
from benchmark.results import read_record  # noqa: E402
from benchmark.runner import run_rerank  # noqa: E402

WORDS = ("<pad> <unk> <s> </s> <image> Yes No user assistant : ? . , ' ( ) Here are images "
         "this liked is a new image Would like the Answer or Describe visual taste in one "
         "short sentence A B C D E F described as Image Which most with its letter made "
         "models LoRAs used model an s").split()
VOCAB = {w: i for i, w in enumerate(WORDS)}
TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
            "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


def build_tiny_vlm(out: Path) -> Path:
    """Save a tiny random LLaVA (seed 0) and its processor under ``out``; returns ``out``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                           crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        chat_template=TEMPLATE, num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2,
                                       image_size=16, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, max_position_embeddings=512,
                                pad_token_id=0, bos_token_id=2, eos_token_id=3),
        image_token_id=VOCAB["<image>"], vision_feature_select_strategy="default",
        vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    from PIL import Image

    out = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"i{i}.png")
    return out


def toy_train() -> InteractionData:
    """u0 saw i0, i1, i2 (in that order); u1 saw i3 only."""
    rows = pd.DataFrame({"user_id": ["u0", "u0", "u0", "u1"],
                         "item_id": ["i1", "i0", "i2", "i3"],
                         "timestamp": pd.to_datetime(["2024-01-02", "2024-01-01",
                                                      "2024-01-03", "2024-01-01"])})
    return InteractionData.from_frame(rows, pd.Index(["u0", "u1"], dtype=object),
                                      pd.Index([f"i{i}" for i in range(6)], dtype=object),
                                      "image")


def make_reranker(model: Path, images: Path, cache: Path, **kw) -> VLMReranker:
    side = SideInfo(dataset=None, item_kind="image", extra={"images": str(images)})
    params = {"n_history": 2, "batch_size": 3, "device": "cpu", "cache_dir": str(cache)}
    return VLMReranker(model=str(model), **(params | kw)).fit(toy_train(), side)


class Recorder(VLMReranker):
    """Records the prompts and image lists the reranker sends to the model."""

    def next_token_logprobs(self, messages, images):
        self.sent = getattr(self, "sent", []) + list(zip(messages, images, strict=True))
        return super().next_token_logprobs(messages, images)


def test_prompt_building(tiny_vlm, image_dir, tmp_path):
    side = SideInfo(dataset=None, item_kind="image", extra={"images": str(image_dir)})
    r = Recorder(model=str(tiny_vlm), n_history=2, batch_size=8, device="cpu",
                 cache_dir=str(tmp_path)).fit(toy_train(), side)
    # the 2 most recent history items, oldest first: i0 (day 1) is dropped
    assert r.history(0).tolist() == [1, 2] and r.history(1).tolist() == [3]
    r.rerank(np.array([0]), np.array([[4, 5]]))
    messages, images = r.sent[0]
    assert [Path(p).name for p in images] == ["i1.png", "i2.png", "i4.png"]  # candidate last
    _, processor, _ = r._model()
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("user: Here are images this user liked: <image> <image> Here is a new "
                    "image: <image> Would this user like the new image? Answer Yes or No. "
                    "assistant:")  # the template's newline is trimmed after a block tag
    assert sum(c["type"] == "image" for c in yes_no_messages(0)[0]["content"]) == 1
    assert sum(c["type"] == "image" for c in describe_messages(3)[0]["content"]) == 3
    content = choice_messages("x", 3)[0]["content"]
    labels = [c["text"] for c in content if "Image" in c.get("text", "")]
    assert labels == ["Image A:", "Image B:", "Image C:"]


def independent_yes_no(model_dir: Path, image_dir: Path, history: list[int], cand: int):
    """log p(Yes) - log p(No) from one unpadded forward pass, computed without the reranker."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    text = processor.apply_chat_template(yes_no_messages(len(history)),
                                         add_generation_prompt=True, tokenize=False)
    ims = [Image.open(image_dir / f"i{i}.png").convert("RGB") for i in [*history, cand]]
    inputs = processor(text=[text], images=[ims], return_tensors="pt")
    with torch.no_grad():
        lp = torch.log_softmax(model(**inputs).logits[0, -1].double(), dim=-1)
    return float(lp[VOCAB["Yes"]] - lp[VOCAB["No"]])


def test_yes_no_score_matches_logits_and_reorders(tiny_vlm, image_dir, tmp_path):
    r = make_reranker(tiny_vlm, image_dir, tmp_path)
    # users with 2 and 1 history images share a batch: left padding must not change scores
    items = np.array([[3, 4, 5], [0, 4, 5]])
    scores = r.rerank(np.array([0, 1]), items)
    assert r.stats_["n_model_calls"] == 2 and r.stats_["n_prompts"] == 6
    expected = [[independent_yes_no(tiny_vlm, image_dir, [1, 2], c) for c in items[0]],
                [independent_yes_no(tiny_vlm, image_dir, [3], c) for c in items[1]]]
    np.testing.assert_allclose(scores, np.array(expected), rtol=0, atol=1e-5)
    # reordering: evaluate_rerank sorts each list by the scores, best first
    cands = Candidates(np.array([0, 1]), items, positive=items[:, 0])
    ev = evaluate_rerank(r, cands, metric_names=("recall@1", "ndcg@3"), progress=False)
    want = np.take_along_axis(items, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    assert ev.ranked.tolist() == want.tolist()
    assert ev.stats["n_model_calls"] == 0  # the second pass came from the cache


def test_cache_second_run_makes_no_calls(tiny_vlm, image_dir, tmp_path):
    first = make_reranker(tiny_vlm, image_dir, tmp_path)
    items = np.array([[4, 5, -1], [1, 2, 4]])
    a = first.rerank(np.array([0, 1]), items)
    assert first.stats_["n_model_calls"] == 2 and np.isneginf(a[0, 2])
    second = make_reranker(tiny_vlm, image_dir, tmp_path)
    b = second.rerank(np.array([0, 1]), items)
    assert second.stats_["n_model_calls"] == 0 and second.stats_["cache_hits"] == 5
    assert second._loaded is None  # the weights were never loaded
    np.testing.assert_array_equal(a, b)
    # a different history is a different context: a fresh model call
    third = make_reranker(tiny_vlm, image_dir, tmp_path, n_history=1)
    third.rerank(np.array([0]), np.array([[4]]))
    assert third.stats_["n_model_calls"] == 1


def test_full_ranking_score_lifts_reranked_top_n(tiny_vlm, image_dir, tmp_path):
    r = make_reranker(tiny_vlm, image_dir, tmp_path, top_n=3, first_stage="itemknn")
    out = r.score(np.array([0]))
    # u0's items 0-2 are training items; itemknn's top 3 of the rest are 3, 4, 5
    vlm = r.rerank(np.array([0]), np.array([[3, 4, 5]]))[0]
    lifted = out[0, [3, 4, 5]]
    assert lifted.min() > out[0, :3].max()
    assert np.argsort(-lifted, kind="stable").tolist() == np.argsort(-vlm, kind="stable").tolist()


def test_describe_then_score(tiny_vlm, image_dir, tmp_path):
    r = make_reranker(tiny_vlm, image_dir, tmp_path, mode="describe-then-score", n_orders=2,
                      max_description_tokens=3)
    items = np.array([[3, 4, 5], [0, 4, 5]])
    scores = r.rerank(np.array([0, 1]), items)
    # one generate batch (2 users), then 2 users x 2 orders = 4 prompts in batches of 3
    assert r.stats_["n_model_calls"] == 1 + 2 and r.stats_["n_descriptions"] == 2
    orders = r.candidate_orders(0, 3)
    assert orders.shape == (2, 3) and sorted(orders[0]) == [0, 1, 2]
    np.testing.assert_array_equal(orders, r.candidate_orders(0, 3))  # seeded
    # user 0's scores, recomputed one order at a time (unbatched) and averaged
    text = r.describe(np.array([0]))[0]
    total = np.zeros(3)
    for perm in orders:
        lp = r.next_token_logprobs([choice_messages(text, 3)],
                                   [[r.item_paths_[int(items[0, c])] for c in perm]])
        total[perm] += r.label_logprobs(lp[0], 3)
    np.testing.assert_allclose(scores[0], total / 2, atol=1e-5)
    # each order's label scores are log-probabilities over the 3 labels
    assert np.isclose(np.exp(r.label_logprobs(lp[0], 3)).sum(), 1.0)
    again = make_reranker(tiny_vlm, image_dir, tmp_path, mode="describe-then-score",
                          n_orders=2, max_description_tokens=3)
    np.testing.assert_array_equal(again.rerank(np.array([0, 1]), items), scores)
    assert again.stats_["n_model_calls"] == 0


def test_make_candidates_exact():
    # 3 users x 8 items; scores rank item j of every user by -j (item 0 best)
    scores = np.tile(-np.arange(8, dtype=np.float32), (3, 1))
    exclude = sp.csr_matrix(([1, 1, 1], ([0, 1, 1], [0, 0, 1])), shape=(3, 8))
    relevant = sp.csr_matrix(([1, 1], ([0, 1], [5, 7])), shape=(3, 8))  # user 2: no test item
    # ImageGem's inserted lists (the default, mode="top", is tested in tests/test_rerank.py)
    c = make_candidates(scores, exclude, relevant, n_candidates=4, top_n=6, seed=0,
                        mode="inserted")
    assert c.user_idx.tolist() == [0, 1]
    assert c.positive.tolist() == [5, 7]
    # negatives: the first stage's best 3 that are neither train nor held-out items
    assert sorted(c.items[0]) == [1, 2, 3, 5] and sorted(c.items[1]) == [2, 3, 4, 7]
    # the shuffle is exactly the documented one
    rng = np.random.default_rng(0)
    rng.random(2)  # the positive draws
    keys = rng.random((2, 4))
    base = np.array([[5, 1, 2, 3], [7, 2, 3, 4]])
    assert c.items.tolist() == np.take_along_axis(base, np.argsort(keys, axis=1), 1).tolist()
    again = make_candidates(scores, exclude, relevant, n_candidates=4, top_n=6, seed=0,
                            mode="inserted")
    assert again.items.tolist() == c.items.tolist()
    shuffled = {tuple(make_candidates(scores, exclude, relevant, 4, 6, seed=s,
                                      mode="inserted").items[0]) for s in range(6)}
    assert len(shuffled) > 1
    # sampled negatives come from the top-N only; positive still guaranteed
    s = make_candidates(scores, exclude, relevant, 4, 4, seed=1, negatives="sample",
                        mode="inserted")
    assert set(s.items[0]) - {5} < {1, 2, 3, 4} and 5 in s.items[0]
    assert len(set(s.items[0])) == 4
    # first stage had user 0's positive (item 5) at rank 5 of its unmasked-train list
    assert c.params["first_stage_recall@top_n"] == 1.0


class FixedScores(RankingMethod):
    name = "fixed"

    def __init__(self, table: np.ndarray | None = None):
        self.table = table

    def score(self, user_idx):
        return self.table[user_idx]


def test_recall_ndcg_at_5_by_hand():
    items = np.array([[0, 1, 2, 3, 4, 5]] * 3)
    # scores put the positive at rank 1, 3 and 6 respectively
    table = np.array([[6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1]], np.float32)
    cands = Candidates(np.arange(3), items, positive=np.array([0, 2, 5]))
    ev = evaluate_rerank(FixedScores(table), cands, progress=False)
    assert ev.per_user["recall@5"].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(ev.per_user["ndcg@5"], [1.0, 0.5, 0.0])  # 1/log2(3+1) = 0.5
    assert ev.summary["recall@5"] == pytest.approx(2 / 3)
    assert ev.summary["ndcg@5"] == pytest.approx(0.5)
    assert "ndcg@10" not in ev.summary  # k > n_candidates is dropped
    assert ev.stats["n_model_calls"] == 0 and ev.stats["seconds_per_call"] is None
    # ties: lower item index first
    assert order_candidates(np.array([[3, 1, 2]]), np.zeros((1, 3))).tolist() == [[1, 2, 3]]


def test_run_rerank_on_synthetic(tmp_path):
    from benchmark.data.synthetic import synthesize

    ds = synthesize("tiny", tmp_path / "tiny", seed=0, progress=False)
    out = run_rerank(str(ds.path), tracks=["lora-rec"],
                     methods=["itemknn", "clip-mean", "baselines.vlm_rerank:VLMReranker"],
                     first_stage="itemknn", n_candidates=10, top_n=20,
                     data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                     leaderboard_dir=None, progress=False, echo=lambda *_: None)
    assert [s[1] for s in out["skipped"]] == ["vlm-rerank"]  # no images: not applicable
    assert len(out["records"]) == 2
    record = read_record(out["records"][0])
    assert record["split"]["protocol"].startswith("rerank-")
    assert record["split"]["candidates"]["first_stage"] in record["split"]["protocol"]
    assert record["split"]["candidates"]["first_stage"] == "itemknn"
    assert record["n_model_calls"] == 0 and "seconds_per_call" in record["timing_s"]
    assert "seconds_per_call" not in Path(out["records"][0]).read_text()  # machine-dependent
    headline = {"recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10"}
    assert set(record["metrics"]) == (headline | {f"cond_{m}" for m in headline}
                                      | {"first_stage_hit@10"})
    assert "/rerank-itemknn-c10/lora-rec/" in str(out["records"][0])
