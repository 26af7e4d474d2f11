"""Records (bootstrap intervals, atomic writes) and leaderboards rebuilt from records alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.errors import DataError
from benchmark.leaderboard import write_leaderboards
from benchmark.results import (
    bootstrap_interval,
    make_record,
    read_record,
    record_path,
    write_record,
)


def test_bootstrap_interval():
    values = np.random.default_rng(0).random(500)
    low, high = bootstrap_interval(values, seed=1)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_interval(values, seed=1)  # seeded: reproducible
    # the interval of a mean of 500 U(0,1) draws: about ±1.96 * 0.2887 / sqrt(500) = ±0.0253
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(500), rel=0.15)
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_interval(np.array([]))))


def record(method: str, ndcg: list[float], fingerprint: str = "f" * 64) -> dict:
    values = np.array(ndcg)
    return make_record(
        track="lora-rec",
        dataset={"name": "toy", "path": "x", "files_sha256": "c" * 64},
        split={"protocol": "leave-last-out", "fingerprint": fingerprint, "part": "test"},
        method={"name": method, "params": {}, "tuned": False},
        summary={"ndcg@10": float(values.mean())},
        per_user={"ndcg@10": values},
        user_ids=[f"u{i}" for i in range(len(values))],
        counts={"n_users_evaluated": len(values), "n_users_skipped": 0},
        seed=0,
        timing={"fit": 0.1, "evaluate": 0.2},
    )


def test_record_roundtrip_and_layout(tmp_path):
    rec = record("popularity", [0.5, 1.0, 0.0])
    path = write_record(rec, record_path(tmp_path, rec))
    assert path == tmp_path / "toy" / "leave-last-out" / "lora-rec" / "popularity.json"
    back = read_record(path)
    assert back["metrics"]["ndcg@10"] == 0.5
    assert back["per_user"]["user_id"] == ["u0", "u1", "u2"]
    assert {"versions", "peak_memory_mb", "timing_s", "intervals", "seed"} <= set(back)
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary file left behind
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        read_record(bad)


def test_leaderboard_is_deterministic_and_refuses_other_splits(tmp_path):
    results, out = tmp_path / "results", tmp_path / "lb"
    for rec in (record("popularity", [0.2, 0.4]), record("itemknn", [0.6, 0.8]),
                record("oracle", [1.0, 1.0]), ):
        write_record(rec, record_path(results, rec))
    odd = record("random", [0.1, 0.1], fingerprint="0" * 64)
    odd["method"]["name"] = "stale"
    write_record(odd, record_path(results, odd))
    files, tables, notes = write_leaderboards(results, out)
    assert [row["method"] for row in tables[0]["rows"]] == ["oracle", "itemknn", "popularity"]
    assert len(notes) == 1 and "stale.json" in notes[0] and "left out" in notes[0]
    first = {p: p.read_bytes() for p in files}
    write_leaderboards(results, out)
    assert {p: p.read_bytes() for p in files} == first  # byte-identical rebuild
    md = (out / "toy" / "leave-last-out" / "lora-rec.md").read_text()
    assert "| itemknn | – | – | – | **0.7000**" in md  # best: the oracle is only a reference
    assert "| oracle | – | – | – | 1.0000 " in md
    assert "split fingerprint ffffffffffffffff" in md
    assert json.loads((out / "toy" / "leave-last-out" / "lora-rec.json").read_text())["rows"]


def test_latex_caption_names_the_reference_row(tmp_path):
    from benchmark.leaderboard import build_tables, to_latex

    for rec in (record("popularity", [0.2, 0.4]), record("oracle", [1.0, 1.0])):
        write_record(rec, record_path(tmp_path, rec))
    latex = to_latex(build_tables(tmp_path)[0][0], ["ndcg@10"])
    assert "oracle (the synthetic truth) is a reference ceiling" in latex
    assert r"popularity & \textbf{0.3000}" in latex  # best among the compared methods
