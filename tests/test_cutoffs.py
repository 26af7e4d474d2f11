"""Any cut-off (``--metrics``, per-track ``max_k``) and per-track fingerprints end to end.

``--metrics`` on run / evaluate / tune / leaderboard; submissions of up to the track's max
K items per user; image-rec's default Recall@100; records, tables and tuned parameters
matched by the track fingerprint.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from baselines.popularity import Popularity
from benchmark import api
from benchmark.cli import app
from benchmark.data.synthetic import synthesize
from benchmark.errors import SubmissionError
from benchmark.evaluate import evaluate_ranking
from benchmark.metrics import DEFAULT_RANKING_METRICS
from benchmark.runner import track_data
from benchmark.splits import SplitConfig, load_split, make_split
from benchmark.submission import evaluate_submission
from benchmark.tasks import MIN_MAX_K, TRACKS, RankingTrack, get_track

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("data") / "synthetic-tiny", seed=0,
                      progress=False)


@pytest.fixture(scope="module")
def split_dir(tiny, tmp_path_factory):
    return make_split(tiny, SplitConfig()).save(tmp_path_factory.mktemp("split") / "split")


def dirs(tmp_path):
    return ["--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--leaderboard-dir", str(tmp_path / "lb"), "--quiet"]


def popularity_lists(split_dir, track: str, k: int):
    """Popularity's top ``k`` per test user, from the engine, and as a submission frame."""
    split = load_split(split_dir)
    fit, relevant = track_data(split, get_track(track).item_kind, "test")
    method = Popularity().fit(fit, None)
    evaluation = evaluate_ranking(method, fit.matrix, relevant, [f"recall@{k}"],
                                  progress=False)
    rows = [(fit.user_ids[u], fit.item_ids[i], r + 1)
            for u, ranked in zip(evaluation.user_idx, evaluation.ranked, strict=True)
            for r, i in enumerate(ranked) if i >= 0]
    return evaluation, pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def test_tracks_max_k_and_default_metrics():
    assert all(t.max_k >= MIN_MAX_K == 100 for t in TRACKS.values())
    assert TRACKS["lora-rec"].metrics == DEFAULT_RANKING_METRICS  # unchanged
    assert {"recall@100", "ndcg@100"} <= set(TRACKS["image-rec"].metrics)
    with pytest.raises(ValueError, match="max_k must be an int >= 100"):
        RankingTrack(name="x", item_kind="lora", kinds=("generate",), question="?", max_k=50)
    with pytest.raises(ValueError, match="cut-off 200 is above"):
        RankingTrack(name="x", item_kind="lora", kinds=("generate",), question="?",
                     metrics=("ndcg@200",))
    track = get_track("image-rec")
    assert track.check_metrics("Recall@100, ndcg@100,recall@100") == ("recall@100", "ndcg@100")
    with pytest.raises(ValueError, match="cut-off 101 is above the image-rec track's max K"):
        track.check_metrics(["recall@101"])
    with pytest.raises(ValueError, match="bad metric name 'auc@10'"):
        track.check_metrics(["auc@10"])


def test_engine_top_k_is_the_largest_cut_off_asked(split_dir):
    evaluation, _ = popularity_lists(split_dir, "image-rec", 100)
    assert evaluation.ranked.shape[1] == 100
    assert set(evaluation.summary) == {"recall@100"}
    assert "coverage@100" in evaluation.extra


def test_evaluate_100_items_per_user(split_dir, tmp_path):
    evaluation, frame = popularity_lists(split_dir, "image-rec", 100)
    assert frame.groupby("user_id").size().max() == 100
    path = tmp_path / "run.csv"
    frame.to_csv(path, index=False)
    # the same lists as a code run: the same numbers
    result = api.evaluate("image-rec", split_dir, path, metrics=["recall@100"])
    assert set(result["metrics"]) == {"recall@100"}
    assert result["metrics"]["recall@100"] == pytest.approx(evaluation.summary["recall@100"],
                                                            abs=1e-8)
    assert result["list_metrics"] == {
        "coverage@100": pytest.approx(evaluation.extra["coverage@100"], abs=1e-8)}
    assert result["track_fingerprint"] == load_split(split_dir).track_fingerprint("image-rec")
    # the track's defaults (image-rec: with Recall@100 and NDCG@100)
    default = evaluate_submission(path, load_split(split_dir), get_track("image-rec"))
    assert {"recall@100", "ndcg@100", "recall@10", "ndcg@10"} <= set(default["metrics"])
    assert default["metrics"]["recall@100"] == result["metrics"]["recall@100"]
    # lora-rec's defaults stop at 50: ranks 51..100 are allowed but not scored
    _, lora = popularity_lists(split_dir, "lora-rec", 100)
    lora_path = tmp_path / "lora.csv"
    lora.to_csv(lora_path, index=False)
    lora_result = api.evaluate("lora-rec", split_dir, lora_path)
    assert "recall@100" not in lora_result["metrics"] and "coverage@50" in \
        lora_result["list_metrics"]
    # the CLI: --metrics, and one clear error (exit 2) for a cut-off above max K
    res = runner.invoke(app, ["evaluate", "--track", "image-rec", "--split", str(split_dir),
                              "--submission", str(path), "--metrics", "recall@100,ndcg@100"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.output)["metrics"]) == {"recall@100", "ndcg@100"}
    for bad, says in (("recall@101", "cut-off 101 is above the image-rec track's max K = 100"),
                      ("recal@10", "bad metric name 'recal@10'")):
        res = runner.invoke(app, ["evaluate", "--track", "image-rec", "--split",
                                  str(split_dir), "--submission", str(path), "--metrics", bad])
        assert res.exit_code == 2 and says in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_more_than_max_k_items_is_refused(split_dir, tmp_path):
    _, frame = popularity_lists(split_dir, "image-rec", 101)
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    rule = "at most K=100 rows per user (the image-rec track's max K)"
    with pytest.raises(SubmissionError, match=r"at most K=100 rows per user \(the image-rec"):
        evaluate_submission(path, load_split(split_dir), get_track("image-rec"))
    res = runner.invoke(app, ["validate", "--track", "image-rec", "--split", str(split_dir),
                              str(path)])
    assert res.exit_code == 2 and f"rule: {rule}" in res.output
    assert f"user {frame['user_id'].iloc[0]!r} has 101 rows" in res.output


def test_run_with_metrics_and_default_image_rec_record(tiny, tmp_path):
    res = runner.invoke(app, ["run", "--dataset", str(tiny.path), "--methods", "popularity",
                              "--metrics", "recall@100", *dirs(tmp_path)])
    assert res.exit_code == 0, res.output
    for track in ("lora-rec", "image-rec"):
        record = json.loads((tmp_path / f"results/synthetic-tiny/leave-last-out/{track}/"
                                         "popularity.json").read_text())
        assert set(record["metrics"]) == {"recall@100", "avg_popularity@100"}
        assert set(record["list_metrics"]) == {"coverage@100"}
    assert "recall@100=" in res.output
    # defaults: image-rec reports Recall@100 (ImageGem's cut-off), lora-rec keeps its set
    out = api.run(dataset=tiny.path, methods=["popularity"], data_dir=tmp_path / "data",
                  results_dir=tmp_path / "results2", leaderboard_dir=None, progress=False,
                  echo=lambda *_: None)
    records = {json.loads(p.read_text())["track"]: json.loads(p.read_text())
               for p in out["records"]}
    image = records["image-rec"]
    assert {"recall@100", "ndcg@100", "recall@10", "ndcg@10"} <= set(image["metrics"])
    assert set(records["lora-rec"]["metrics"]) == {*DEFAULT_RANKING_METRICS, "avg_popularity@50"}
    split = out["split"]
    assert image["split"]["fingerprint"] == split.track_fingerprint("image-rec")
    assert image["split"]["split_fingerprint"] == split.fingerprint
    # a cut-off above max K, or an unknown name: one line, exit 2, nothing run
    for bad in ("recall@101", "bogus@5"):
        res = runner.invoke(app, ["run", "--dataset", str(tiny.path), "--methods",
                                  "popularity", "--metrics", bad, *dirs(tmp_path / "bad")])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "bad" / "results").exists()


def test_a_one_track_run_joins_the_table_and_uses_tuned_params(tiny, tmp_path):
    tuned_dir = tmp_path / "tuned"
    entry = api.tune(track="lora-rec", method="itemknn", budget=2, dataset=tiny.path,
                     data_dir=tmp_path / "data", tuned_dir=tuned_dir, progress=False,
                     echo=lambda *_: None)
    api.run(dataset=tiny.path, methods=["popularity"], data_dir=tmp_path / "data",
            results_dir=tmp_path / "results", leaderboard_dir=None, progress=False,
            echo=lambda *_: None)
    alone = api.run(dataset=tiny.path, tracks=["lora-rec"], methods=["itemknn"],
                    data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                    leaderboard_dir=tmp_path / "lb", progress=False, echo=lambda *_: None,
                    tuned_dir=tuned_dir)
    # tuned on the two-track split, used on the lora-rec-only split: same track data
    record = json.loads(alone["records"][0].read_text())
    assert record["method"]["tuned"] is True
    assert record["method"]["tuned_on"] == entry["track_fingerprint"]
    assert record["split"]["fingerprint"] == entry["track_fingerprint"]
    table = next(t for t in alone["tables"] if t["track"] == "lora-rec")
    assert {r["method"] for r in table["rows"]} == {"popularity", "itemknn"}
    assert not [n for n in alone["notes"] if "lora-rec" in n]


def test_tune_metrics(tiny, tmp_path):
    out = api.tune(track="image-rec", method="itemknn", budget=2, dataset=tiny.path,
                   metrics=["recall@100", "ndcg@100"], data_dir=tmp_path / "data",
                   tuned_dir=tmp_path / "tuned", progress=False, echo=lambda *_: None)
    assert out["metric"] == "ndcg@10" and out["metrics"] == ["recall@100", "ndcg@100"]
    for trial in out["trials"]:
        assert set(trial["metrics"]) == {"recall@100", "ndcg@100"}
        assert np.isfinite(trial["value"])
    stored = json.loads((tmp_path / "tuned/synthetic-tiny.json").read_text())
    assert stored["leave-last-out"]["image-rec"]["itemknn"]["metrics"] == out["metrics"]
    base = ["tune", "--track", "image-rec", "--method", "itemknn", "--budget", "1",
            "--dataset", str(tiny.path), "--data-dir", str(tmp_path / "data"),
            "--tuned-dir", str(tmp_path / "tuned2"), "--quiet"]
    for option in (["--metrics", "recall@101"], ["--metric", "ndcg@500"]):
        res = runner.invoke(app, [*base, *option])
        assert res.exit_code == 2 and "is above the image-rec track's max K" in res.output
    assert not (tmp_path / "tuned2").exists()


def test_a_record_with_metrics_reproduces(tiny, tmp_path):
    res = runner.invoke(app, ["run", "--dataset", str(tiny.path), "--tracks", "image-rec",
                              "--methods", "itemknn", "--metrics", "recall@100,ndcg@20",
                              *dirs(tmp_path)])
    assert res.exit_code == 0, res.output
    path = tmp_path / "results/synthetic-tiny/leave-last-out/image-rec/itemknn.json"
    outcome = api.reproduce(path, data_dir=tmp_path / "elsewhere")
    assert outcome["match"], outcome["differences"]
