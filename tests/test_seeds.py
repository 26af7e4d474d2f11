"""Seed sweeps: ``gembench run --seeds``, seed-named data folders and seeded protocols."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.results import seeded_protocol, unseeded_protocol
from benchmark.runner import check_seeds, resolve_dataset

runner = CliRunner()


def test_seeded_protocol_names():
    assert seeded_protocol("leave-last-out", 0) == "leave-last-out"
    assert seeded_protocol("leave-last-out", 3) == "leave-last-out-seed3"
    assert seeded_protocol("per-user-pairs", 2) + "-k5" == "per-user-pairs-seed2-k5"
    assert unseeded_protocol("per-user-pairs-seed2-k5") == "per-user-pairs-k5"
    assert unseeded_protocol("leave-last-out-seed12") == "leave-last-out"
    assert unseeded_protocol("rerank-itemknn-c10-seed1") == "rerank-itemknn-c10"
    assert unseeded_protocol("leave-last-out") == "leave-last-out"
    # "-seed" only as a whole part: a name that merely contains it is left alone
    assert unseeded_protocol("leave-last-out-seed1x") == "leave-last-out-seed1x"


def test_check_seeds():
    assert check_seeds(["0", "2", 1]) == [0, 2, 1]
    for bad, message in ((["0", "0"], "given twice"), ([-1], "non-negative"),
                         (["a"], "non-negative integer, got 'a'"), ([1.5], "got 1.5"),
                         ([True], "got True"), ([], "no seeds")):
        with pytest.raises(ValueError, match=message):
            check_seeds(bad)


def test_each_seed_has_its_own_data_folder(tmp_path):
    zero = resolve_dataset("synthetic-tiny", tmp_path, seed=0, progress=False)
    before = (zero.path / "dataset.json").read_bytes()
    one = resolve_dataset("synthetic-tiny", tmp_path, seed=1, progress=False)
    assert zero.path == tmp_path / "synthetic-tiny"
    assert one.path == tmp_path / "synthetic-tiny-seed1"
    assert (zero.meta["seed"], one.meta["seed"]) == (0, 1)
    assert one.meta["files"] != zero.meta["files"]  # another draw
    # building seed 1 left seed 0 alone, and asking again reuses both
    assert (zero.path / "dataset.json").read_bytes() == before
    again = resolve_dataset("synthetic-tiny", tmp_path, seed=0, progress=False)
    assert again.meta["files"] == zero.meta["files"]


def _run(tmp_path, *extra):
    return runner.invoke(app, ["run", "--dataset", "synthetic-tiny", "--tracks", "lora-rec",
                               "--methods", "popularity,itemknn", "--data-dir",
                               str(tmp_path / "data"), "--results-dir",
                               str(tmp_path / "results"), "--leaderboard-dir",
                               str(tmp_path / "lb"), "--quiet", "--device", "cpu", *extra])


def test_cli_seeds_write_one_table_per_seed_and_reproduce(tmp_path):
    res = _run(tmp_path, "--seeds", "0,1")
    assert res.exit_code == 0, res.output
    assert "4 records written" in res.output
    base = tmp_path / "results/synthetic-tiny"
    zero = json.loads((base / "leave-last-out/lora-rec/popularity.json").read_text())
    one = json.loads((base / "leave-last-out-seed1/lora-rec/popularity.json").read_text())
    assert (zero["seed"], one["seed"]) == (0, 1)
    assert one["split"]["config"]["seed"] == 1 and one["split"]["config"]["protocol"] == \
        "leave-last-out"
    assert one["dataset"]["path"].endswith("synthetic-tiny-seed1")
    assert one["split"]["fingerprint"] != zero["split"]["fingerprint"]
    assert one["metrics"] != zero["metrics"]
    for seed in ("leave-last-out", "leave-last-out-seed1"):
        assert (tmp_path / "lb/synthetic-tiny" / seed / "lora-rec.md").is_file()
    # printed: the mean ± sd over the two seeds, which is also written
    summary = json.loads((tmp_path / "lb/synthetic-tiny/leave-last-out/lora-rec-seeds.json")
                         .read_text())
    assert summary["seeds"] == [0, 1]
    row = next(r for r in summary["rows"] if r["method"] == "popularity")
    pair = [zero["metrics"]["ndcg@10"], one["metrics"]["ndcg@10"]]
    assert row["metrics"]["ndcg@10"]["mean"] == pytest.approx(sum(pair) / 2, abs=1e-8)
    assert row["metrics"]["ndcg@10"]["sd"] == pytest.approx(abs(pair[0] - pair[1]) / 2 ** 0.5,
                                                            abs=1e-8)  # ddof = 1, n = 2
    assert "(leave-last-out split, 2 seeds: 0, 1)" in res.output
    assert "(leave-last-out-seed1 split)" not in res.output
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "results"),
                              "--format", "latex", "--track", "lora-rec", "--seeds"])
    assert res.exit_code == 0, res.output
    assert r"\begin{tabular}" in res.output and "popularity" in res.output
    # a seed-1 record re-runs to the same numbers, on its own (rebuilt) seed-1 data
    res = runner.invoke(app, ["run", "--reproduce",
                              str(base / "leave-last-out-seed1/lora-rec/itemknn.json"),
                              "--data-dir", str(tmp_path / "elsewhere"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "reproduced (metrics match to 1e-9)" in res.output
    # --seed 1 alone writes the same record as the sweep's seed 1
    res = _run(tmp_path / "single", "--seed", "1")
    assert res.exit_code == 0, res.output
    single = json.loads((tmp_path / "single/results/synthetic-tiny/leave-last-out-seed1/"
                         "lora-rec/popularity.json").read_text())
    assert single["metrics"] == one["metrics"] and single["per_user"] == one["per_user"]


@pytest.mark.parametrize(("args", "message"), [
    (("--seeds", "0,0"), "seed 0 is given twice"),
    (("--seeds", "0,x"), "non-negative integer, got 'x'"),
    (("--seed", "1", "--seeds", "0,1"), "either --seed or --seeds"),
])
def test_cli_bad_seeds_are_one_clear_error(tmp_path, args, message):
    res = _run(tmp_path, *args)
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_submission_on_a_seeded_split_files_under_its_seed(toy, tmp_path):
    from benchmark.splits import SplitConfig, make_split
    from benchmark.submission import submission_record
    from benchmark.tasks import get_track

    split = make_split(toy, SplitConfig(protocol="random", seed=2))
    rows = "user_id,item_id,rank\nu1,l5,1\n"
    path = tmp_path / "run.csv"
    path.write_text(rows)
    _, record, target = submission_record(path, split, get_track("lora-rec"), "mine",
                                          tmp_path / "results")
    assert record["seed"] == 2
    assert record["split"]["protocol"] == "random-seed2"
    assert target == tmp_path / "results/toy/random-seed2/lora-rec/mine.json"


def test_tuning_is_per_seed_and_a_mixed_row_is_marked(tmp_path):
    from benchmark.leaderboard import seeds_to_latex, seeds_to_markdown
    from benchmark.runner import run_benchmark
    from benchmark.tuning import load_tuned, tune

    common = dict(dataset="synthetic-tiny", data_dir=tmp_path / "data", progress=False)
    tuned_dir = tmp_path / "tuned"
    quiet = dict(echo=lambda *_: None)
    zero = tune("lora-rec", "itemknn", budget=2, tuned_dir=tuned_dir, **common, **quiet)
    # seed 0 is stored under the plain protocol; nothing for seed 1 yet
    assert load_tuned("synthetic-tiny", "leave-last-out", "lora-rec", "itemknn",
                      tuned_dir)["params"] == zero["params"]
    assert load_tuned("synthetic-tiny", "leave-last-out-seed1", "lora-rec", "itemknn",
                      tuned_dir) is None
    lines: list[str] = []
    # both ranking tracks, as gembench tune splits them (same split fingerprint)
    result = run_benchmark(methods=["itemknn", "popularity"], seeds=[0, 1],
                           results_dir=tmp_path / "results",
                           leaderboard_dir=tmp_path / "lb", tuned_dir=tuned_dir,
                           echo=lines.append, **common)
    assert any("tuned for seed 0 but not for seed 1" in line for line in lines)
    (table,) = [t for t in result["seed_tables"] if t["track"] == "lora-rec"]
    rows = {r["method"]: r for r in table["rows"]}
    assert rows["itemknn"]["mixed_config"] and rows["itemknn"]["tuned_seeds"] == [0]
    assert not rows["popularity"]["mixed_config"]  # same (default) parameters on both seeds
    text = seeds_to_markdown(table)
    assert "| itemknn ‡ |" in text and "‡: not configured the same way on every seed" in text
    assert "  ‡" not in text and "ranked). ‡: not configured" in text  # one space
    assert r"itemknn \ddag" in seeds_to_latex(table)
    # tuning seed 1 stores it under its own name, leaves seed 0's, and the row is no longer
    # mixed in the sense of tuned-vs-default (both tuned, each on its own valid part)
    one = tune("lora-rec", "itemknn", budget=2, seed=1, tuned_dir=tuned_dir, **common, **quiet)
    assert load_tuned("synthetic-tiny", "leave-last-out-seed1", "lora-rec", "itemknn",
                      tuned_dir)["params"] == one["params"]
    assert load_tuned("synthetic-tiny", "leave-last-out", "lora-rec", "itemknn",
                      tuned_dir)["params"] == zero["params"]
    result = run_benchmark(tracks=["lora-rec", "image-rec"], methods=["itemknn"], seed=1,
                           results_dir=tmp_path / "results", leaderboard_dir=None,
                           tuned_dir=tuned_dir, **common, **quiet)
    record = json.loads(result["records"][0].read_text())
    assert record["method"]["tuned"] is True
    assert record["method"]["params"]["k"] == one["params"]["k"]
    # tuned on both seeds is one procedure: no ‡, whatever each seed's search chose
    from benchmark.leaderboard import build_seed_tables, build_tables

    (table,) = [t for t in build_seed_tables(build_tables(tmp_path / "results")[0])
                if t["track"] == "lora-rec"]
    rows = {r["method"]: r for r in table["rows"]}
    assert rows["itemknn"]["tuned_seeds"] == [0, 1] and not rows["itemknn"]["mixed_config"]
    assert "‡" not in seeds_to_markdown(table)
