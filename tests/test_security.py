"""Records and judges never run code, names never escape their folders, records are owned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from baselines.pref_global import GlobalReward
from benchmark.cli import app
from benchmark.core.names import safe_name
from benchmark.data.synthetic import synthesize
from benchmark.errors import DataError, UntrustedCode
from benchmark.judge import load_judge, save_judge
from benchmark.leaderboard import _latex_escape, md_cell, to_markdown
from benchmark.preference import make_preference_split
from benchmark.protocols import SideInfo
from benchmark.reproduce import _method_ref
from benchmark.results import record_path, write_record
from benchmark.splits import SplitConfig, make_split

runner = CliRunner()
EVIL = "subprocess:Popen"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("tiny") / "synthetic-tiny", seed=0,
                      progress=False)


@pytest.fixture(scope="module")
def code_run(tiny, tmp_path_factory):
    """One popularity record of a tiny code run (and the folders it used)."""
    root = tmp_path_factory.mktemp("run")
    res = runner.invoke(app, ["run", "--dataset", str(tiny.path), "--tracks", "lora-rec",
                              "--methods", "popularity", "--data-dir", str(root / "data"),
                              "--results-dir", str(root / "results"), "--leaderboard-dir",
                              str(root / "lb"), "-q"])
    assert res.exit_code == 0, res.output
    path = root / "results/synthetic-tiny/leave-last-out/lora-rec/popularity.json"
    assert path.is_file()
    return root, path


def _evil_params(pwned: Path) -> dict:
    return {"args": ["touch", str(pwned)]}


# ----------------------------------------------------------------- 1. no code from data

def test_a_rewritten_record_runs_nothing_with_or_without_trust_code(code_run, tmp_path):
    root, path = code_run
    record = json.loads(path.read_text())
    pwned = tmp_path / "pwned"
    record["method"].update({"name": "evil", "class": EVIL, "params": _evil_params(pwned)})
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(record))
    args = ["run", "--reproduce", str(evil), "--data-dir", str(root / "data"), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "--trust-code" in res.output and str(evil) in res.output
    assert not pwned.exists()
    res = runner.invoke(app, [*args, "--trust-code"])  # trusted: still not a method class
    assert res.exit_code == 2, res.output
    assert "not a method class" in res.output
    assert not pwned.exists()


def test_a_job_record_naming_code_is_refused_before_any_work(tmp_path):
    pwned = tmp_path / "pwned"
    record = {"track": "preference", "method": {"name": "evil", "class": EVIL,
                                                 "params": _evil_params(pwned)}}
    with pytest.raises(UntrustedCode, match="--trust-code"):
        _method_ref(record, "evil.json")
    with pytest.raises(UntrustedCode, match="not a method class"):
        _method_ref(record, "evil.json", trust_code=True)
    record["method"]["name"] = "global-reward"  # a registered name wins over the class
    assert _method_ref(record, "x.json") == "global-reward"
    assert not pwned.exists()


def test_a_rerank_record_naming_a_code_first_stage_is_refused(tmp_path):
    from benchmark.reproduce import reproduce

    committed = Path(__file__).resolve().parents[1] / "results/synthetic-small"
    record = json.loads(sorted((committed / "rerank-itemknn-c10/lora-rec").glob("*.json"))[0]
                        .read_text())
    record["split"]["candidates"]["first_stage"] = EVIL
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(record))
    with pytest.raises(UntrustedCode, match="--trust-code"):
        reproduce(evil, data_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists()  # refused before any work


class MyReward(GlobalReward):
    """A user's preference class: not registered."""

    name = "my-reward"


def test_a_rewritten_judge_runs_nothing_and_user_judges_need_trust_code(tiny, tmp_path):
    split = make_preference_split(tiny, seed=0)
    model = MyReward().fit(split.few_shot("all"), SideInfo(dataset=tiny, item_kind="image"))
    judge = save_judge(model, tmp_path / "judge", name="my-reward", dataset=tiny, split=split)
    with pytest.raises(UntrustedCode, match="--trust-code"):
        load_judge(judge)
    assert type(load_judge(judge, trust_code=True)) is MyReward
    pairs = pd.read_parquet(Path(tiny.path) / "preferences.parquet").head(4)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    pwned = tmp_path / "pwned"
    meta = json.loads((judge / "judge.json").read_text())
    meta["method"].update({"name": "evil", "target": EVIL, "params": _evil_params(pwned)})
    (judge / "judge.json").write_text(json.dumps(meta))
    args = ["judge", "score", str(judge), "--pairs", str(tmp_path / "pairs.parquet")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--trust-code" in res.output, res.output
    assert not pwned.exists()
    res = runner.invoke(app, [*args, "--trust-code"])
    assert res.exit_code == 2 and "not a method class" in res.output, res.output
    assert not pwned.exists()


# ----------------------------------------------------------------- 2. names are checked

@pytest.mark.parametrize("name", ["popularity", "recbole:BPR", "leave-last-out-seed1",
                                  "per-user-pairs-k5", "a.b+c@d_e", "9x"])
def test_safe_names_pass(name):
    assert safe_name(name, "name") == name


@pytest.mark.parametrize("name", ["", "..", "../x", "a/../b", "/abs", "a/b", "a\\b", "a b",
                                  "a\nb", "x\t", "-x", ".hidden", "a|b", "x" * 129, None, 3])
def test_unsafe_names_are_refused(name):
    with pytest.raises(DataError, match="not a safe name"):
        safe_name(name, "name")


def test_record_paths_keep_their_names_and_stay_under_results(tmp_path):
    record = {"dataset": {"name": "synthetic-small"}, "split": {"protocol": "leave-last-out"},
              "track": "lora-rec", "method": {"name": "recbole:BPR"}}
    assert record_path(tmp_path, record) == (
        tmp_path / "synthetic-small/leave-last-out/lora-rec/recbole_BPR.json")
    for part, value in ((("dataset", "name"), "../../evil"), (("split", "protocol"), "/tmp/x"),
                        (("method", "name"), "../x")):
        bad = json.loads(json.dumps(record))
        bad[part[0]][part[1]] = value
        with pytest.raises(DataError, match="not a safe name"):
            record_path(tmp_path, bad)


def _submission(tiny, tmp_path) -> tuple[Path, Path]:
    """A split folder and a valid rankings file (each test user's held-out LoRA first)."""
    split = make_split(tiny, SplitConfig(), progress=False)
    split_dir = split.save(tmp_path / "split")
    test = split.part("test", "lora")
    csv = tmp_path / "sub.csv"
    pd.DataFrame({"user_id": test["user_id"], "item_id": test["item_id"], "rank": 1}
                 ).drop_duplicates("user_id").to_csv(csv, index=False)
    res = runner.invoke(app, ["validate", "--track", "lora-rec", "--split", str(split_dir),
                              str(csv)])
    assert res.exit_code == 0, res.output
    return split_dir, csv


def test_split_json_names_cannot_leave_results(tiny, tmp_path):
    split_dir, csv = _submission(tiny, tmp_path)
    meta_file = split_dir / "split.json"
    meta = json.loads(meta_file.read_text())
    results = tmp_path / "deep" / "results"
    for key, value in (("dataset", "../../escaped"), ("protocol", "../../escaped")):
        bad = json.loads(json.dumps(meta))
        if key == "dataset":
            bad["dataset"]["name"] = value
        else:
            bad["protocol"] = value
        meta_file.write_text(json.dumps(bad))
        res = runner.invoke(app, ["evaluate", "--track", "lora-rec", "--split", str(split_dir),
                                  "--results-dir", str(results), "--submission", str(csv),
                                  "--record", "--name", "team"])
        assert res.exit_code == 2 and "not a safe name" in res.output, res.output
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep/escaped").exists()
    assert not list(tmp_path.rglob("team.json"))


def test_a_dataset_json_name_cannot_leave_the_folders(tiny, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(tiny.path, ds)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["name"] = "../../escaped"
    (ds / "dataset.json").write_text(json.dumps(meta))
    work = tmp_path / "a" / "b"
    res = runner.invoke(app, ["run", "--dataset", str(ds), "--tracks", "lora-rec", "--methods",
                              "popularity", "--data-dir", str(work / "data"), "--results-dir",
                              str(work / "results"), "--leaderboard-dir", str(work / "lb"),
                              "-q"])
    assert res.exit_code == 2 and "not a safe name" in res.output, res.output
    assert not list(tmp_path.rglob("escaped*"))


def test_submission_names_are_checked_and_reserved(tiny, tmp_path):
    split_dir, csv = _submission(tiny, tmp_path)
    base = ["evaluate", "--track", "lora-rec", "--split", str(split_dir), "--results-dir",
            str(tmp_path / "results"), "--submission", str(csv), "--record", "--name"]
    for name in ("x\n| **fake** | 1 |", "../x"):
        res = runner.invoke(app, [*base, name])
        assert res.exit_code == 2 and "not a safe name" in res.output, res.output
    for name in ("itemknn", "recbole:BPR"):  # built-in names are reserved, record or not
        res = runner.invoke(app, [*base, name])
        assert res.exit_code == 2 and "registered method's name" in res.output, res.output
    assert not (tmp_path / "results").exists()


def test_markdown_and_latex_escape_names():
    fake = "x\n| **fake** | 1 |"
    assert "\n" not in md_cell(fake) and "\\| **fake** \\|" in md_cell(fake)
    assert md_cell("popularity") == "popularity" and md_cell("a\\b") == "a\\\\b"
    table = {"track": "lora-rec", "dataset": "d", "protocol": "leave-last-out",
             "metrics": ["ndcg@10"], "interval_method": "bootstrap",
             "gembench_version": "0", "dataset_checksum": "0", "split_fingerprint": "0",
             "rows": [{"method": fake, "metrics": {"ndcg@10": 0.5},
                       "intervals": {"ndcg@10": [0.4, 0.6]}, "significance": {},
                       "n_users_evaluated": 3}]}
    rows = [line for line in to_markdown(table).splitlines() if line.startswith("|")]
    assert len(rows) == 3 and not any(line.startswith("| **fake**") for line in rows)
    assert _latex_escape("ease^2") == r"ease\textasciicircum{}2"
    assert _latex_escape("a~b") == r"a\textasciitilde{}b"
    assert _latex_escape("a\\b") == r"a\textbackslash{}b"
    assert _latex_escape("x_{1}") == r"x\_\{1\}"


# ----------------------------------------------------------------- 3. records are owned

def test_a_run_never_replaces_a_submission_and_back(code_run, tmp_path):
    _, path = code_run
    record = json.loads(path.read_text())
    target = tmp_path / "popularity.json"
    submission = json.loads(json.dumps(record))
    submission["method"].update({"class": None, "submission_sha256": "ab" * 32})
    target.write_text(json.dumps(submission))
    with pytest.raises(DataError, match="submission record .* does not replace") as e:
        write_record(record, target)  # a code run over a submission
    assert str(target) in str(e.value)
    assert json.loads(target.read_text()) == submission
    target.write_text(json.dumps(record))
    with pytest.raises(DataError, match="code run record .* does not replace"):
        write_record(submission, target)  # a submission over a code run
    assert json.loads(target.read_text()) == record
    write_record(record, target)  # the same kind: replaced as before


def test_gembench_run_refuses_to_replace_a_submission_record(code_run, tiny, tmp_path):
    root, path = code_run
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    mine = results / path.relative_to(root / "results")
    record = json.loads(mine.read_text())
    record["method"].update({"class": None, "submission_sha256": "ab" * 32})
    mine.write_text(json.dumps(record))
    res = runner.invoke(app, ["run", "--dataset", str(tiny.path), "--tracks", "lora-rec",
                              "--methods", "popularity", "--data-dir", str(root / "data"),
                              "--results-dir", str(results), "--leaderboard-dir",
                              str(tmp_path / "lb"), "-q"])
    assert res.exit_code == 2 and "does not replace it" in res.output, res.output
    assert str(mine) in res.output
    assert json.loads(mine.read_text()) == record
