"""Metrics: hand-computed cases, edge cases, and agreement with pytrec_eval (trec_eval)."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
import scipy.sparse as sp

from benchmark.metrics import (
    DEFAULT_RANKING_METRICS,
    RANKING_METRICS,
    auc,
    average_popularity,
    catalogue_coverage,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    pairwise_accuracy,
    parse_metric,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from benchmark.ranking import hits_from_ranked, topk


def H(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=bool)


# ------------------------------------------------------------------------- hand computed

# One user, hits at ranks 2 and 4, 3 relevant items.
HITS = H([0, 1, 0, 1])
NREL = np.array([3])


def test_recall_hand():
    # 2 hits / 3 relevant
    assert recall_at_k(HITS, NREL, 4) == pytest.approx([2 / 3])
    # top 2 holds one hit: 1/3 ; capped: 1/min(2, 3) = 1/2
    assert recall_at_k(HITS, NREL, 2) == pytest.approx([1 / 3])
    assert recall_at_k(HITS, NREL, 2, denominator="capped") == pytest.approx([1 / 2])
    # |rel| = 10 > k = 5, hits at 1 and 3: 2/10 ; capped 2/5
    hits = H([1, 0, 1, 0, 0])
    assert recall_at_k(hits, np.array([10]), 5) == pytest.approx([0.2])
    assert recall_at_k(hits, np.array([10]), 5, denominator="capped") == pytest.approx([0.4])


def test_precision_hit_mrr_hand():
    assert precision_at_k(HITS, 4) == pytest.approx([0.5])  # 2 / 4
    assert precision_at_k(HITS, 1) == pytest.approx([0.0])
    assert precision_at_k(HITS, 3) == pytest.approx([1 / 3])
    assert hit_rate_at_k(HITS, 1) == pytest.approx([0.0])
    assert hit_rate_at_k(HITS, 2) == pytest.approx([1.0])
    assert mrr_at_k(HITS, 4) == pytest.approx([0.5])  # first hit at rank 2
    assert mrr_at_k(HITS, 1) == pytest.approx([0.0])  # cut before the first hit


def test_ndcg_hand():
    # DCG = 1/log2(3) + 1/log2(5); IDCG (3 relevant) = 1 + 1/log2(3) + 1/log2(4)
    expected = (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4))
    assert ndcg_at_k(HITS, NREL, 4) == pytest.approx([expected])  # ~0.49819
    assert expected == pytest.approx(0.498190, abs=1e-6)
    # k = 2: DCG = 1/log2(3), IDCG = 1 + 1/log2(3) (capped at k = 2)
    assert ndcg_at_k(HITS, NREL, 2) == pytest.approx([(1 / log2(3)) / (1 + 1 / log2(3))])
    # |rel| = 5 > k = 2 and both top items relevant: a perfect list, 1.0
    assert ndcg_at_k(H([1, 1, 0]), np.array([5]), 2) == pytest.approx([1.0])


def test_map_hand():
    # hits at 2 and 4: P@2 = 1/2, P@4 = 2/4 -> sum 1.0; D = min(4, 3) = 3 -> 1/3
    assert map_at_k(HITS, NREL, 4) == pytest.approx([1 / 3])
    assert map_at_k(HITS, NREL, 4, denominator="relevant") == pytest.approx([1 / 3])
    # k = 2: sum = 1/2; capped D = min(2, 3) = 2 -> 1/4; relevant D = 3 -> 1/6
    assert map_at_k(HITS, NREL, 2) == pytest.approx([1 / 4])
    assert map_at_k(HITS, NREL, 2, denominator="relevant") == pytest.approx([1 / 6])
    # perfect top 3 with 5 relevant: (1 + 1 + 1) / min(3, 5) = 1
    assert map_at_k(H([1, 1, 1, 0]), np.array([5]), 3) == pytest.approx([1.0])


def test_vectorised_rows_and_edge_cases():
    hits = H(
        [0, 0, 0, 0],  # no hit
        [1, 0, 0, 0],  # hit at rank 1
        [0, 0, 0, 1],  # hit at rank 4 only
        [1, 1, 0, 0],  # a list of 2 items, padded with False
    )
    n_rel = np.array([2, 1, 1, 2])
    np.testing.assert_allclose(recall_at_k(hits, n_rel, 4), [0, 1, 1, 1])
    np.testing.assert_allclose(precision_at_k(hits, 4), [0, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(hit_rate_at_k(hits, 3), [0, 1, 0, 1])
    np.testing.assert_allclose(mrr_at_k(hits, 4), [0, 1, 0.25, 1])
    # rank 4: 1/log2(5) over IDCG 1
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel, 4), [0, 1, 1 / log2(5), 1])
    np.testing.assert_allclose(map_at_k(hits, n_rel, 4), [0, 1, 0.25, 1])
    # k = 1
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel, 1), [0, 1, 0, 1])
    np.testing.assert_allclose(precision_at_k(hits, 1), [0, 1, 0, 1])
    for fn in (precision_at_k, hit_rate_at_k, mrr_at_k):
        assert fn(hits, 2).dtype == np.float64
        assert fn(np.zeros((0, 3), bool), 2).shape == (0,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be in"):
        ndcg_at_k(HITS, NREL, 5)
    with pytest.raises(ValueError, match="k must be in"):
        precision_at_k(HITS, 0)
    with pytest.raises(ValueError, match="denominator"):
        recall_at_k(HITS, NREL, 2, denominator="bogus")
    with pytest.raises(ValueError, match="denominator"):
        map_at_k(HITS, NREL, 2, denominator="bogus")
    with pytest.raises(ValueError, match="n_relevant"):
        recall_at_k(HITS, np.array([0]), 2)
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(HITS, np.array([1, 2]), 2)
    with pytest.raises(ValueError, match="2-D"):
        precision_at_k(np.array([True, False]), 1)


# ------------------------------------------------------------------------------ registry


def test_parse_metric():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric(" Recall@50 ") == ("recall", 50)
    for bad in ("ndcg", "ndcg@", "ndcg@0", "ndcg@x", "auc@10", "@10", "ndcg@10@2"):
        with pytest.raises(ValueError, match="recall") as info:
            parse_metric(bad)
        assert all(name in str(info.value) for name in RANKING_METRICS)
    for name in DEFAULT_RANKING_METRICS:
        parse_metric(name)
    assert set(RANKING_METRICS) == {"recall", "precision", "ndcg", "hit", "mrr", "map"}


def test_ranking_metrics_matches_single_functions():
    rng = np.random.default_rng(1)
    hits = rng.random((500, 50)) < 0.1
    n_rel = np.maximum(hits.sum(axis=1), rng.integers(1, 30, 500))
    out = ranking_metrics(hits, n_rel, list(DEFAULT_RANKING_METRICS) + ["map@50", "mrr@1"])
    assert list(out)[: len(DEFAULT_RANKING_METRICS)] == list(DEFAULT_RANKING_METRICS)
    for name, values in out.items():
        base, k = parse_metric(name)
        np.testing.assert_array_equal(values, RANKING_METRICS[base](hits, n_rel, k))
        assert values.shape == (500,) and values.dtype == np.float64
    np.testing.assert_array_equal(out["recall@20"], recall_at_k(hits, n_rel, 20))
    np.testing.assert_array_equal(out["map@10"], map_at_k(hits, n_rel, 10))
    np.testing.assert_array_equal(out["mrr@10"], mrr_at_k(hits, 10))
    assert ranking_metrics(hits, n_rel, []) == {}
    with pytest.raises(ValueError, match="k must be in"):
        ranking_metrics(hits, n_rel, ["ndcg@51"])


# ------------------------------------------------------------------------ beyond accuracy


def test_catalogue_coverage():
    ranked = np.array([[0, 1, -1], [1, 2, 3]])
    assert catalogue_coverage(ranked, 10, 2) == pytest.approx(0.3)  # {0, 1, 2}
    assert catalogue_coverage(ranked, 10, 3) == pytest.approx(0.4)  # {0, 1, 2, 3}
    assert catalogue_coverage(np.full((2, 3), -1), 10, 3) == 0.0
    with pytest.raises(ValueError, match="out of range"):
        catalogue_coverage(ranked, 3, 3)


def test_average_popularity():
    pop = np.array([10, 20, 30, 40])
    ranked = np.array([[0, 1, -1], [-1, -1, -1], [3, 2, 1]])
    # (10 + 20) / 2 ; empty list -> 0 ; (40 + 30 + 20) / 3
    np.testing.assert_allclose(average_popularity(ranked, pop, 3), [15, 0, 30])
    np.testing.assert_allclose(average_popularity(ranked, pop, 1), [10, 0, 40])


# ----------------------------------------------------------------------- pairwise / auc


def test_pairwise_accuracy_hand():
    a = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    b = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    label = np.array([1.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    # right, swapped, label tie, predicted tie, both tie, right (b), predicted tie
    np.testing.assert_allclose(pairwise_accuracy(a, b, label), [1, 0, 0.5, 0.5, 1, 1, 0.5])
    # |1.0 - 1.4| <= 0.5 is a tie (0.5 credit); |1.0 - 1.6| > 0.5 is a call for b (1)
    out = pairwise_accuracy(np.array([1.0, 1.0]), np.array([1.4, 1.6]), np.zeros(2), 0.5)
    np.testing.assert_allclose(out, [0.5, 1.0])
    # equal infinite scores are a tie
    np.testing.assert_allclose(pairwise_accuracy([np.inf], [np.inf], [0.5]), [1.0])


def test_pairwise_accuracy_errors():
    with pytest.raises(ValueError, match="score_b contains NaN .*index 1"):
        pairwise_accuracy([1.0, 2.0], [1.0, np.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="index 0"):
        pairwise_accuracy([1.0], [2.0], [0.3])
    with pytest.raises(ValueError, match="equal length"):
        pairwise_accuracy([1.0], [2.0, 1.0], [1.0])


def test_auc_hand():
    # positives 0.35 and 0.8; negatives 0.1 and 0.4: 3 of 4 pairs ordered -> 0.75
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # positives {1, 2}, negatives {1, 0}: (1 vs 1) 0.5 + 1 + 1 + 1 -> 3.5 / 4
    assert auc([1, 1, 2, 0], [1, 0, 1, 0]) == pytest.approx(0.875)
    assert auc([1, 1, 1], np.array([True, False, True])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        auc([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="index 2"):
        auc([1.0, 2.0, np.nan], [1, 0, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        auc([1.0, 2.0], [1, 2])


def test_auc_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 80))
        scores = rng.integers(0, 6, n).astype(float)  # many ties
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        pos, neg = scores[labels == 1], scores[labels == 0]
        diff = pos[:, None] - neg[None, :]
        brute = ((diff > 0) + 0.5 * (diff == 0)).mean()
        assert auc(scores, labels) == pytest.approx(brute, abs=1e-12)


# ------------------------------------------------------------------- against pytrec_eval

N_MAX = 10_000_000


def doc_name(j: int) -> str:
    # trec_eval orders tied scores by document name, descending (strcmp); a fixed-width
    # N_MAX - j makes that order "lower index first", our rule. The width must be fixed
    # ("d10000000" > "d09999999"): with a variable width, doc 0 would sort last.
    # Checked empirically below.
    return f"d{N_MAX - j:08d}"


def test_trec_eval_tie_order_is_lower_index_first():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    n = 30
    qrels = {f"q{j}": {doc_name(j): 1} for j in range(n)}
    run = {f"q{j}": {doc_name(i): 1.0 for i in range(n)} for j in range(n)}
    result = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    # All scores tie; the relevant document j must sit at rank j + 1.
    for j in range(n):
        assert result[f"q{j}"]["recip_rank"] == pytest.approx(1 / (j + 1))


def test_against_pytrec_eval_with_ties():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(2024)
    n_q, n_docs, K = 2000, 200, 50
    cutoffs = (1, 5, 10, 20, 50)

    # Integer scores in a small range: nearly every cut falls inside a tie.
    scores = rng.integers(0, 12, (n_q, n_docs)).astype(np.float32)
    docs_per_query = rng.integers(50, n_docs + 1, n_q)
    exists = np.arange(n_docs)[None, :] < docs_per_query[:, None]
    # Masked (-inf) documents are left out of the run; some queries keep fewer than K.
    masked = ~exists | (rng.random((n_q, n_docs)) < 0.1)
    short = rng.random(n_q) < 0.05
    masked[short] |= rng.random((int(short.sum()), n_docs)) < 0.97
    scores[masked] = -np.inf
    relevant = exists & (rng.random((n_q, n_docs)) < rng.uniform(0.01, 0.3, (n_q, 1)))
    keep = relevant.any(axis=1)  # queries without relevant docs are not evaluated
    scores, relevant = scores[keep], relevant[keep]
    n = scores.shape[0]
    assert n > 1500 and (np.isfinite(scores).sum(axis=1) < K).sum() > 50

    ranked, _ = topk(scores, K)
    hits = hits_from_ranked(ranked, sp.csr_matrix(relevant))
    n_rel = relevant.sum(axis=1)
    ours = ranking_metrics(
        hits, n_rel, [f"{m}@{k}" for m in ("recall", "precision", "ndcg", "hit") for k in cutoffs]
    )
    for k in cutoffs:
        ours[f"map_cut@{k}"] = map_at_k(hits, n_rel, k, denominator="relevant")
        ours[f"mrr@{k}"] = mrr_at_k(hits, k)

    names = np.array([doc_name(j) for j in range(n_docs)])
    qrels = {f"q{u}": {names[j]: 1 for j in np.flatnonzero(relevant[u])} for u in range(n)}
    run = {
        f"q{u}": dict(zip(names[finite].tolist(), scores[u, finite].tolist(), strict=True))
        for u in range(n)
        for finite in [np.isfinite(scores[u])]
    }
    cut = ",".join(map(str, cutoffs))
    measures = {f"recall.{cut}", f"P.{cut}", f"ndcg_cut.{cut}", f"map_cut.{cut}", f"success.{cut}"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)

    def column(measure: str, results: dict = trec) -> np.ndarray:
        return np.array([results[f"q{u}"][measure] for u in range(n)])

    for k in cutoffs:
        for our_name, trec_name in (
            (f"recall@{k}", f"recall_{k}"),
            (f"precision@{k}", f"P_{k}"),
            (f"ndcg@{k}", f"ndcg_cut_{k}"),
            (f"map_cut@{k}", f"map_cut_{k}"),
            (f"hit@{k}", f"success_{k}"),
        ):
            np.testing.assert_allclose(ours[our_name], column(trec_name), rtol=0, atol=1e-9)

    # MRR@k: trec_eval's recip_rank on the top k only.
    for k in (1, 10, 50):
        run_k = {
            f"q{u}": {names[j]: float(scores[u, j]) for j in ranked[u, :k] if j >= 0}
            for u in range(n)
        }
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run_k)
        np.testing.assert_allclose(ours[f"mrr@{k}"], column("recip_rank", rr), rtol=0, atol=1e-9)
