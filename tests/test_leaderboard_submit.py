"""Submitting a method: the worked example of docs/submitting.md, both ways, and reproduction."""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark import registry
from benchmark.cli import app
from benchmark.splits import SplitConfig, make_split

runner = CliRunner()
DOC = Path(__file__).resolve().parents[1] / "docs" / "submitting.md"


def doc_block(lang: str) -> str:
    """The first ``lang`` code block of docs/submitting.md."""
    match = re.search(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no {lang} block in {DOC}"
    return match.group(1)


@pytest.fixture()
def mypkg(tmp_path, monkeypatch):
    """The doc's module written to <tmp>/pkgs/mypkg/module.py and importable."""
    code = doc_block("python")
    assert code.startswith("# mypkg/module.py\n")
    pkg = tmp_path / "pkgs" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "module.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    for name in ("mypkg", "mypkg.module"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield pkg
    for name in ("mypkg", "mypkg.module"):
        sys.modules.pop(name, None)


def run_args(toy, tmp_path, *extra):
    return ["run", "--dataset", str(toy.path), "--data-dir", str(tmp_path / "data"),
            "--results-dir", str(tmp_path / "results"), "--leaderboard-dir",
            str(tmp_path / "lb"), "--quiet", *extra]


def test_code_by_import_path_then_reproduce(toy, tmp_path, mypkg):
    res = runner.invoke(app, run_args(toy, tmp_path, "--tracks", "lora-rec", "--method",
                                      "mypkg.module:MyMethod"))
    assert res.exit_code == 0, res.output
    path = tmp_path / "results/toy/leave-last-out/lora-rec/my-method.json"
    record = json.loads(path.read_text())
    assert record["method"]["class"] == "mypkg.module:MyMethod"
    assert record["method"]["params"] == {"alpha": 1.0}
    assert "| my-method |" in res.output
    # the record names an unregistered class: re-run only with --trust-code
    res = runner.invoke(app, ["run", "--reproduce", str(path), "--data-dir",
                              str(tmp_path / "d2"), "--quiet"])
    assert res.exit_code == 2 and "--trust-code" in res.output
    res = runner.invoke(app, ["run", "--reproduce", str(path), "--data-dir",
                              str(tmp_path / "d2"), "--quiet", "--trust-code"])
    assert res.exit_code == 0, res.output
    assert "reproduced (metrics match to 1e-9)" in res.output
    # a record whose numbers are off by more than 1e-9 is not reproduced
    record["metrics"]["ndcg@10"] += 1e-6
    path.write_text(json.dumps(record))
    res = runner.invoke(app, ["run", "--reproduce", str(path), "--data-dir",
                              str(tmp_path / "d2"), "--quiet", "--trust-code"])
    assert res.exit_code == 1
    assert "NOT reproduced" in res.output and "metrics.ndcg@10" in res.output


def test_code_by_entry_point(toy, tmp_path, mypkg, monkeypatch):
    def fake_entry_points(group: str):
        assert group == "gembench.methods"
        return [EntryPoint("my-method", "mypkg.module:MyMethod", "gembench.methods")]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0 and "my-method" in res.output
    assert "entry point mypkg.module:MyMethod" in res.output
    res = runner.invoke(app, run_args(toy, tmp_path, "--tracks", "lora-rec", "--methods",
                                      "my-method,popularity"))
    assert res.exit_code == 0, res.output
    mine = json.loads((tmp_path / "results/toy/leave-last-out/lora-rec/my-method.json")
                      .read_text())
    pop = json.loads((tmp_path / "results/toy/leave-last-out/lora-rec/popularity.json")
                     .read_text())
    assert mine["metrics"] == pop["metrics"]  # the doc's method is popularity, scaled


def test_predictions_become_a_record(toy, tmp_path):
    res = runner.invoke(app, run_args(toy, tmp_path, "--methods", "popularity,random"))
    assert res.exit_code == 0, res.output
    split_dir = make_split(toy, SplitConfig()).save(tmp_path / "split")
    csv = tmp_path / "run.csv"
    csv.write_text(doc_block("csv"))
    base = ["evaluate", "--track", "lora-rec", "--split", str(split_dir), "--results-dir",
            str(tmp_path / "results")]
    res = runner.invoke(app, ["validate", "--track", "lora-rec", "--split", str(split_dir),
                              str(csv)])
    assert res.exit_code == 0 and "valid" in res.output
    res = runner.invoke(app, [*base, "--submission", str(csv), "--record", "--name", "my-team"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    path = tmp_path / "results/toy/leave-last-out/lora-rec/my-team.json"
    assert result["record"] == str(path)
    record = json.loads(path.read_text())
    assert record["schema"] == "gembench.result/1" and record["method"]["class"] is None
    assert record["method"]["submission_sha256"] == result["submission_sha256"]
    assert record["per_user"]["user_id"] == ["u1", "u2", "u3"]
    assert record["metrics"]["ndcg@10"] == result["metrics"]["ndcg@10"]
    assert record["split"]["fingerprint"] == result["track_fingerprint"]
    assert record["split"]["split_fingerprint"] == result["split_fingerprint"]
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "results"),
                              "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0 and "| my-team | **" in res.output  # ties popularity, on top
    # the same submission again: allowed (same bytes)
    res = runner.invoke(app, [*base, "--submission", str(csv), "--record", "--name", "my-team"])
    assert res.exit_code == 0, res.output
    # another file under the same name, or a code method's name: refused
    other = tmp_path / "other.csv"
    other.write_text("user_id,item_id,rank\nu1,l5,1\n")
    res = runner.invoke(app, [*base, "--submission", str(other), "--record", "--name",
                              "my-team"])
    assert res.exit_code == 2 and "already exists" in res.output
    assert "another submission" in res.output
    res = runner.invoke(app, [*base, "--submission", str(csv), "--record", "--name",
                              "popularity"])
    assert res.exit_code == 2 and "method class baselines.popularity:Popularity" in res.output
    res = runner.invoke(app, [*base, "--submission", str(csv), "--record"])
    assert res.exit_code == 2 and "needs --name" in res.output
    # a split with another fingerprint (u4 kept): refused with the reason
    split2 = make_split(toy, SplitConfig(min_history=2)).save(tmp_path / "split2")
    res = runner.invoke(app, ["evaluate", "--track", "lora-rec", "--split", str(split2),
                              "--results-dir", str(tmp_path / "results"), "--submission",
                              str(csv), "--record", "--name", "late"])
    assert res.exit_code == 2, res.output
    assert "differs from the leaderboard table's" in res.output
    assert not (tmp_path / "results/toy/leave-last-out/lora-rec/late.json").exists()
    # a predictions record cannot be re-run
    res = runner.invoke(app, ["run", "--reproduce", str(path), "--quiet"])
    assert res.exit_code == 2 and "predictions submission" in res.output
