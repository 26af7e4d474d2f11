"""The rerank protocol: candidate lists and both metric views by hand, and its controls on
synthetic data (oracle on top, random below the collaborative rerankers, the reversed
first stage never above the first stage's own order; the inserted protocol's bias)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from benchmark.errors import NotApplicable
from benchmark.protocols import RankingMethod
from benchmark.rerank import (
    CONTROL_METHOD,
    Candidates,
    ReversedFirstStage,
    evaluate_rerank,
    make_candidates,
    protocol_name,
)
from benchmark.runner import run_rerank  # noqa: E402

NAMES = ("recall@1", "recall@3", "ndcg@3", "mrr@3")
LOG3 = 1.0 / np.log2(3.0)  # the discount of rank 2


class FixedScores(RankingMethod):
    """A reranker whose scores are a given table [n_users, n_items]."""

    name = "fixed"

    def __init__(self, table: np.ndarray | None = None):
        self.table = table

    def score(self, user_idx):
        return np.asarray(self.table[user_idx], dtype=np.float32)


def tiny_case():
    """4 users x 8 items; the first stage ranks item j of every user by -j (item 0 best).

    u0: train {0}, held-out {2}     -> top-3 [1, 2, 3]: the positive at position 2 (a hit)
    u1: train {1}, held-out {6}     -> top-3 [0, 2, 3]: the first stage missed it
    u2: train {0, 1}, held-out {3, 7} -> top-3 [2, 3, 4]: one of its two held-out items
    u3: no held-out item            -> not a test user
    """
    scores = np.tile(-np.arange(8, dtype=np.float32), (4, 1))
    exclude = sp.csr_matrix(([1, 1, 1, 1], ([0, 1, 2, 2], [0, 1, 0, 1])), shape=(4, 8))
    relevant = sp.csr_matrix(([1, 1, 1, 1], ([0, 1, 2, 2], [2, 6, 3, 7])), shape=(4, 8))
    return scores, exclude, relevant


def test_top_candidates_exact():
    scores, exclude, relevant = tiny_case()
    c = make_candidates(scores, exclude, relevant, n_candidates=3, seed=0)
    assert c.user_idx.tolist() == [0, 1, 2]
    # the first stage's own top-3 in its order: train items masked (u0's 0, u1's 1, u2's 0
    # and 1), held-out items NOT masked (u0's 2 and u2's 3 stay), nothing inserted (u1's 6)
    assert c.items.tolist() == [[1, 2, 3], [0, 2, 3], [2, 3, 4]]
    assert c.is_relevant.tolist() == [[False, True, False], [False, False, False],
                                      [False, True, False]]
    assert c.n_relevant.tolist() == [1, 1, 2]  # |rel|: all of the user's held-out items
    assert c.first_stage_hit.tolist() == [True, False, True]
    assert c.hit_rate == pytest.approx(2 / 3)
    assert c.positive.tolist() == [2, -1, 3]  # first relevant item of the list, -1: none
    assert c.params["mode"] == "top" and "top_n" not in c.params
    # the seed only draws the max_users subset
    assert make_candidates(scores, exclude, relevant, 3, seed=5).items.tolist() == \
        c.items.tolist()
    sub = make_candidates(scores, exclude, relevant, 3, seed=0, max_users=2)
    rng = np.random.default_rng(0)
    assert sub.user_idx.tolist() == sorted(rng.choice([0, 1, 2], size=2, replace=False))


def test_both_metric_views_by_hand():
    scores, exclude, relevant = tiny_case()
    c = make_candidates(scores, exclude, relevant, n_candidates=3, seed=0)
    # 1) the first stage's own order: u0's positive and u2's item 3 at rank 2
    ev = evaluate_rerank(FixedScores(scores), c, metric_names=NAMES, progress=False)
    assert ev.ranked.tolist() == c.items.tolist()
    p = ev.per_user
    assert p["recall@1"].tolist() == [0.0, 0.0, 0.0]
    assert p["recall@3"].tolist() == [1.0, 0.0, 0.5]  # u2: 1 of |rel| = 2
    # u2: DCG = 1/log2(3), IDCG over min(|rel|, 3) = 2 ranks = 1 + 1/log2(3)
    np.testing.assert_allclose(p["ndcg@3"], [LOG3, 0.0, LOG3 / (1 + LOG3)])
    np.testing.assert_allclose(p["mrr@3"], [0.5, 0.0, 0.5])
    s = ev.summary
    assert s["recall@3"] == pytest.approx(1.5 / 3)  # all test users, u1 counts 0
    assert s["cond_recall@3"] == pytest.approx(1.5 / 2)  # u0 and u2 only
    assert s["ndcg@3"] == pytest.approx((LOG3 + LOG3 / (1 + LOG3)) / 3)
    assert s["cond_ndcg@3"] == pytest.approx((LOG3 + LOG3 / (1 + LOG3)) / 2)
    assert s["cond_mrr@3"] == pytest.approx(0.5) and s["mrr@3"] == pytest.approx(1 / 3)
    assert s["first_stage_hit@3"] == pytest.approx(2 / 3)
    assert ev.n_users_conditional == 2
    assert {k: v.tolist() for k, v in ev.conditional_per_user().items()}["cond_recall@3"] \
        == [1.0, 0.5]
    # 2) a reranker that lifts u0's positive (ties: lower item index) and u2's item 4
    table = np.zeros((4, 8), np.float32)
    table[0, 2] = 1.0
    table[2, 4], table[2, 3] = 1.0, 0.5
    ev2 = evaluate_rerank(FixedScores(table), c, metric_names=NAMES, progress=False)
    assert ev2.ranked.tolist() == [[2, 1, 3], [0, 2, 3], [4, 3, 2]]
    assert ev2.per_user["recall@1"].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(ev2.per_user["ndcg@3"], [1.0, 0.0, LOG3 / (1 + LOG3)])
    assert ev2.summary["cond_recall@1"] == pytest.approx(0.5)
    assert ev2.summary["recall@1"] == pytest.approx(1 / 3)


def test_score_reranker_ignores_list_order():
    scores, exclude, relevant = tiny_case()
    c = make_candidates(scores, exclude, relevant, n_candidates=3, seed=0)
    flipped = Candidates(c.user_idx, c.items[:, ::-1], c.positive, c.params,
                         is_relevant=c.is_relevant[:, ::-1], n_relevant=c.n_relevant,
                         first_stage_hit=c.first_stage_hit)
    ties = FixedScores(np.zeros((4, 8), np.float32))  # all tied: lower item index first
    for reranker in (FixedScores(scores), ties, FixedScores(-scores)):
        a = evaluate_rerank(reranker, c, metric_names=NAMES, progress=False)
        b = evaluate_rerank(reranker, flipped, metric_names=NAMES, progress=False)
        assert a.ranked.tolist() == b.ranked.tolist()
        assert a.summary == b.summary


def test_inserted_candidates_exact():
    scores, exclude, relevant = tiny_case()
    c = make_candidates(scores, exclude, relevant, n_candidates=3, top_n=4, seed=0,
                        mode="inserted")
    rng = np.random.default_rng(0)
    r = rng.random(3)  # the positive draws: u2 has held-out items (3, 7)
    assert [3, 7][int(np.floor(r[2] * 2))] == 3
    assert c.positive.tolist() == [2, 6, 3]
    # negatives: the best 2 that are neither train nor held-out items; then the shuffle
    base = np.array([[2, 1, 3], [6, 0, 2], [3, 2, 4]])
    keys = rng.random((3, 3))
    assert c.items.tolist() == np.take_along_axis(base, np.argsort(keys, axis=1), 1).tolist()
    assert c.n_relevant.tolist() == [1, 1, 1]  # only the inserted positive counts
    assert c.first_stage_hit.tolist() == [True, False, True]  # same as the top lists
    assert c.params["mode"] == "inserted" and c.params["top_n"] == 4
    # the bias: u1's positive is the item the first stage ranked below all its negatives,
    # so minus the first stage's scores puts it first
    fs = evaluate_rerank(FixedScores(scores), c, metric_names=NAMES, progress=False)
    rev = evaluate_rerank(FixedScores(-scores), c, metric_names=NAMES, progress=False)
    assert fs.per_user["mrr@3"].tolist() == pytest.approx([0.5, 1 / 3, 0.5])
    assert rev.per_user["mrr@3"].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert rev.summary["mrr@3"] > fs.summary["mrr@3"]


def test_reversed_first_stage_control():
    scores, _, _ = tiny_case()
    rev = ReversedFirstStage(FixedScores(scores)).fit(None, None)
    out = rev.score(np.array([0]))
    assert out[0].tolist() == np.arange(8, dtype=np.float32).tolist()
    assert rev.get_params() == {"first_stage": "fixed"}
    inf = ReversedFirstStage(FixedScores(np.array([[1.0, -np.inf, np.nan]], np.float32)))
    assert inf.score(np.array([0]))[0].tolist() == [-1.0, -np.inf, -np.inf]
    with pytest.raises(NotApplicable):
        ReversedFirstStage().fit(None, None)


def test_protocol_names():
    assert protocol_name("itemknn", 10) == "rerank-itemknn-c10"
    assert protocol_name("itemknn", 10, "inserted") == "rerank-inserted-itemknn-c10"
    assert protocol_name("recbole:SASRec", 5) == "rerank-recbole_SASRec-c5"
    with pytest.raises(ValueError, match="candidate mode"):
        protocol_name("itemknn", 10, "sampled")


# ------------------------------------------------------------------ synthetic-tiny runs

METHODS = ["random", "popularity", "itemknn", "userknn", "oracle", CONTROL_METHOD]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from benchmark.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("rerank")
    ds = synthesize("tiny", root / "tiny", seed=0, progress=False)
    out = {}
    for mode in ("top", "inserted"):
        out[mode] = run_rerank(str(ds.path), tracks=["lora-rec", "image-rec"],
                               methods=METHODS[:-1] if mode == "inserted" else METHODS,
                               first_stage="itemknn", data_dir=root / "data",
                               results_dir=root / f"results-{mode}",
                               leaderboard_dir=root / f"lb-{mode}", progress=False,
                               echo=lambda *_: None, candidates=mode)
    return out


def _table(result, track):
    (table,) = [t for t in result["tables"] if t["track"] == track]
    return table


def _metric(table, method, metric="ndcg@5"):
    return next(r for r in table["rows"] if r["method"] == method)["metrics"][metric]


def test_synthetic_top_protocol_orders_methods(tiny_runs):
    result = tiny_runs["top"]
    lora = _table(result, "lora-rec")
    assert lora["protocol"] == "rerank-itemknn-c10"
    # the synthetic truth comes first; random below every collaborative reranker
    assert lora["rows"][0]["method"] == "oracle"
    for method in ("itemknn", "userknn", "popularity"):
        assert _metric(lora, method) > _metric(lora, "random")
    # control: the reversed first stage never beats the first stage's own order or oracle
    for track in ("lora-rec", "image-rec"):
        table = _table(result, track)
        for metric in ("ndcg@5", "recall@5", "cond_ndcg@5", "mrr@10"):
            rev = _metric(table, CONTROL_METHOD, metric)
            assert rev < _metric(table, "itemknn", metric), (track, metric)
            assert rev < _metric(table, "oracle", metric), (track, metric)


def test_synthetic_record_fields(tiny_runs):
    path = next(p for p in tiny_runs["top"]["records"] if "/lora-rec/itemknn" in str(p))
    record = json.loads(Path(path).read_text())
    m = record["metrics"]
    views = record["rerank_views"]
    n, n_hit = views["all"]["n_users"], views["conditional"]["n_users"]
    assert n == record["n_users_evaluated"] == len(record["per_user"]["user_id"])
    assert sum(views["first_stage_hit"]) == n_hit
    assert m["first_stage_hit@10"] == pytest.approx(n_hit / n)
    assert record["split"]["candidates"]["mode"] == "top"
    # one held-out item per user: headline = hit rate x conditional
    for k in ("recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10"):
        assert m[k] == pytest.approx(m["first_stage_hit@10"] * m[f"cond_{k}"], abs=1e-7)
        assert f"cond_{k}" in record["intervals"] and f"cond_{k}" not in record["per_user"]
        hit = np.array(views["first_stage_hit"], bool)
        assert np.mean(np.array(record["per_user"][k])[hit]) == \
            pytest.approx(m[f"cond_{k}"], abs=1e-7)
    # the first stage's own order of its top-10 is its full ranking's, cut at 10
    assert m["recall@5"] <= m["first_stage_hit@10"]


def test_synthetic_inserted_protocol_bias(tiny_runs):
    top, ins = tiny_runs["top"], tiny_runs["inserted"]
    for track in ("lora-rec", "image-rec"):
        t_top, t_ins = _table(top, track), _table(ins, track)
        assert t_ins["protocol"] == "rerank-inserted-itemknn-c10"
        # the control row is added to an inserted run, and it wins there
        assert t_ins["rows"][0]["method"] == CONTROL_METHOD
        assert _metric(t_ins, CONTROL_METHOD) > _metric(t_ins, "itemknn")
        assert _metric(t_ins, CONTROL_METHOD) > _metric(t_ins, "oracle")
        # every positive is guaranteed: the headline rates a missed user too
        assert _metric(t_ins, "random", "recall@5") > 0.4
        # leave-last-out: a hit user's inserted list is its top list, so the
        # conditional view (and the hit rate) agree between the protocols
        for method in ("random", "popularity", "itemknn", "userknn", "oracle"):
            for metric in ("cond_recall@5", "cond_ndcg@5", "first_stage_hit@10"):
                assert _metric(t_ins, method, metric) == pytest.approx(
                    _metric(t_top, method, metric), abs=1e-9), (track, method, metric)
        assert t_ins["split_fingerprint"] != t_top["split_fingerprint"]


def test_leaderboard_rerank_notes(tiny_runs):
    from benchmark.leaderboard import to_markdown

    top = to_markdown(_table(tiny_runs["top"], "lora-rec"))
    assert "cond_recall@5" in top and "first_stage_hit@10" in top
    assert "reference ceiling" not in top
    ins = to_markdown(_table(tiny_runs["inserted"], "lora-rec"))
    assert "Biased" in ins and "no ceiling" in ins and "rerank-itemknn-c10" in ins


def test_cli_candidates_option(tmp_path):
    from benchmark.cli import app

    runner = CliRunner()
    args = ["run", "-q", "--dataset", "synthetic-tiny", "--protocol", "rerank",
            "--tracks", "lora-rec", "--methods", "random", "--data-dir",
            str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--leaderboard-dir", str(tmp_path / "lb")]
    res = runner.invoke(app, [*args, "--candidates", "inserted"])
    assert res.exit_code == 0, res.output
    base = tmp_path / "results" / "synthetic-tiny"
    assert sorted(p.name for p in (base / "rerank-inserted-itemknn-c10" / "lora-rec")
                  .glob("*.json")) == ["random.json", f"{CONTROL_METHOD}.json"]
    res = runner.invoke(app, [*args, "--candidates", "sampled"])
    assert res.exit_code == 2 and "candidate mode" in res.output
