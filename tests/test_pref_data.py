"""Preference-track data: PAMELA, learn-user-pref (pickled), ImageGem personal pairs, ratings."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.data.imagegem import import_imagegem
from benchmark.data.imagegem_pairs import cluster_prompts, derive_personal_pairs
from benchmark.data.learn_user_pref import cache_dir, import_learn_user_pref
from benchmark.data.pamela import import_pamela
from benchmark.errors import DataError
from benchmark.ratings import (
    evaluate_ratings,
    load_rating_split,
    make_rating_split,
    pair_accuracy_per_user,
    pearson_per_user,
    rating_split_from_column,
    ratings_to_pairs,
    spearman_per_user,
)

ROOT = Path(__file__).resolve().parents[1]
PAMELA = ROOT / "datasets" / "pamela-sample"
IMAGEGEM = ROOT / "datasets" / "imagegem-sample"


# ------------------------------------------------------------------------------------ PAMELA
@pytest.fixture(scope="module")
def pamela(tmp_path_factory):
    return import_pamela(PAMELA, tmp_path_factory.mktemp("pam") / "pamela", progress=False)


def test_pamela_sample_is_what_its_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_pamela", PAMELA / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for f in sorted((PAMELA / "annotations").glob("*.json")):
        assert (tmp_path / "annotations" / f.name).read_bytes() == f.read_bytes()


def test_pamela_import_tables(pamela):
    r = pamela.arrow("ratings").to_pandas()
    assert len(r) == 30 and pamela.meta["dropped"] == {"duplicate_ratings": 1}
    assert r["split"].value_counts().to_dict() == {"train": 12, "test_seen": 8,
                                                   "test_unseen": 4, "val_seen": 3,
                                                   "val_unseen": 3}
    row = r[(r["user_id"] == "P002") & (r["image_id"] == "img_006")].iloc[0]
    assert (row["rating"], row["split"]) == (5.0, "train")
    assert pamela.meta["source"]["keys"] == {"user": "participant_id", "rating": "rating",
                                             "demographics": "participant_metadata"}
    users = pamela.table("users")
    assert users["user_id"].astype(str).tolist() == ["P001", "P002", "P003", "P004", "P005"]
    assert users.set_index("user_id").loc["P003", "gender"] == "prefer not to say"
    images = pamela.table("images").set_index("image_id")
    assert len(images) == 10 and images.loc["img_003", "prompt"] == "a painting of a flower"
    assert images.loc["img_002", "meta_style"] is None
    inter = pamela.table("interactions")
    assert len(inter) == 12 and set(inter["kind"]) == {"rate"}  # train rows only
    assert pamela.meta["counts"]["unseen_users_also_in_train"] == 0


def test_pamela_source_split_seen_unseen(pamela, tmp_path):
    split = rating_split_from_column(pamela)
    assert split.meta["counts"] | {} == {"train": 12, "valid": 6, "test": 12, "users": 5,
                                         "unseen_users": 2}
    assert split.unseen_users.tolist() == ["P005"]
    assert not split.train["unseen"].any()
    assert split.few_shot(0).shape[0] == 12  # unseen users have no training rows
    again = load_rating_split(split.save(tmp_path / "s"))
    assert again.fingerprint == split.fingerprint
    bad = tmp_path / "s" / "test.parquet"
    t = pd.read_parquet(bad)
    t.loc[0, "rating"] += 1
    t.to_parquet(bad, index=False)
    with pytest.raises(DataError, match="fingerprint"):
        load_rating_split(tmp_path / "s")


def _pamela_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(PAMELA / "annotations", src / "annotations")
    return src


@pytest.mark.parametrize("edit, message, row", [
    (lambda r: r[1].pop("rating"), "no rating", 2),
    (lambda r: r[2].update(rating="high"), "'high' is not a number", 3),
    (lambda r: r[0].pop("participant_id"), "no participant id", 1),
    (lambda r: r[3].update(image_path=None), "no image_path", 4),
])
def test_pamela_malformed_records(tmp_path, edit, message, row):
    src = _pamela_copy(tmp_path)
    path = src / "annotations" / "pamela_train.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=message) as e:
        import_pamela(src, tmp_path / "out", progress=False)
    assert e.value.path == str(path) and e.value.row == row and e.value.rule


def test_pamela_missing_split_and_scale(tmp_path):
    src = _pamela_copy(tmp_path)
    with pytest.raises(DataError, match="outside the scale") as e:
        import_pamela(src, tmp_path / "out", rating_scale=(1, 4), progress=False)
    assert e.value.path.endswith("pamela_train.json") and e.value.row == 1
    (src / "annotations" / "pamela_val_unseen.json").unlink()
    with pytest.raises(DataError, match=r"splits \['val_unseen'\]"):
        import_pamela(src, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------- learn-user-pref
def _lup_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": [7, 7, 9],
        "reference_list": [["a", "b"], ["a"], []],
        "reference_list_bad": [["c"], [], ["d"]],
        "reference_prompt_list": [["pa", "pb"], ["pa"], []],
        "image0": ["x", "y", "z"], "image1": ["y", "x", "w"],
        "prompt": ["p1", "p2", "p3"], "label0": [0.9, 0.5, 0.0],
    })


def test_learn_user_pref_pickle_refused_then_converted_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _lup_frame().to_pickle(src / "train.pkl")
    out = tmp_path / "lup"
    with pytest.raises(DataError, match="--allow-pickle") as e:
        import_learn_user_pref(src, out, progress=False)
    assert e.value.path == str(src / "train.pkl") and not out.exists()
    ds = import_learn_user_pref(src, out, allow_pickle=True, progress=False)
    assert (cache_dir(out) / "train.parquet").is_file()
    assert ds.meta["source"]["read_from_cache"] == {"train": False}
    prefs = ds.arrow("preferences").to_pandas()
    assert prefs[["user_id", "image_a", "image_b", "label", "split"]].values.tolist() == [
        ["7", "x", "y", 1.0, "train"], ["7", "y", "x", 0.5, "train"],
        ["9", "z", "w", 0.0, "train"]]
    inter = ds.arrow("interactions").to_pandas()
    assert sorted(zip(inter["user_id"], inter["item_id"], inter["kind"], strict=True)) == [
        ("7", "a", "like"), ("7", "b", "like"), ("7", "c", "dislike"), ("9", "d", "dislike")]
    images = ds.table("images").set_index("image_id")["prompt"]
    assert images.to_dict() == {"a": "pa", "b": "pb", "c": None, "d": None, "w": "p3",
                                "x": "p1", "y": "p1", "z": "p3"}
    # second import: no flag needed, the parquet cache is read
    again = import_learn_user_pref(src, out, progress=False)
    assert again.meta["source"]["read_from_cache"] == {"train": True}
    # a changed pickle invalidates the cache: the flag is needed again
    _lup_frame().iloc[:2].to_pickle(src / "train.pkl")
    with pytest.raises(DataError, match="--allow-pickle"):
        import_learn_user_pref(src, out, progress=False)


@pytest.mark.parametrize("edit, message, row", [
    (lambda f: f.drop(columns="reference_list_bad"), "missing columns", None),
    (lambda f: f.assign(label0=[0.2, 1.5, 0.0]), "not a number in", 2),
    (lambda f: f.assign(image1=["y", "y", "w"]), "same image", 2),
    (lambda f: f.assign(reference_list=[["a"], "a", []]), "not a list", 2),
])
def test_learn_user_pref_malformed(tmp_path, edit, message, row):
    path = tmp_path / "test.pkl"
    edit(_lup_frame()).to_pickle(path)
    with pytest.raises(DataError, match=message) as e:
        import_learn_user_pref(path, tmp_path / "out", allow_pickle=True, progress=False)
    assert e.value.path == str(path) and e.value.row == row and e.value.rule


# ------------------------------------------------------------------- ImageGem personal pairs
@pytest.fixture(scope="module")
def imagegem(tmp_path_factory):
    return import_imagegem(IMAGEGEM, tmp_path_factory.mktemp("ig") / "ig", progress=False)


def test_personal_pairs_on_imagegem_sample(imagegem, tmp_path):
    pairs = derive_personal_pairs(imagegem, pairs_per_user=2, seed=1, out=tmp_path / "p.parquet")
    images = imagegem.table("images").astype({"image_id": str, "user_id": str})
    creator = images.set_index("image_id")["user_id"]
    own = np.where(pairs["label"] == 1, pairs["image_a"], pairs["image_b"])
    other = np.where(pairs["label"] == 1, pairs["image_b"], pairs["image_a"])
    assert (creator[own].to_numpy() == pairs["user_id"].to_numpy()).all()
    assert (creator[other].to_numpy() != pairs["user_id"].to_numpy()).all()
    assert pairs.groupby("user_id").size().max() == 2
    assert set(pairs["label"]) == {0.0, 1.0}
    labels, _ = cluster_prompts(images, seed=1)
    cl = pd.Series(labels, index=images["image_id"])
    assert (cl[own].to_numpy() == cl[other].to_numpy()).all()
    assert (cl[own].to_numpy() == pairs["cluster"].to_numpy()).all()
    # same prompt, same cluster
    same = images.groupby("prompt")["image_id"].apply(list)
    assert all(len(set(cl[ids])) == 1 for ids in same)
    again = derive_personal_pairs(imagegem, pairs_per_user=2, seed=1)
    pd.testing.assert_frame_equal(pairs, again)
    assert json.loads((tmp_path / "p.json").read_text())["n_pairs"] == len(pairs)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), pairs,
                                  check_dtype=False)


# ----------------------------------------------------------------------------- correlations
def test_correlations_hand_computed():
    users = ["a", "a", "a", "b", "c", "c", "d", "d"]
    truth = [1, 2, 3, 5, 3, 3, 1, 2]
    score = [2, 4, 9, 0, 1, 2, 7, 7]
    sp, pe = spearman_per_user(users, truth, score), pearson_per_user(users, truth, score)
    # a: ranks agree -> rho 1; r = 7 / sqrt(2 * 26) (dx = -1,0,1; dy = -3,-1,4)
    # d: constant scores on varied ratings -> scored, rho = r = 0 (no association predicted)
    assert sp.user_ids.tolist() == pe.user_ids.tolist() == ["a", "d"]
    assert sp.values.tolist() == [1.0, 0.0] and sp.mean == 0.5
    assert pe.values[0] == pytest.approx(7 / np.sqrt(52), abs=1e-12) and pe.values[1] == 0.0
    assert sp.constant_score.tolist() == [False, True] and sp.n_constant_score == 1
    # b: one rating, c: equal ratings -> no order to predict: excluded, counted
    assert sp.excluded == pe.excluded == {"fewer_than_2": 1, "constant_rating": 1}
    assert (sp.n_users, sp.n_scored, sp.n_excluded) == (4, 2, 2)
    # ties: t = 1,2,3 s = 1,3,2 -> d = 0,1,1 -> 1 - 6*2/(3*8) = 0.5; pearson 1/2 too
    sp = spearman_per_user(["u"] * 3, [1, 2, 3], [1, 3, 2])
    assert sp.values[0] == pytest.approx(0.5) and sp.mean == pytest.approx(0.5)
    # tied ratings use average ranks: t = 1,1,2 -> ranks 1.5,1.5,3 ; s ranks 1,2,3
    assert spearman_per_user(["u"] * 3, [1, 1, 2], [0, 1, 2]).values[0] == pytest.approx(
        np.sqrt(3) / 2)


def test_correlations_match_scipy_on_random_data():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 25, 600).astype(str)
    truth = rng.integers(1, 8, 600).astype(float)
    score = rng.normal(size=600)
    sp, pe = spearman_per_user(users, truth, score), pearson_per_user(users, truth, score)
    assert len(sp.user_ids) == 25 and sp.n_excluded == 0
    for u, rho, r in zip(sp.user_ids, sp.values, pe.values, strict=True):
        m = users == u
        assert rho == pytest.approx(stats.spearmanr(truth[m], score[m]).statistic, abs=1e-12)
        assert r == pytest.approx(stats.pearsonr(truth[m], score[m]).statistic, abs=1e-12)


def test_ratings_to_pairs_and_pair_accuracy():
    f = pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 3, "image_id": list("wxyzpqr"),
                      "rating": [1, 2, 3, 3, 5, 5, 1]})
    keep = ratings_to_pairs(f, ties="keep", seed=3)
    assert len(keep) == 6 + 3 and (keep["label"] == 0.5).sum() == 2
    rating = dict(zip(f["image_id"], f["rating"], strict=True))
    ra, rb = keep["image_a"].map(rating), keep["image_b"].map(rating)
    assert (keep["label"] == np.where(ra > rb, 1.0, np.where(ra < rb, 0.0, 0.5))).all()
    assert {frozenset(p) for p in zip(keep["image_a"], keep["image_b"], strict=True)} == {
        frozenset(p) for p in [("w", "x"), ("w", "y"), ("w", "z"), ("x", "y"), ("x", "z"),
                               ("y", "z"), ("p", "q"), ("p", "r"), ("q", "r")]}
    assert len(ratings_to_pairs(f, seed=3)) == 7
    assert ratings_to_pairs(f, seed=3, max_pairs_per_user=2).groupby("user_id").size() \
        .to_dict() == {"a": 2, "b": 2}
    acc = pair_accuracy_per_user(f["user_id"], f["rating"], [1, 2, 3, 0, 0, 5, 0])
    # a: non-tied pairs w<x, w<y, w<z, x<y, x<z with scores 1<2, 1<3, 1>0 (x), 2<3, 2>0 (x)
    # -> 3/5; b: p>r with scores 0 = 0 (tie, 0.5), q>r with 5 > 0 (1) -> 0.75
    assert acc.set_index("user_id")["pair_accuracy"].to_dict() == {"a": 0.6, "b": 0.75}


class _Lookup:
    """A method whose utility is a fixed table (sign=-1 reverses it)."""

    name = "lookup"  # records are filed by name: a class name starting with '_' is not one

    def __init__(self, table: dict[tuple[str, str], float], sign: float = 1.0):
        self.table, self.sign = table, sign

    def fit(self, train, side):
        self.n_train_ = len(train)
        return self

    def score(self, user_ids, image_ids):
        return np.array([self.sign * self.table.get((u, i), 0.0)
                         for u, i in zip(user_ids, image_ids, strict=True)], np.float32)


def test_evaluate_ratings_seen_unseen(pamela, tmp_path):
    split = rating_split_from_column(pamela)
    truth = {(u, i): r for u, i, r in split.test[["user_id", "image_id", "rating"]]
             .itertuples(index=False)}
    out = evaluate_ratings(_Lookup(truth), split, n_boot=50, results_dir=tmp_path)
    m = out["metrics"]
    assert m["spearman_seen"] == m["pearson_seen"] == m["spearman_unseen"] == 1.0
    assert m["pair_accuracy"] == 1.0
    # P003's two test ratings are equal: excluded and counted, among the seen users
    assert out["excluded"]["seen"]["constant_rating"] == 1
    assert out["per_user"]["user_id"].tolist() == ["P001", "P002", "P005"]
    assert out["intervals"]["spearman_unseen"] == [1.0, 1.0]
    assert out["record"]["per_user"]["unseen"] == [False, False, True]
    assert out["path"].is_file()
    rev = evaluate_ratings(_Lookup(truth, -1.0), split, n_boot=50)["metrics"]
    assert rev["spearman"] == -1.0 and rev["pair_accuracy"] == 0.0


def test_make_rating_split_nested_few_shot():
    rng = np.random.default_rng(0)
    f = pd.DataFrame({"user_id": np.repeat([f"u{i}" for i in range(10)], 12),
                      "image_id": [f"i{j}" for j in range(120)],
                      "rating": rng.integers(1, 6, 120).astype(float)})
    split = make_rating_split(f, unseen_ratio=0.2, seed=1)
    assert split.meta["counts"]["unseen_users"] == 2 and len(split.test) == 10 * 2
    k2, k5 = split.few_shot(2), split.few_shot(5)
    unseen = set(split.unseen_users)
    rows = lambda d: set(map(tuple, d[d["user_id"].isin(unseen)].values.tolist()))  # noqa: E731
    assert len(rows(k2)) == 4 and rows(k2) <= rows(k5) and len(rows(k5)) == 10
    assert make_rating_split(f.sample(frac=1, random_state=3), unseen_ratio=0.2,
                             seed=1).fingerprint == split.fingerprint
