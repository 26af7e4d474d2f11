"""Seed-summary tables: mean ± sample sd (ddof = 1) of each method's metrics over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark import __version__
from benchmark.errors import DataError
from benchmark.leaderboard import (
    build_seed_tables,
    build_tables,
    seeds_to_latex,
    seeds_to_markdown,
    write_leaderboards,
)
from benchmark.results import make_record, record_path, seeded_protocol, write_record

USERS = ["u0", "u1", "u2", "u3"]
SPREAD = np.array([-0.01, 0.01, -0.02, 0.02])

# seed -> method -> (ndcg@10, recall@20); beta has no seed 2, gamma only seed 1
LORA_REC = {
    0: {"alpha": (0.30, 0.5), "beta": (0.40, 0.55), "oracle": (0.9, 1.0)},
    1: {"alpha": (0.20, 0.6), "beta": (0.30, 0.45), "oracle": (0.8, 1.0), "gamma": (0.1, 0.2)},
    2: {"alpha": (0.25, 0.7), "oracle": (1.0, 1.0)},
}
# seed -> method -> (gain, distance): distance is a cost, never bold
LORA_EDIT = {0: {"step": (0.10, 0.5), "noop": (0.0, 0.0)},
             1: {"step": (0.30, 0.7), "noop": (0.0, 0.0)}}


def _write(results: Path, *, track: str, protocol: str, seed: int, method: str,
           summary: dict[str, float]) -> Path:
    record = make_record(
        track=track,
        dataset={"name": "hand", "path": "/nowhere", "files_sha256": f"{seed}a" * 32},
        split={"protocol": seeded_protocol(protocol, seed), "fingerprint": f"{seed}f" * 32,
               "part": "test", "fit_on": "train+valid", "interaction_kind": "generate"},
        method={"name": method, "class": f"x:{method}", "params": {}, "tuned": False},
        summary=summary,
        per_user={m: v + SPREAD for m, v in summary.items()}, user_ids=USERS,
        counts={"n_users_evaluated": len(USERS), "n_users_skipped": 0},
        seed=seed, timing={"fit": 0.0, "evaluate": 0.0},
    )
    return write_record(record, record_path(results, record))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seeds") / "results"
    for seed, methods in LORA_REC.items():
        for name, (ndcg, recall) in methods.items():
            _write(root, track="lora-rec", protocol="leave-last-out", seed=seed, method=name,
                   summary={"ndcg@10": ndcg, "recall@20": recall})
    for seed, methods in LORA_EDIT.items():
        for name, (gain, distance) in methods.items():
            _write(root, track="lora-edit", protocol="lora-edit-split", seed=seed, method=name,
                   summary={"gain": gain, "distance": distance})
    # cold-start has seed 0 only: no seed table
    _write(root, track="lora-rec", protocol="cold-start", seed=0, method="alpha",
           summary={"ndcg@10": 0.1, "recall@20": 0.2})
    return root


@pytest.fixture(scope="module")
def tables(results):
    tables, notes = build_tables(results)
    assert notes == []
    return tables


@pytest.fixture(scope="module")
def seed_table(tables):
    (table,) = [t for t in build_seed_tables(tables) if t["track"] == "lora-rec"]
    return table


def test_each_per_seed_table_knows_its_seed(tables):
    assert [(t["protocol"], t["track"], t["seed"]) for t in tables] == [
        ("cold-start", "lora-rec", 0),
        ("leave-last-out", "lora-rec", 0),
        ("leave-last-out-seed1", "lora-rec", 1),
        ("leave-last-out-seed2", "lora-rec", 2),
        ("lora-edit-split", "lora-edit", 0),
        ("lora-edit-split-seed1", "lora-edit", 1),
    ]


def test_means_sds_and_counts(seed_table):
    t = seed_table
    assert (t["kind"], t["dataset"], t["protocol"], t["track"]) == (
        "seeds", "hand", "leave-last-out", "lora-rec")
    assert t["seeds"] == [0, 1, 2] and t["sort_metric"] == "ndcg@10"
    assert t["metrics"][:4] == ["recall@10", "recall@20", "recall@50", "ndcg@10"]
    assert t["split_fingerprints"] == {"0": "0f" * 32, "1": "1f" * 32, "2": "2f" * 32}
    assert t["protocols"] == {"0": "leave-last-out", "1": "leave-last-out-seed1",
                              "2": "leave-last-out-seed2"}
    assert t["gembench_version"] == __version__
    rows = {r["method"]: r for r in t["rows"]}
    # methods on all 3 seeds first (oracle 0.9, alpha 0.25 by mean ndcg@10), then beta (2
    # seeds, 0.35), gamma (1 seed, 0.1)
    assert [r["method"] for r in t["rows"]] == ["oracle", "alpha", "beta", "gamma"]
    alpha = rows["alpha"]["metrics"]
    # alpha ndcg@10 = 0.30, 0.20, 0.25: mean 0.25; sd = sqrt((.05² + .05² + 0) / 2) = 0.05
    assert alpha["ndcg@10"] == {"mean": 0.25, "sd": 0.05, "n_seeds": 3,
                                "values": {"0": 0.3, "1": 0.2, "2": 0.25}}
    # alpha recall@20 = 0.5, 0.6, 0.7: mean 0.6, sd = sqrt((.01 + 0 + .01) / 2) = 0.1
    assert (alpha["recall@20"]["mean"], alpha["recall@20"]["sd"]) == (0.6, 0.1)
    # beta (no seed 2) ndcg@10 = 0.40, 0.30: mean 0.35; sd = sqrt((.05² + .05²) / 1) = 0.0707..
    beta = rows["beta"]["metrics"]
    assert beta["ndcg@10"] == {"mean": 0.35, "sd": 0.07071068, "n_seeds": 2,
                               "values": {"0": 0.4, "1": 0.3}}
    assert rows["beta"]["n_seeds"] == 2 and rows["alpha"]["n_seeds"] == 3
    # gamma ran on seed 1 only: no sd
    gamma = rows["gamma"]
    assert gamma["n_seeds"] == 1 and gamma["metrics"]["ndcg@10"]["mean"] == 0.1
    assert math.isnan(gamma["metrics"]["ndcg@10"]["sd"])
    # oracle recall@20 = 1, 1, 1: sd 0
    assert rows["oracle"]["metrics"]["recall@20"]["sd"] == 0.0
    assert "recall@10" not in alpha  # no seed has it


def test_best_mean_is_bold_but_never_a_reference_or_a_cost(seed_table, tables):
    best = {r["method"]: r["best"] for r in seed_table["rows"]}
    # oracle has the highest means but is a reference row; beta's ndcg@10 mean (0.35) beats
    # alpha's (0.25) but is over 2 of the 3 seeds only, so not comparable
    assert best == {"oracle": [], "alpha": ["recall@20", "ndcg@10"], "beta": [], "gamma": []}
    assert [r["reference"] for r in seed_table["rows"]] == [True, False, False, False]
    (edit,) = [t for t in build_seed_tables(tables) if t["track"] == "lora-edit"]
    assert edit["protocol"] == "lora-edit-split" and edit["sort_metric"] == "gain"
    rows = {r["method"]: r for r in edit["rows"]}
    # step: gain 0.1, 0.3 -> mean 0.2, sd sqrt(.01 + .01) = 0.14142136; distance 0.6 (not bold)
    assert rows["step"]["metrics"]["gain"]["sd"] == 0.14142136
    assert rows["step"]["metrics"]["distance"]["mean"] == 0.6
    assert rows["step"]["best"] == ["gain"] and rows["noop"]["best"] == []


def test_markdown(seed_table):
    md = seeds_to_markdown(seed_table)
    lines = md.splitlines()
    assert lines[0] == "## lora-rec — hand (leave-last-out split, 3 seeds: 0, 1, 2)"
    assert lines[2] == ("| method | recall@10 | recall@20 | recall@50 | ndcg@10 | ndcg@20 | "
                        "ndcg@50 | hit@10 | mrr@10 | n |")
    assert lines[4] == ("| oracle (reference) | – | 1.0000 ± 0.0000 | – | 0.9000 ± 0.1000 | – "
                        "| – | – | – | 3 |")
    assert lines[5] == ("| alpha | – | **0.6000** ± 0.1000 | – | **0.2500** ± 0.0500 | – | – "
                        "| – | – | 3 |")
    assert lines[6] == ("| beta | – | 0.5000 ± 0.0707 | – | 0.3500 ± 0.0707 | – | – | – "
                        "| – | 2 |")
    assert lines[7] == "| gamma | – | 0.2000 ± – | – | 0.1000 ± – | – | – | – | – | 1 |"
    assert lines[9] == (
        "Mean ± sample standard deviation (ddof = 1) over seeds 0, 1, 2; each seed has its own "
        "data draw (registered synthetic data), split and method seed; n: seeds a method ran "
        "on. Per-seed tables, with 95% intervals and significance tests, are under "
        "leave-last-out, leave-last-out-seed1, leave-last-out-seed2.")
    assert lines[10] == (
        "Methods run on every seed first, then sorted by the mean of ndcg@10. Bold: best mean "
        "per metric among methods run on every seed (costs such as distance are not ranked). "
        "oracle (the synthetic truth) is a reference ceiling, left out of the comparison.")
    assert lines[11] == (
        f"gembench {__version__}; data set hand; seed 0: files sha256 0a0a0a0a0a0a, split "
        "fingerprint 0f0f0f0f0f0f; seed 1: files sha256 1a1a1a1a1a1a, split fingerprint "
        "1f1f1f1f1f1f; seed 2: files sha256 2a2a2a2a2a2a, split fingerprint 2f2f2f2f2f2f.")


def test_latex(seed_table):
    tex = seeds_to_latex(seed_table, ["ndcg@10", "recall@20"], caption_extra="Synthetic data.")
    lines = tex.splitlines()
    assert lines[2].startswith(
        r"\caption{lora-rec on hand, leave-last-out split. Mean $\pm$ sample standard deviation "
        r"(ddof = 1) over seeds 0, 1, 2; each seed has its own data draw, split and method "
        r"seed; n: seeds a method ran on. Bold: best mean among methods run on every seed. "
        r"oracle (the synthetic truth) is a reference ceiling, left out of the comparison. "
        r"Synthetic data. gembench ")
    assert lines[3:] == [
        r"\label{tab:hand-leave-last-out-lora-rec-seeds}",
        r"\begin{tabular}{lrrr}",
        r"\toprule",
        r"Method & NDCG@10 & Recall@20 & $n$ \\",
        r"\midrule",
        r"oracle (ref.) & 0.9000 $\pm$ 0.1000 & 1.0000 $\pm$ 0.0000 & 3 \\",
        r"alpha & \textbf{0.2500} $\pm$ 0.0500 & \textbf{0.6000} $\pm$ 0.1000 & 3 \\",
        r"beta & 0.3500 $\pm$ 0.0707 & 0.5000 $\pm$ 0.0707 & 2 \\",
        r"gamma & 0.1000 $\pm$ -- & 0.2000 $\pm$ -- & 1 \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    assert tex.endswith("\\end{table}\n") and lines[2].endswith("2f2f2f2f2f2f.}")
    with pytest.raises(KeyError, match=r"unknown metric\(s\) \['recall@99'\]"):
        seeds_to_latex(seed_table, ["recall@99"])


def test_files_json_and_index(results, tmp_path):
    out = tmp_path / "lb"
    files, tables, notes, seed_tables = write_leaderboards(results, out, with_seeds=True)
    # the default stays (files, tables, notes)
    assert len(write_leaderboards(results, tmp_path / "lb2")) == 3
    rel = [p.relative_to(out) for p in files]
    for path in ("hand/leave-last-out/lora-rec-seeds.md", "hand/leave-last-out/lora-rec-seeds.json",
                 "hand/lora-edit-split/lora-edit-seeds.md",
                 "hand/lora-edit-split/lora-edit-seeds.json"):
        assert Path(path) in rel
    assert not any("cold-start" in str(p) and "seeds" in str(p) for p in rel)
    assert [t["kind"] for t in seed_tables] == ["seeds", "seeds"] and len(tables) == 6
    text = (out / "hand/leave-last-out/lora-rec-seeds.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)  # strict JSON: null, not NaN
    gamma = next(r for r in data["rows"] if r["method"] == "gamma")
    assert gamma["metrics"]["ndcg@10"]["sd"] is None
    assert (out / "hand/leave-last-out/lora-rec-seeds.md").read_text() == seeds_to_markdown(
        seed_tables[0])
    # the per-seed JSON names its seed only when it is not 0 (seed-0 files stay as they were)
    assert "seed" not in json.loads((out / "hand/leave-last-out/lora-rec.json").read_text())
    assert json.loads((out / "hand/leave-last-out-seed1/lora-rec.json").read_text())["seed"] == 1
    page = (out / "index.html").read_text()
    assert "6 table(s) and 2 summary table(s) over seeds." in page
    assert page.index('id="hand-leave-last-out-lora-rec-seeds"') > page.index(
        'id="hand-lora-edit-split-seed1-lora-edit"')
    assert '<td class="best">0.2500 ± 0.0500</td>' in page
    assert "<td>0.3500 ± 0.0707</td>" in page  # beta: 2 of 3 seeds, not bold
    assert "src=" not in page and "href=" not in page and "https://" not in page


def test_seed_zero_only_gives_no_seed_files(tmp_path):
    results = tmp_path / "results"
    for name, (ndcg, recall) in LORA_REC[0].items():
        _write(results, track="lora-rec", protocol="leave-last-out", seed=0, method=name,
               summary={"ndcg@10": ndcg, "recall@20": recall})
    files, tables, _, seed_tables = write_leaderboards(results, tmp_path / "lb", with_seeds=True)
    assert seed_tables == [] and build_seed_tables(tables) == []
    assert [p.name for p in files] == ["lora-rec.md", "lora-rec.json", "index.html"]
    assert "seed" not in json.loads(files[1].read_text())
    assert "summary table" not in (tmp_path / "lb/index.html").read_text()


def _pref_table(protocol: str, seed: int, accuracy: dict[str, float]) -> dict:
    return {"dataset": "hand", "protocol": protocol, "track": "preference", "seed": seed,
            "split_fingerprint": f"{seed}f" * 32, "dataset_checksum": None,
            "metrics": ["accuracy", "auc"],
            "rows": [{"method": m, "metrics": {"accuracy": a}} for m, a in accuracy.items()]}


def test_preference_protocols_group_without_the_seed_mark():
    assert seeded_protocol("per-user-pairs", 1) + "-k5" == "per-user-pairs-seed1-k5"
    tables = [_pref_table("per-user-pairs-k5", 0, {"bt": 0.6, "pop": 0.5}),
              _pref_table("per-user-pairs-seed1-k5", 1, {"bt": 0.7, "pop": 0.5}),
              _pref_table("per-user-pairs-k10", 0, {"bt": 0.8})]
    (table,) = build_seed_tables(tables)
    assert (table["protocol"], table["seeds"], table["sort_metric"]) == (
        "per-user-pairs-k5", [0, 1], "accuracy")
    # bt: 0.6, 0.7 -> mean 0.65, sd sqrt(.05² * 2 / 1) = 0.07071068; pop: 0.5, 0.5 -> sd 0
    assert [(r["method"], r["metrics"]["accuracy"]["mean"], r["metrics"]["accuracy"]["sd"])
            for r in table["rows"]] == [("bt", 0.65, 0.07071068), ("pop", 0.5, 0.0)]
    assert "auc" not in table["rows"][0]["metrics"]


def test_a_non_integer_seed_is_a_data_error(tmp_path):
    path = _write(tmp_path, track="lora-rec", protocol="leave-last-out", seed=0, method="alpha",
                  summary={"ndcg@10": 0.1})
    record = json.loads(path.read_text())
    record["seed"] = "zero"
    path.write_text(json.dumps(record))
    with pytest.raises(DataError) as err:
        build_tables(tmp_path)
    assert err.value.path == str(path) and err.value.rule == "a result record's seed is an integer"


def test_latex_default_columns_are_the_metrics_some_row_has(seed_table):
    lines = seeds_to_latex(seed_table).splitlines()
    assert lines[6] == r"Method & Recall@20 & NDCG@10 & $n$ \\"
