"""`gembench evaluate`: valid files score like the engine; every rule gives one clear error."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.errors import SubmissionError
from benchmark.splits import SplitConfig, load_split, make_split
from benchmark.submission import evaluate_submission
from benchmark.tasks import get_track

# popularity's lists on the toy lora-rec test part (see test_engine.test_popularity_by_hand)
VALID = [("u1", "l5", 1), ("u1", "l4", 2), ("u2", "l1", 1), ("u2", "l4", 2),
         ("u3", "l3", 1), ("u3", "l5", 2), ("u3", "l4", 3)]


@pytest.fixture()
def split_dir(toy, tmp_path):
    return make_split(toy, SplitConfig()).save(tmp_path / "split")


def write(tmp_path, rows, name="run.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]).to_csv(path, index=False)
    return path


def test_valid_submission_matches_hand_values(split_dir, tmp_path):
    result = evaluate_submission(write(tmp_path, VALID), load_split(split_dir),
                                 get_track("lora-rec"))
    assert result["metrics"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 2) / 3, abs=1e-8)
    assert result["metrics"]["recall@10"] == 1.0
    assert result["metrics"]["mrr@10"] == pytest.approx(2.5 / 3, abs=1e-8)
    assert result["n_users_evaluated"] == 3 and result["n_users_missing"] == 0
    assert result["split_fingerprint"] == load_split(split_dir).fingerprint
    assert {"recall@20", "recall@50", "ndcg@20", "ndcg@50", "hit@10"} <= set(result["metrics"])


def test_parquet_and_missing_users(split_dir, tmp_path):
    path = tmp_path / "run.parquet"
    pd.DataFrame(VALID[:2], columns=["user_id", "item_id", "rank"]).to_parquet(path)
    result = evaluate_submission(path, load_split(split_dir), get_track("lora-rec"))
    assert result["n_users_missing"] == 2
    assert result["metrics"]["recall@10"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("rows", "row", "rule"),
    [
        (VALID + [("u9", "l1", 1)], 8, "user_id is a user"),
        (VALID[:6] + [("u3", "l99", 3)], 7, "item_id is in the split"),
        (VALID + [("u1", "l5", 3)], 8, "one row per"),
        (VALID[:6] + [("u3", "l4", 4)], 7, "ranks are exactly 1"),
        (VALID[:1] + [("u1", "l4", 1)] + VALID[2:], 2, "ranks are exactly 1"),
        (VALID + [("u1", "l1", 3)], 8, "never recommend a training item"),
        (VALID[:6] + [("u3", "l4", None)], 7, "no empty values"),
    ],
)
def test_each_rule(split_dir, tmp_path, rows, row, rule):
    with pytest.raises(SubmissionError) as info:
        evaluate_submission(write(tmp_path, rows), load_split(split_dir), get_track("lora-rec"))
    assert info.value.row == row
    assert rule in str(info.value)
    assert "run.csv" in str(info.value)


def test_too_many_rows_per_user(split_dir, tmp_path):
    rows = [("u1", "l5", 1), ("u1", "l4", 2)]
    with pytest.raises(SubmissionError, match="at most K=1"):
        evaluate_submission(write(tmp_path, rows), load_split(split_dir),
                            get_track("lora-rec"), k=1)


def test_cli_exit_codes_and_nothing_written(split_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "result.json"
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item\nu1,l5\n")
    res = runner.invoke(app, ["evaluate", "--track", "lora-rec", "--split", str(split_dir),
                              "--submission", str(bad), "--out", str(out)])
    assert res.exit_code == 2
    assert "missing columns ['item_id', 'rank']" in res.output and "bad.csv" in res.output
    assert not out.exists()
    good = write(tmp_path, VALID)
    res = runner.invoke(app, ["evaluate", "--track", "lora-rec", "--split", str(split_dir),
                              "--submission", str(good), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["metrics"]["recall@10"] == 1.0
