"""Fair tuning: valid part only, seeded, stored with the split fingerprint, used by `run`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import benchmark.ranking_data as ranking_mod
from benchmark import tuning
from benchmark.cli import app
from benchmark.data.synthetic import synthesize
from benchmark.runner import prepare_split, run_benchmark
from benchmark.splits import Split, SplitConfig
from benchmark.tuning import load_tuned, sample_configs, store_tuned, tune


@pytest.fixture()
def tiny(tmp_path):
    return synthesize("tiny", tmp_path / "synthetic-tiny", seed=0, progress=False)


def test_sample_configs_defaults_first_distinct_seeded():
    space = {"a": [1, 2, 3], "b": [0.1, 0.2]}
    got = sample_configs(space, {"a": 2, "b": 0.1}, budget=4, seed=0)
    assert got[0] == {"a": 2, "b": 0.1}
    assert len(got) == 4 and len({tuple(sorted(c.items())) for c in got}) == 4
    assert got == sample_configs(space, {"a": 2, "b": 0.1}, budget=4, seed=0)
    assert len(sample_configs(space, {}, budget=50, seed=1)) == 6  # capped at the grid


def test_tune_uses_valid_only_and_stores_fingerprint(tiny, tmp_path, monkeypatch):
    parts = []
    real = ranking_mod.track_data

    def spy(split, kind, part="test"):
        parts.append(part)
        return real(split, kind, part)

    monkeypatch.setattr(ranking_mod, "track_data", spy)
    out = tune("lora-rec", "itemknn", budget=3, dataset=tiny.path, data_dir=tmp_path,
               tuned_dir=tmp_path / "tuned", progress=False, echo=lambda *_: None)
    assert parts == ["valid"]
    split = prepare_split(tiny, SplitConfig(tracks=("lora-rec", "image-rec")), tmp_path,
                          progress=False)
    entry = load_tuned(tiny.name, "leave-last-out", "lora-rec", "itemknn", tmp_path / "tuned")
    fingerprint = split.track_fingerprint("lora-rec")
    assert entry["track_fingerprint"] == fingerprint == out["track_fingerprint"]
    assert "split_fingerprint" not in entry and "metrics" not in entry["trials"][0]
    assert entry["n_trials"] == entry["budget"] == 3 and entry["part"] == "valid"
    assert entry["value"] == max(t["value"] for t in entry["trials"])
    assert entry["trials"][0]["params"] == {"k": 100, "shrink": 0.0}  # defaults first

    # tampering with the test part changes nothing: tuning never reads its items
    real_part = Split.part

    def tampered(self, name, item_kind=None):
        frame = real_part(self, name, item_kind)
        if name == "test":
            frame = frame.assign(item_id=frame["item_id"].to_numpy()[::-1])
        return frame

    monkeypatch.setattr(Split, "part", tampered)
    again = tune("lora-rec", "itemknn", budget=3, dataset=tiny.path, data_dir=tmp_path,
                 tuned_dir=tmp_path / "tuned2", progress=False, echo=lambda *_: None)
    assert [t["value"] for t in again["trials"]] == [t["value"] for t in entry["trials"]]


def test_run_uses_tuned_params_and_records_them(tiny, tmp_path):
    split = prepare_split(tiny, SplitConfig(tracks=("lora-rec", "image-rec")), tmp_path,
                          progress=False)
    tuned_dir = tmp_path / "tuned"
    store_tuned(tiny.name, "leave-last-out", "lora-rec", "userknn",
                {"params": {"k": 3, "shrink": 2.0},
                 "track_fingerprint": split.track_fingerprint("lora-rec")}, tuned_dir)
    store_tuned(tiny.name, "leave-last-out", "image-rec", "userknn",
                {"params": {"k": 3, "shrink": 2.0}, "track_fingerprint": "0" * 64}, tuned_dir)
    lines: list[str] = []
    out = run_benchmark(dataset=tiny.path, methods=["userknn"], data_dir=tmp_path,
                        results_dir=tmp_path / "results", leaderboard_dir=None,
                        progress=False, echo=lines.append, tuned_dir=tuned_dir)
    records = {json.loads(p.read_text())["track"]: json.loads(p.read_text())["method"]
               for p in out["records"]}
    assert records["lora-rec"]["tuned"] is True
    assert records["lora-rec"]["tuned_on"] == split.track_fingerprint("lora-rec")
    assert records["lora-rec"]["params"]["k"] == 3 and records["lora-rec"]["params"]["shrink"] == 2
    # tuned on another split: ignored, with a warning
    assert records["image-rec"]["tuned"] is False and records["image-rec"]["tuned_on"] is None
    assert records["image-rec"]["params"]["k"] == 100
    assert any(line.startswith("warning:") and "image-rec" in line for line in lines)


def test_entry_without_a_track_fingerprint_is_not_used(tmp_path):
    from benchmark.tuning import tuned_params_for

    store_tuned("d", "leave-last-out", "lora-rec", "userknn",
                {"params": {"k": 3}, "split_fingerprint": "a" * 64}, tmp_path)
    said: list[str] = []
    assert tuned_params_for("d", "leave-last-out", "lora-rec", "userknn", "a" * 64, tmp_path,
                            warn=said.append) == (None, None)
    assert said and "carry no track fingerprint" in said[0]


def test_cli_tune(tiny, tmp_path):
    res = CliRunner().invoke(app, ["tune", "--track", "image-rec", "--method", "ease",
                                   "--budget", "2", "--dataset", str(tiny.path),
                                   "--data-dir", str(tmp_path), "--tuned-dir",
                                   str(tmp_path / "tuned"), "--quiet"])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "tuned" / f"{tiny.name}.json").read_text())
    assert table["leave-last-out"]["image-rec"]["ease"]["n_trials"] == 2
    bad = CliRunner().invoke(app, ["tune", "--track", "lora-rec", "--method", "popularity",
                                   "--dataset", str(tiny.path), "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "search_space" in bad.output


def test_shipped_tuned_file_is_consistent():
    path = tuning.TUNED_DIR / "synthetic-small.json"
    if not path.is_file():
        pytest.skip("no shipped tuned parameters")
    table = json.loads(path.read_text())
    for tracks in table.values():
        for methods in tracks.values():
            for entry in methods.values():
                assert entry["part"] == "valid" and len(entry["track_fingerprint"]) == 64
                assert "split_fingerprint" not in entry  # migrated to per-track fingerprints
                assert entry["n_trials"] == len(entry["trials"]) <= entry["budget"]


def test_cli_tune_help():
    res = CliRunner().invoke(app, ["tune", "--help"])
    assert res.exit_code == 0 and "--budget" in res.output
