"""``python -m benchmark.perf`` on a tiny scale: the report's structure and exactness, not speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from benchmark import perf
from benchmark.evaluate import evaluate_ranking


def test_perf_tiny_report(tmp_path):
    out = tmp_path / "perf.json"
    assert perf.main(["--scale", "tiny", "--cache", str(tmp_path / "cache"), "--json", str(out),
                      "--no-recbole", "--no-scaling", "--memory-budget-mb", "64", "--inline"]) == 0
    report = json.loads(out.read_text())
    for key in ("floor", "gembench", "metrics_only", "load", "comparison", "runs", "table",
                "load_average_start", "versions"):
        assert key in report
    g = report["gembench"]
    assert "error" not in g, g
    assert g["wall_s"] > 0 and g["peak_rss_mb"] > 0
    assert set(perf.METRICS) <= set(g["summary"])
    # the engine's top-K equals the floor's selection on the same (tie-free) scores
    assert g["exactness"]["identical"] and g["exactness"]["rows_differing"] == 0
    assert g["exactness"]["rows_tied_at_k"] == 0
    assert report["floor"]["wall_s"] > 0
    assert report["floor"]["method"] in ("floor-torch", "floor-faiss")
    m = report["metrics_only"]
    assert m["gembench_s"] > 0
    if m.get("reference"):
        assert m["max_abs_diff"] < 1e-9
    assert {"gembench_over_floor", "peak_rss_gb", "load_target_met"} <= set(report["comparison"])
    assert "| gembench full evaluation |" in report["table"]


def test_engine_equals_plain_selection_tie_free():
    """In-process: engine top-K == stable argsort of masked scores for a factor model."""
    users_f, items_f = perf.random_factors(40, 3000, seed=3)
    rng = np.random.default_rng(0)
    exclude = sp.random(40, 3000, density=0.01, format="csr", random_state=1)
    exclude.data[:] = 1
    relevant = sp.csr_matrix((np.ones(40), (np.arange(40), rng.integers(0, 3000, 40))),
                             shape=(40, 3000))
    model = perf.FactorModel(users_f, items_f)
    ev = evaluate_ranking(model, exclude, relevant, ("ndcg@50",), memory_budget_mb=0.5,
                          progress=False)
    scores = users_f @ items_f.T
    scores[exclude.nonzero()] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :50]
    np.testing.assert_array_equal(ev.ranked, expected)
    check = perf.exactness_check(model, exclude, ev.user_idx, ev.ranked)
    assert check["identical"] and check["users_checked"] == 40


@pytest.mark.parametrize("nan_at_masked", [True, False])
def test_fused_nan_check_still_raises(nan_at_masked):
    from benchmark.errors import GembenchError

    users_f, items_f = perf.random_factors(5, 4000, seed=0)

    class Bad(perf.FactorModel):
        def score(self, user_idx, out=None):
            s = super().score(user_idx, out=out)
            s[1, 7 if nan_at_masked else 9] = np.nan
            return s

    exclude = sp.csr_matrix((np.ones(2), ([1, 3], [7, 7])), shape=(5, 4000))
    relevant = sp.csr_matrix((np.ones(5), (np.arange(5), np.arange(5))), shape=(5, 4000))
    col = 7 if nan_at_masked else 9
    with pytest.raises(GembenchError, match=f"user index 1, item index {col}"):
        evaluate_ranking(Bad(users_f, items_f), exclude, relevant, ("hit@10",),
                         progress=False)
