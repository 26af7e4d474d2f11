"""Judges (saved preference models), the preference run and the non-ranking leaderboards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from baselines.pref_global import GlobalReward
from baselines.pref_history import HistoryAttention
from baselines.pref_tokens import PreferenceTokens
from baselines.pref_user import UserEmbedding
from benchmark.cli import app
from benchmark.data.synthetic import synthesize
from benchmark.errors import DataError
from benchmark.judge import load_judge, save_judge, score_pairs
from benchmark.leaderboard import build_curves, curve_markdown, write_leaderboards
from benchmark.preference import make_preference_split, pair_scores, run_preference
from benchmark.protocols import SideInfo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("tiny") / "synthetic-tiny", seed=0,
                      progress=False)


@pytest.mark.parametrize("cls", [GlobalReward, UserEmbedding, HistoryAttention,
                                 PreferenceTokens])
def test_saved_judge_scores_exactly_like_the_fitted_model(tiny, tmp_path, cls):
    split = make_preference_split(tiny, seed=0)
    model = cls() if cls in (GlobalReward, UserEmbedding) else cls(max_epochs=3, min_epochs=1,
                                                                    progress=False)
    model.fit(split.few_shot("all"), SideInfo(dataset=tiny, item_kind="image"))
    path = save_judge(model, tmp_path / "judge", dataset=tiny, split=split)
    meta = json.loads((path / "judge.json").read_text())
    # the embedding matrix is a reference into the data set, not a copy
    assert meta["state"]["emb_"]["kind"] == "dataset_memmap"
    assert meta["split"]["fingerprint"] == split.fingerprint
    loaded = load_judge(path)
    assert type(loaded) is cls and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(pair_scores(loaded, split.test), pair_scores(model, split.test))
    scored = score_pairs(loaded, split.test)
    assert list(scored.columns) == ["user_id", "image_a", "image_b", "score_diff", "p_a"]
    np.testing.assert_allclose(scored["p_a"], 1 / (1 + np.exp(-scored["score_diff"])))


def test_judge_save_replaces_atomically_and_load_refuses_bad_folders(tiny, tmp_path):
    split = make_preference_split(tiny, seed=0)
    model = GlobalReward().fit(split.few_shot("all"), SideInfo(dataset=tiny, item_kind="image"))
    path = save_judge(model, tmp_path / "j", dataset=tiny)
    save_judge(model, tmp_path / "j", dataset=tiny)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j"]
    with pytest.raises(DataError, match="not a judge folder"):
        load_judge(tmp_path / "nothing")
    meta = json.loads((path / "judge.json").read_text())
    meta["schema"] = "other/1"
    (path / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="unknown judge schema"):
        load_judge(path)
    meta["schema"] = "gembench.judge/1"
    (path / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="embeddings are missing"):
        load_judge(path, dataset_path=tmp_path / "moved")


def test_unsaveable_state_is_refused_with_the_attribute_named(tmp_path):
    class Odd:
        def get_params(self):
            return {}

    odd = Odd()
    odd.model_ = object()
    with pytest.raises(DataError, match="model_"):
        save_judge(odd, tmp_path / "odd")
    assert not (tmp_path / "odd").exists()


def test_preference_run_writes_one_table_per_k_and_the_k_curve(tiny, tmp_path):
    lines: list[str] = []
    paths, skipped = run_preference(tiny, ["global-reward", "oracle"], ks=(0, 5, "all"),
                                    data_dir=tmp_path / "data", results_dir=tmp_path / "res",
                                    n_boot=50, echo=lines.append)
    assert skipped == [] and len(paths) == 6 and len(lines) == 6
    _, tables, notes = write_leaderboards(tmp_path / "res", tmp_path / "lb")
    assert notes == []
    assert sorted(t["protocol"] for t in tables) == ["per-user-pairs-k0", "per-user-pairs-k5",
                                                     "per-user-pairs-kall"]
    assert all(t["sort_metric"] == "accuracy" and "accuracy_unseen" in t["metrics"]
               for t in tables)
    (curve,) = build_curves(tables)
    assert curve["x_ticks"] == ["0", "5", "all"]
    oracle = next(s for s in curve["series"] if s["name"] == "oracle")
    k0 = next(t for t in tables if t["protocol"] == "per-user-pairs-k0")
    row = next(r for r in k0["rows"] if r["method"] == "oracle")
    assert oracle["points"][0][:2] == [0, row["metrics"]["accuracy_unseen"]]
    md = (tmp_path / "lb" / tiny.name / "per-user-pairs"
          / "preference-accuracy_unseen-vs-k.md").read_text()
    assert md == curve_markdown(curve) and "| method | k=0 | k=5 | k=all |" in md
    page = (tmp_path / "lb" / "index.html").read_text()
    assert 'id="curve-' in page and 'class="curve"' in page
    # a data set without pairs is skipped with a reason, not an error
    toy_paths, toy_skipped = run_preference(_no_pairs(tiny, tmp_path), ["global-reward"],
                                            data_dir=tmp_path / "data",
                                            results_dir=tmp_path / "res2")
    assert toy_paths == [] and toy_skipped[0][2] == "the data set has no preferences table"


def _no_pairs(ds, tmp_path: Path):
    class NoPairs:
        name, path, meta = ds.name, ds.path, ds.meta

        def has_table(self, name: str) -> bool:
            return name != "preferences"

    return NoPairs()


def test_edit_curve_is_gain_against_fidelity_per_step(tmp_path):
    table = {"track": "lora-edit", "dataset": "d", "protocol": "p", "rows": [
        {"method": "m", "metrics": {"gain@0.5": 1.0, "fidelity@0.5": 0.9, "gain@2": 3.0,
                                    "fidelity@2": 0.6, "gain": 2.0},
         "intervals": {"gain@0.5": [0.5, 1.5], "gain@2": [2.0, 4.0]}}]}
    (curve,) = build_curves([table])
    assert curve["series"] == [{"name": "m", "points": [[0.9, 1.0, 0.5, 1.5, 0.5],
                                                        [0.6, 3.0, 2.0, 4.0, 2.0]]}]
    assert "| m | 2 | 0.6000 | 3.0000 (2.0000–4.0000) |" in curve_markdown(curve)


def test_cli_judge_fit_then_score(tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "judge"
    res = runner.invoke(app, ["judge", "fit", "--method", "global-reward", "--out", str(out),
                              "--dataset", str(tiny.path), "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    pairs = pd.read_parquet(Path(tiny.path) / "preferences.parquet").head(4)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    res = runner.invoke(app, ["judge", "score", str(out), "--pairs",
                              str(tmp_path / "pairs.parquet"), "--out",
                              str(tmp_path / "scored.csv")])
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 4 and {"score_diff", "p_a"} <= set(scored.columns)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    res = runner.invoke(app, ["judge", "score", str(out), "--pairs", str(bad)])
    assert res.exit_code == 2 and "user_id, image_a, image_b" in res.output


def test_cli_run_preference_track_only_and_method_track_checks(tiny, tmp_path):
    runner = CliRunner()
    args = ["run", "--dataset", str(tiny.path), "--tracks", "preference", "--methods",
            "global-reward", "--data-dir", str(tmp_path / "d"), "--results-dir",
            str(tmp_path / "r"), "--leaderboard-dir", str(tmp_path / "lb"), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("preference global-reward") == 5  # k = 0, 5, 10, 20, all
    assert "## preference" in res.output and "per-user-pairs-kall" in res.output
    built = [p.name for p in (tmp_path / "d" / "splits" / tiny.name).iterdir()]
    assert built and all(name.startswith("per-user-pairs-") for name in built)
    # a preference method asked for on a ranking track only: one clear error
    res = runner.invoke(app, [*args[:4], "lora-rec", *args[5:]])
    assert res.exit_code == 2
    assert "runs on ['preference'], not on the requested tracks ['lora-rec']" in res.output


def test_saved_judge_scores_lora_edits_in_a_table_of_its_own(tiny, tmp_path):
    from benchmark.cli_loras import edit_app
    from benchmark.judge import EmbeddingJudge

    runner = CliRunner()
    out = tmp_path / "judge"
    res = runner.invoke(app, ["judge", "fit", "--method", "user-embedding", "--out", str(out),
                              "--dataset", str(tiny.path), "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    judge = EmbeddingJudge(load_judge(out))
    # the judge scores a render exactly as the model scores that image's embedding
    model = load_judge(out)
    ids = model.ids_[:3].to_numpy()
    users = np.array(["u0000001"] * 3, dtype=object)
    np.testing.assert_allclose(judge.score(users, model.emb_[:3]), model.score(users, ids),
                               rtol=1e-6)
    res = runner.invoke(edit_app, ["run", "--dataset", str(tiny.path), "--methods",
                                   "no-edit,oracle-direction", "--steps", "1", "--components",
                                   "8", "--n-users", "10", "--data-dir", str(tmp_path / "d"),
                                   "--results-dir", str(tmp_path / "res"), "--leaderboard-dir",
                                   str(tmp_path / "lb"), "--judge", str(out), "-q"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "res" / tiny.name / "leave-last-out-judge-user-embedding"
                         / "lora-edit" / "no-edit.json").read_text())
    assert record["judge"] == "user-embedding" and record["metrics"]["gain"] == 0.0
    with pytest.raises(DataError, match="cannot score new embeddings"):
        EmbeddingJudge(object())


def test_latex_for_a_track_skips_tables_without_the_metrics(tmp_path):
    from benchmark import api
    from benchmark.results import make_record, record_path, write_record

    for protocol, metrics in (("leave-last-out", {"ndcg@20": 0.2}),
                              ("rerank-itemknn-c10", {"ndcg@5": 0.5})):
        record = make_record(
            track="lora-rec", dataset={"name": "d"},
            split={"protocol": protocol, "fingerprint": "f" * 64},
            method={"name": "m", "params": {}}, summary=metrics,
            per_user={k: np.array([v, v]) for k, v in metrics.items()},
            user_ids=["u1", "u2"], counts={"n_users_evaluated": 2}, seed=0, timing={})
        write_record(record, record_path(tmp_path, record))
    out = api.leaderboard(tmp_path, format="latex", track="lora-rec", metrics=["ndcg@20"])
    assert [t["protocol"] for t in out["tables"]] == ["leave-last-out"]
    # not a metric name at all: refused before any table is read (as `run --metrics` does)
    with pytest.raises(ValueError, match="unknown metric 'nope@1'"):
        api.leaderboard(tmp_path, format="latex", track="lora-rec", metrics=["nope@1"])
    # a metric no record of the track has: named with the ones available
    with pytest.raises(KeyError, match="unknown metric"):
        api.leaderboard(tmp_path, format="latex", track="lora-rec", metrics=["hit@3"])
