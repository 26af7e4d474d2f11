"""The committed tables are rebuilt, byte for byte, from the committed records.

``make run`` writes ``results/`` (records, committed) and ``leaderboards/`` (tables,
committed); each record's machine measurements go to an ignored ``<method>.run`` beside it.
These tests read the repository's own files, so a table edited by hand, or a record missing
for a table, fails here.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.leaderboard import write_leaderboards
from benchmark.results import RUN_KEYS, load_records

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
BOARDS = ROOT / "leaderboards"
runner = CliRunner()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_committed_records_rebuild_the_committed_leaderboards(tmp_path):
    records = load_records(RESULTS)
    assert len(records) > 100
    for path, record in records:  # compact records: no machine measurements inside
        text = path.read_text()
        assert not any(f'"{key}"' in text for key in RUN_KEYS), path
        assert record["dataset"]["name"] == "synthetic-small"
        assert not Path(record["dataset"].get("path") or "x").is_absolute(), path
    write_leaderboards(RESULTS, tmp_path, with_seeds=True)
    assert _files(tmp_path) == _files(BOARDS)
    _, mismatch, errors = filecmp.cmpfiles(tmp_path, BOARDS, sorted(_files(BOARDS)),
                                           shallow=False)
    assert mismatch == [] and errors == []


def test_leaderboard_refuses_a_missing_or_empty_results_folder(tmp_path):
    out = tmp_path / "boards"
    out.mkdir()
    (out / "index.html").write_text("the committed page")
    for results in (tmp_path / "no-such-folder", tmp_path / "empty"):
        if results.name == "empty":
            results.mkdir()
        res = runner.invoke(app, ["leaderboard", "--results-dir", str(results),
                                  "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert "no leaderboard" in res.output or "no result records" in res.output
        assert (out / "index.html").read_text() == "the committed page"
        assert sorted(p.name for p in out.iterdir()) == ["index.html"]


@pytest.fixture(scope="module")
def repro_data(tmp_path_factory):
    return tmp_path_factory.mktemp("reproduce-data")


@pytest.mark.parametrize("record", [
    "leave-last-out/lora-rec/itemknn.json",  # ranking
    "per-user-pairs-k5/preference/global-reward.json",  # preference
    "rerank-itemknn-c10/lora-rec/popularity.json",  # rerank
    "leave-last-out/lora-edit/user-direction.json",  # lora-edit
])
def test_a_committed_record_reproduces(repro_data, record):
    path = RESULTS / "synthetic-small" / record
    res = runner.invoke(app, ["run", "--reproduce", str(path), "--data-dir", str(repro_data),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "reproduced" in res.output and "NOT" not in res.output


def _run_records(out: Path, threads: str) -> dict[str, bytes]:
    out.mkdir(parents=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads}
    subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", "--dataset", "synthetic-tiny",
         "--tracks", "lora-rec", "--methods", "popularity,itemknn,als,clip-mean",
         "--data-dir", "data", "--results-dir", "results", "--leaderboard-dir", "boards",
         "--quiet"],
        check=True, env=env, cwd=out, capture_output=True)  # same relative paths in records
    found = {}
    for folder in ("results", "boards"):
        for p in sorted((out / folder).rglob("*")):
            if p.is_file() and p.suffix != ".run":
                found[str(p.relative_to(out))] = p.read_bytes()
    return found


@pytest.mark.parametrize("threads", ["2"])
def test_records_and_tables_are_the_same_bytes_on_1_and_n_threads(tmp_path, threads):
    one = _run_records(tmp_path / "one", "1")
    many = _run_records(tmp_path / "many", threads)
    assert one.keys() == many.keys() and len(one) >= 6
    assert [k for k in one if one[k] != many[k]] == []


@pytest.mark.parametrize("track", ["lora-rec", "image-rec"])
def test_committed_rerank_tables_rank_the_oracle_first_and_random_below_cf(track):
    """The sound rerank protocol on synthetic-small: the truth is the top row, and random
    and the reversed first stage fall below every collaborative reranker."""
    import json

    table = json.loads((BOARDS / "synthetic-small" / "rerank-itemknn-c10"
                        / f"{track}.json").read_text())
    score = {row["method"]: row["metrics"]["ndcg@5"] for row in table["rows"]}
    assert table["rows"][0]["method"] == "oracle"
    assert max(score.values()) == score["oracle"]
    for cf in ("itemknn", "userknn", "popularity"):
        assert score["random"] < score[cf] and score["reversed-first-stage"] < score[cf]
