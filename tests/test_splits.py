"""Splits: hand-checked assignments, fingerprints (whole-split and per-track) recomputed
independently, saved folders."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from benchmark.errors import DataError
from benchmark.splits import Split, SplitConfig, load_split, make_split, track_fingerprint


def rows(split, part, kind):
    frame = split.part(part, kind)
    return sorted(zip(frame["user_id"], frame["item_id"], strict=True))


def test_leave_last_out_by_hand(toy):
    split = make_split(toy, SplitConfig(protocol="leave-last-out"))
    assert rows(split, "test", "lora") == [("u1", "l4"), ("u2", "l1"), ("u3", "l3")]
    assert rows(split, "valid", "lora") == [("u1", "l3"), ("u2", "l5"), ("u3", "l2")]
    # u1's repeated l1 (days 1 and 5) is one row at day 1; u4 (2 rows) is dropped
    assert rows(split, "train", "lora") == [("u1", "l1"), ("u1", "l2"), ("u2", "l2"),
                                            ("u2", "l3"), ("u3", "l1")]
    assert rows(split, "test", "image") == [("u1", "i5"), ("u2", "i5"), ("u3", "i6")]
    stats = split.meta["tracks"]["lora-rec"]
    assert stats["duplicates_dropped"] == 1
    assert stats["users_dropped_min_history"] == 1
    assert stats["interaction_kind"] == "generate"
    assert split.meta["tracks"]["image-rec"]["interaction_kind"] == "like"
    train_l1 = split.part("train", "lora")
    assert train_l1.loc[(train_l1.user_id == "u1") & (train_l1.item_id == "l1"),
                        "timestamp"].iloc[0] == pd.Timestamp("2024-01-02")


def test_every_user_keeps_a_training_row(toy):
    split = make_split(toy, SplitConfig(protocol="leave-last-out", min_history=2))
    # u4 has two LoRAs: one test row, no validation row, one training row
    assert ("u4", "l2") in rows(split, "test", "lora")
    assert ("u4", "l5") in rows(split, "train", "lora")
    assert not [r for r in rows(split, "valid", "lora") if r[0] == "u4"]
    single = make_split(toy, SplitConfig(protocol="temporal", min_history=1, test_ratio=0.9))
    assert set(single.part("train", "lora")["user_id"]) >= set(single.part("test", "lora")
                                                                ["user_id"])


def test_no_valid_part(toy):
    split = make_split(toy, SplitConfig(protocol="leave-last-out", valid=False))
    assert len(split.part("valid")) == 0
    assert ("u1", "l3") in rows(split, "train", "lora")


def test_temporal_ratios(toy):
    split = make_split(toy, SplitConfig(protocol="temporal", test_ratio=0.34, valid_ratio=0.01,
                                        min_history=3, tracks=("lora-rec",)))
    # u1: 4 rows -> test round(1.36)=1, valid max(1, 0)=1; u2: 4 -> 1, 1; u3: 3 -> 1, 1
    assert split.meta["counts"] == {"train": 5, "valid": 3, "test": 3}
    for user in ("u1", "u2", "u3"):
        part = {p: split.part(p, "lora") for p in ("train", "valid", "test")}
        t_train = part["train"].loc[part["train"].user_id == user, "timestamp"].max()
        t_test = part["test"].loc[part["test"].user_id == user, "timestamp"].min()
        assert t_train < t_test


def test_random_is_seeded(toy):
    a = make_split(toy, SplitConfig(protocol="random", seed=1))
    b = make_split(toy, SplitConfig(protocol="random", seed=1))
    assert a.fingerprint == b.fingerprint
    fingerprints = {make_split(toy, SplitConfig(protocol="random", seed=s)).fingerprint
                    for s in range(6)}
    assert len(fingerprints) > 1


def test_cold_start_items_unseen(toy):
    split = make_split(toy, SplitConfig(protocol="cold-start", cold_item_ratio=0.4,
                                        min_history=1, seed=3))
    for kind in ("lora", "image"):
        train_items = set(split.part("train", kind)["item_id"])
        for part in ("valid", "test"):
            assert not train_items & set(split.part(part, kind)["item_id"])
    assert len(split.part("test")) > 0


def independent_fingerprint(folder) -> str:
    """Recompute the fingerprint with plain pandas + hashlib, as a user would."""
    lines = []
    for part in ("train", "valid", "test"):
        frame = pd.read_parquet(folder / f"{part}.parquet")
        secs = frame["timestamp"].astype("datetime64[s]").astype("int64")
        for row, ts in zip(frame.itertuples(index=False), secs, strict=True):
            lines.append(f"{part}\t{row.item_kind}\t{row.user_id}\t{row.item_id}\t{ts}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def test_saved_folder_and_fingerprint(toy, tmp_path):
    split = make_split(toy, SplitConfig())
    folder = split.save(tmp_path / "split")
    assert sorted(p.name for p in folder.iterdir()) == [
        "catalogue.parquet", "split.json", "test.parquet", "train.parquet", "valid.parquet"]
    assert independent_fingerprint(folder) == split.fingerprint
    again = load_split(folder)
    assert again.fingerprint == split.fingerprint
    assert list(again.items("lora")) == ["l1", "l2", "l3", "l4", "l5"]


def independent_track_fingerprint(folder, item_kind: str) -> str:
    """A track's fingerprint with plain pandas + hashlib, following the documented rule:
    its sorted row lines, then ``catalogue\titem_kind\titem_id\n`` in catalogue order."""
    lines = []
    for part in ("train", "valid", "test"):
        frame = pd.read_parquet(folder / f"{part}.parquet")
        frame = frame[frame["item_kind"] == item_kind]
        secs = frame["timestamp"].astype("datetime64[s]").astype("int64")
        for row, ts in zip(frame.itertuples(index=False), secs, strict=True):
            lines.append(f"{part}\t{row.item_kind}\t{row.user_id}\t{row.item_id}\t{ts}\n")
    catalogue = pd.read_parquet(folder / "catalogue.parquet")
    items = catalogue.loc[catalogue["item_kind"] == item_kind, "item_id"]
    text = "".join(sorted(lines)) + "".join(f"catalogue\t{item_kind}\t{i}\n" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()


def test_track_fingerprints_recomputed_independently(toy, tmp_path):
    split = make_split(toy, SplitConfig())
    folder = split.save(tmp_path / "split")
    meta = json.loads((folder / "split.json").read_text())
    for track, kind in (("lora-rec", "lora"), ("image-rec", "image")):
        expected = independent_track_fingerprint(folder, kind)
        assert split.track_fingerprint(track) == expected
        assert meta["tracks"][track]["fingerprint"] == expected
        assert load_split(folder).track_fingerprint(track) == expected
    assert split.track_fingerprint("lora-rec") != split.track_fingerprint("image-rec")
    assert split.track_fingerprint("lora-rec") != split.fingerprint
    with pytest.raises(KeyError, match="not part of this split"):
        make_split(toy, SplitConfig(tracks=("lora-rec",))).track_fingerprint("image-rec")


@pytest.mark.parametrize("protocol", ["leave-last-out", "random", "cold-start"])
def test_track_fingerprint_does_not_depend_on_the_other_tracks(toy, protocol):
    config = {"protocol": protocol, "min_history": 1, "seed": 2}
    alone = make_split(toy, SplitConfig(tracks=("lora-rec",), **config))
    both = make_split(toy, SplitConfig(tracks=("lora-rec", "image-rec"), **config))
    # the whole-split fingerprint spans every track: it differs ...
    assert alone.fingerprint != both.fingerprint
    # ... the lora-rec one is the same data, so the same fingerprint
    assert alone.track_fingerprint("lora-rec") == both.track_fingerprint("lora-rec")


def test_fake_loras_in_the_catalogue_change_the_fingerprint(toy, tmp_path):
    split = make_split(toy, SplitConfig())
    before = split.track_fingerprint("lora-rec")
    fake = pd.DataFrame({"item_kind": "lora", "item_id": [f"fake{i}" for i in range(5000)]})
    grown = Split(train=split.train, valid=split.valid, test=split.test,
                  catalogue=pd.concat([split.catalogue, fake], ignore_index=True),
                  meta={**split.meta, "tracks": {t: {k: v for k, v in stats.items()
                                                     if k != "fingerprint"}
                                                 for t, stats in split.meta["tracks"].items()}})
    assert track_fingerprint(grown, "lora-rec") != before
    assert grown.track_fingerprint("lora-rec") != before
    # the other track's candidates are untouched, and so is its fingerprint
    assert grown.track_fingerprint("image-rec") == split.track_fingerprint("image-rec")
    # the same rows in another engine order are another ranking pool (ties break by index)
    shuffled = Split(train=split.train, valid=split.valid, test=split.test,
                     catalogue=split.catalogue.iloc[::-1].reset_index(drop=True))
    assert track_fingerprint(shuffled, "lora-rec") != before

    # a saved folder whose catalogue was edited is refused
    folder = split.save(tmp_path / "split")
    catalogue = pd.read_parquet(folder / "catalogue.parquet")
    pd.concat([catalogue, fake], ignore_index=True).to_parquet(folder / "catalogue.parquet")
    with pytest.raises(DataError, match="lora-rec rows or catalogue do not match"):
        load_split(folder)


def test_folder_written_before_track_fingerprints_still_loads(toy, tmp_path):
    split = make_split(toy, SplitConfig())
    folder = split.save(tmp_path / "split")
    meta = json.loads((folder / "split.json").read_text())
    for stats in meta["tracks"].values():
        del stats["fingerprint"]
    (folder / "split.json").write_text(json.dumps(meta))
    again = load_split(folder)
    assert again.track_fingerprint("lora-rec") == split.track_fingerprint("lora-rec")


def test_tampered_split_is_refused(toy, tmp_path):
    folder = make_split(toy, SplitConfig()).save(tmp_path / "split")
    test = pd.read_parquet(folder / "test.parquet")
    test.loc[0, "item_id"] = "l2"
    test.to_parquet(folder / "test.parquet")
    with pytest.raises(DataError, match="fingerprint"):
        load_split(folder)


def test_bad_config():
    with pytest.raises(ValueError, match="protocol"):
        SplitConfig(protocol="weekly")
    with pytest.raises(KeyError, match="unknown track"):
        SplitConfig(tracks=("music-rec",))
    with pytest.raises(ValueError, match="test_ratio"):
        SplitConfig(protocol="temporal", test_ratio=1.5)
