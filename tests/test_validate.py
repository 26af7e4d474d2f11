"""`gembench validate`: every violated rule with all its rows; exit 2, or 0 when valid."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmark import api
from benchmark.cli import app
from benchmark.splits import SplitConfig, make_split

runner = CliRunner()

# popularity's lists on the toy lora-rec test part (as in test_submission)
VALID = [("u1", "l5", 1), ("u1", "l4", 2), ("u2", "l1", 1), ("u2", "l4", 2),
         ("u3", "l3", 1), ("u3", "l5", 2), ("u3", "l4", 3)]
# rows 7..13 each break one rule (row 13 two); u1's training items: l1 l2 l3,
# u2's: l2 l3 l5, u3's: l1 l2
BROKEN = VALID[:6] + [
    ("u3", "l4", 4),   # 7: u3's ranks become 1, 2, 4, 4
    ("u9", "l1", 1),   # 8: unknown user
    ("u3", "l99", 4),  # 9: unknown item
    ("u1", "l5", 3),   # 10: duplicate (u1, l5)
    ("u2", "l2", 3),   # 11: a training item of u2
    ("u1", None, 4),   # 12: empty item_id
    ("u2", "l3", "x"),  # 13: rank not an integer, and a training item of u2
]


@pytest.fixture()
def split_dir(toy, tmp_path):
    return make_split(toy, SplitConfig()).save(tmp_path / "split")


def write(tmp_path, rows, name="run.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]).to_csv(path, index=False)
    return path


def validate(split_dir, path):
    return runner.invoke(app, ["validate", "--track", "lora-rec", "--split", str(split_dir),
                               str(path)])


def test_valid_file_exits_0(split_dir, tmp_path):
    res = validate(split_dir, write(tmp_path, VALID))
    assert res.exit_code == 0, res.output
    assert "valid (7 rows, 3 users)" in res.output


def test_every_rule_is_listed_with_its_rows(split_dir, tmp_path):
    path = write(tmp_path, BROKEN)
    res = validate(split_dir, path)
    assert res.exit_code == 2, res.output
    report = api.validate("lora-rec", split_dir, path)
    assert not report["valid"]
    found = {v.rule: v.rows for v in report["violations"]}
    assert found == {
        "no empty values": (12,),
        "rank is an integer": (13,),
        "user_id is a user of the split's lora part": (8,),
        "item_id is in the split's lora catalogue": (9,),
        "one row per (user_id, item_id)": (10,),
        "each user's ranks are exactly 1, 2, ..., n": (7,),
        "never recommend a training item": (11, 13),
    }
    assert "7 rules violated" in res.output
    assert "rule: never recommend a training item — 2 rows: 11, 13" in res.output
    assert "e.g. row 11: item 'l2' is a training item of user 'u2'" in res.output
    # evaluate still stops at the first broken rule
    res = runner.invoke(app, ["evaluate", "--track", "lora-rec", "--split", str(split_dir),
                              "--submission", str(path)])
    assert res.exit_code == 2 and "row 12" in res.output


def test_listing_is_capped_per_rule(split_dir, tmp_path):
    rows = VALID + [(f"x{i}", "l1", 1) for i in range(25)] + [("u1", "l1", 3)] * 1
    res = validate(split_dir, write(tmp_path, rows))
    assert res.exit_code == 2
    assert ("rule: user_id is a user of the split's lora part — 25 rows: "
            + ", ".join(str(r) for r in range(8, 28)) + " and 5 more") in res.output
    assert "rule: never recommend a training item — 1 row: 33" in res.output


def test_unreadable_file_is_one_violation(split_dir, tmp_path):
    path = tmp_path / "run.csv"
    path.write_text("user,item\nu1,l1\n")
    res = validate(split_dir, path)
    assert res.exit_code == 2
    assert "1 rule violated" in res.output and "missing columns" in res.output
    res = validate(split_dir, tmp_path / "nope.csv")
    assert res.exit_code == 2 and "file not found" in res.output


def test_too_many_rows_per_user(split_dir, tmp_path, toy):
    from benchmark.splits import load_split
    from benchmark.submission import find_violations
    from benchmark.tasks import get_track

    frame = pd.DataFrame(VALID, columns=["user_id", "item_id", "rank"])
    found = find_violations(frame, load_split(split_dir), get_track("lora-rec"), k=2)
    assert [(v.rule, v.rows) for v in found] == [("at most K=2 rows per user", (5, 6, 7))]


def test_validate_help():
    res = runner.invoke(app, ["validate", "--help"])
    assert res.exit_code == 0 and "every rule" in res.output


def test_header_only_file_is_one_verdict_in_validate_and_evaluate(tmp_path):
    """validate and evaluate agree: a header-only file is one clear error in both."""
    from typer.testing import CliRunner

    from benchmark.cli import app
    from benchmark.data.synthetic import synthesize
    from benchmark.splits import SplitConfig, make_split

    ds = synthesize("tiny", tmp_path / "ds", seed=0, progress=False)
    make_split(ds, SplitConfig(), progress=False).save(tmp_path / "split")
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,rank\n")
    run = CliRunner()
    for args in (["validate", "--track", "lora-rec", "--split", str(tmp_path / "split"),
                  str(empty)],
                 ["evaluate", "--track", "lora-rec", "--split", str(tmp_path / "split"),
                  "--submission", str(empty)]):
        res = run.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "no rankings" in res.output and "Traceback" not in res.output
