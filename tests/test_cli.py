"""The CLI: --help everywhere, `list`, and `run` end to end on the toy data set."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from benchmark.cli import app

runner = CliRunner()

COMMANDS = [[], ["run"], ["data"], ["data", "synth"], ["data", "import"], ["data", "info"],
            ["split"], ["evaluate"], ["leaderboard"], ["list"], ["embed"], ["tune"], ["validate"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gembench")
def test_help(command):
    res = runner.invoke(app, [*command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_help_is_light():
    """`gembench --help` must not import the heavy stack (or even pandas)."""
    code = ("import sys; from benchmark.cli import app; "
            "print(sorted(m for m in ('pandas', 'torch', 'recbole', 'scipy', 'pyarrow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_list():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for name in ("lora-rec", "image-rec", "popularity", "itemknn", "random", "oracle",
                 "synthetic-small", "imagegem", "recbole"):
        assert name in res.output


def test_run_end_to_end_on_toy(toy, tmp_path):
    args = ["run", "--dataset", str(toy.path), "--methods", "popularity,itemknn,random,oracle",
            "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--leaderboard-dir", str(tmp_path / "lb"), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "skipped oracle on lora-rec" in res.output  # no ground truth in the toy set
    records = sorted((tmp_path / "results").rglob("*.json"))
    assert [p.relative_to(tmp_path / "results").as_posix() for p in records] == [
        f"toy/leave-last-out/{track}/{m}.json"
        for track in ("image-rec", "lora-rec") for m in ("itemknn", "popularity", "random")]
    rec = json.loads((tmp_path / "results/toy/leave-last-out/lora-rec/popularity.json")
                     .read_text())
    assert rec["metrics"]["mrr@10"] == pytest.approx(2.5 / 3, abs=1e-8)
    assert rec["split"]["fit_on"] == "train+valid"
    assert len(rec["split"]["fingerprint"]) == 64
    assert (tmp_path / "lb/toy/leave-last-out/lora-rec.md").is_file()
    assert "| popularity |" in res.output
    # a second run reuses the cached split and reproduces the same metrics
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    rec2 = json.loads((tmp_path / "results/toy/leave-last-out/lora-rec/popularity.json")
                      .read_text())
    assert rec2["metrics"] == rec["metrics"]


def test_run_unknown_method_is_one_line(toy, tmp_path):
    res = runner.invoke(app, ["run", "--dataset", str(toy.path), "--methods", "nope",
                              "--data-dir", str(tmp_path / "d"), "--quiet"])
    assert res.exit_code == 2
    assert "unknown method 'nope'" in res.output


def test_data_info_errors(tmp_path):
    res = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a gembench data set" in res.output
