"""Training views: no method reaches held-out data through what it is handed.

The adversarial methods of :mod:`benchmark.adversarial` walk everything reachable from their
``fit`` arguments and rank what they find beyond their training rows first. Through the
harness they must not beat ``oracle`` (and find no held-out pair); handed the whole data set,
as methods were before views, they do — so these tests can fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.adversarial import Cheater, PairCheater, found_pairs, reachable_data
from benchmark.data.synthetic import synthesize
from benchmark.errors import NotApplicable
from benchmark.evaluate import evaluate_ranking
from benchmark.protocols import SideInfo
from benchmark.registry import NameCollision, resolve_method
from benchmark.runner import prepare_split, run_benchmark, track_data, track_side
from benchmark.splits import SplitConfig
from benchmark.views import anonymous_array

CHEATER = "benchmark.adversarial:Cheater"
QUIET = {"progress": False, "echo": lambda *a: None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("views") / "synthetic-tiny", seed=0,
                      progress=False)


@pytest.fixture(scope="module")
def ranking_runs(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for protocol in ("leave-last-out", "cold-start"):
        run_benchmark(tiny.path, methods=["oracle", "popularity", CHEATER], protocol=protocol,
                      data_dir=root / "data", results_dir=root / "results",
                      leaderboard_dir=None, **QUIET)
        out[protocol] = root / "results" / "synthetic-tiny" / protocol
    return out


def _metric(folder, track, method, metric="ndcg@10"):
    import json

    return json.loads((folder / track / f"{method}.json").read_text())["metrics"][metric]


@pytest.mark.parametrize("protocol", ["leave-last-out", "cold-start"])
@pytest.mark.parametrize("track", ["lora-rec", "image-rec"])
def test_cheater_through_the_harness_does_not_beat_the_oracle(ranking_runs, protocol, track):
    folder = ranking_runs[protocol]
    cheat, oracle = _metric(folder, track, "cheater"), _metric(folder, track, "oracle")
    assert cheat < oracle, (track, protocol, cheat, oracle)
    # what it found beyond its training rows is no held-out pair: no better than popularity
    assert cheat <= _metric(folder, track, "popularity") + 0.01


def _held_out_pairs(split, item_kind, parts):
    frame = pd.concat([split.part(p, item_kind) for p in parts])
    return set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str), strict=True))


@pytest.mark.parametrize("part", ["test", "valid"])
@pytest.mark.parametrize("track,item_kind", [("lora-rec", "lora"), ("image-rec", "image")])
def test_nothing_reachable_from_a_view_is_held_out(tiny, tmp_path, track, item_kind, part):
    split = prepare_split(tiny, SplitConfig(protocol="leave-last-out",
                                            tracks=("lora-rec", "image-rec")), tmp_path)
    fit, _ = track_data(split, item_kind, part)
    side = track_side(tiny, split, item_kind, part, fit)
    found = reachable_data(fit, side)
    assert found["folders"] == []  # no path at all
    hidden = _held_out_pairs(split, item_kind, ["test"] if part == "test" else ["valid", "test"])
    pairs = found_pairs(found["tables"], item_kind)
    leaked = hidden & set(zip(pairs["user_id"], pairs["item_id"], strict=True))
    assert not leaked
    with pytest.raises(NotApplicable):
        side.view.truth()


def test_the_cheater_does_cheat_when_handed_the_data_set(tiny, tmp_path):
    """The control that makes the tests above meaningful: the old SideInfo(dataset=...)."""
    split = prepare_split(tiny, SplitConfig(protocol="leave-last-out",
                                            tracks=("lora-rec", "image-rec")), tmp_path)
    fit, relevant = track_data(split, "lora", "test")
    metrics = ("ndcg@10",)
    cheat = evaluate_ranking(Cheater().fit(fit, SideInfo(tiny, "lora")), fit.matrix, relevant,
                             metrics, progress=False).summary["ndcg@10"]
    side = track_side(tiny, split, "lora", "test", fit)
    honest = evaluate_ranking(Cheater().fit(fit, side), fit.matrix, relevant, metrics,
                              progress=False).summary["ndcg@10"]
    assert cheat > 0.8 > honest


def test_preference_cheater(tiny, tmp_path):
    from baselines.pref_oracle import PreferenceOracle
    from benchmark.preference import evaluate_preference, make_preference_split

    split = make_preference_split(tiny, seed=0)
    oracle = evaluate_preference(PreferenceOracle(), split, dataset=tiny, n_boot=20)
    honest = evaluate_preference(PairCheater(), split, dataset=tiny, n_boot=20)
    assert honest["metrics"]["accuracy"] < oracle["metrics"]["accuracy"]
    # handed the data set (the old side information) it reads the test pairs
    cheat = evaluate_preference(PairCheater(), split, side=SideInfo(tiny, "image"), n_boot=20)
    assert cheat["metrics"]["accuracy"] > oracle["metrics"]["accuracy"]


def test_preference_run_of_the_cheater_through_run_benchmark(tiny, tmp_path):
    out = run_benchmark(tiny.path, tracks=["preference"],
                        methods=["oracle", "benchmark.adversarial:PairCheater"],
                        data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                        leaderboard_dir=None, **QUIET)
    import json

    by = {}
    for path in out["records"]:
        rec = json.loads(path.read_text())
        by[(rec["method"]["name"], rec["split"]["k"])] = rec["metrics"]["accuracy"]
    for k in (0, 5, "all"):
        assert by[("pair-cheater", k)] < by[("oracle", k)]


def test_rerank_protocol_hands_the_view(tiny, tmp_path):
    from benchmark.runner import run_rerank

    out = run_rerank(tiny.path, tracks=["lora-rec"], methods=["oracle", CHEATER],
                     first_stage="popularity", data_dir=tmp_path / "data",
                     results_dir=tmp_path / "results", leaderboard_dir=None, **QUIET)
    import json

    recs = {json.loads(p.read_text())["method"]["name"]: json.loads(p.read_text())
            for p in out["records"]}
    assert recs["cheater"]["metrics"]["ndcg@5"] < recs["oracle"]["metrics"]["ndcg@5"]
    assert recs["cheater"]["list_metrics"]["pairs_found_beyond_train"] == 0


def test_lora_edit_methods_get_no_truth(tiny, tmp_path):
    from benchmark.lora.track import run_lora_edit

    out = run_lora_edit(tiny, methods=["no-edit", "benchmark.adversarial:EditCheater",
                                       "oracle-direction"],
                        steps=(1.0,), results_dir=tmp_path / "results",
                        data_dir=tmp_path / "data", n_components=8, n_users=10,
                        loras_per_user=1, bank_size=60, **QUIET)
    recs = {r["method"]["name"]: r for r in out["records"]}
    assert recs["edit-cheater"]["list_metrics"]["truth_objects_found"] == 0
    assert recs["edit-cheater"]["list_metrics"]["folders_found"] == 0
    assert recs["oracle-direction"]["metrics"]["gain"] > recs["edit-cheater"]["metrics"]["gain"]


def test_tuning_view_hides_valid_and_test(tiny, tmp_path):
    from benchmark.tuning import plan_tuning

    plan = plan_tuning("lora-rec", "itemknn", 1, tiny.path, "ndcg@10", 0, "leave-last-out",
                       tmp_path, progress=False)
    method = Cheater().fit(plan["fit"], plan["side"])
    assert method.extra_pairs_.nnz == 0


def test_view_arrays_have_no_file_name(tiny):
    arr = anonymous_array(tiny.path / "embeddings" / "synthetic-clip" / "lora.npy")
    ref = np.load(tiny.path / "embeddings" / "synthetic-clip" / "lora.npy")
    np.testing.assert_array_equal(arr, ref)
    assert not isinstance(arr, np.memmap) and not arr.flags.writeable
    assert reachable_data(arr)["folders"] == []


def test_submitted_names_cannot_take_a_builtin_name(tmp_path, monkeypatch):
    import sys
    import types

    module = types.ModuleType("gembench_user_methods")

    class Impostor(Cheater):
        name = "itemknn"

    class Oracle2(Cheater):
        name = "oracle"

    module.Impostor, module.Oracle2 = Impostor, Oracle2
    monkeypatch.setitem(sys.modules, "gembench_user_methods", module)
    for attr in ("Impostor", "Oracle2"):
        with pytest.raises(NameCollision, match="built-in"):
            resolve_method(f"gembench_user_methods:{attr}")
    # the built-in's own class by path is the built-in
    assert resolve_method("baselines.oracle:Oracle")[0] == "oracle"


def test_a_methods_extra_attribute_cannot_crash_a_run(tiny, tmp_path, monkeypatch):
    import sys
    import types

    from baselines.popularity import Popularity

    class Odd(Popularity):
        name = "odd-extra"

        def fit(self, train, side):
            super().fit(train, side)
            self.extra_ = {"ok": 1.5, "bad": [1, 2], "worse": "x", 3: 4.0}
            return self

    module = types.ModuleType("gembench_odd")
    module.Odd = Odd
    monkeypatch.setitem(sys.modules, "gembench_odd", module)
    warnings = []
    out = run_benchmark(tiny.path, tracks=["lora-rec"], methods=["gembench_odd:Odd"],
                        data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                        leaderboard_dir=None, progress=False, echo=warnings.append)
    import json

    rec = json.loads(out["records"][0].read_text())
    assert rec["list_metrics"]["ok"] == 1.5 and "bad" not in rec["list_metrics"]
    assert any("not finite numbers" in w for w in warnings)


def test_rating_cheater(tmp_path):
    from pathlib import Path

    from benchmark.data.pamela import import_pamela
    from benchmark.ratings import evaluate_ratings, rating_split_from_column

    sample = Path(__file__).resolve().parents[1] / "datasets" / "pamela-sample"
    pamela = import_pamela(sample, tmp_path / "pamela", progress=False)
    split = rating_split_from_column(pamela)
    honest = evaluate_ratings(PairCheater(), split, dataset=pamela, n_boot=20)["metrics"]
    cheat = evaluate_ratings(PairCheater(), split, side=SideInfo(pamela, "image"),
                             n_boot=20)["metrics"]
    assert cheat["spearman"] == 1.0  # handed the data set, it reads the test ratings
    assert honest["spearman"] < 1.0
