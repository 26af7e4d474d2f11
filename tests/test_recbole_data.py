"""RecBole atomic files: MovieLens-100K from ../shared/data, plus small hand-written files."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from benchmark.data.recbole import import_recbole, read_atomic
from benchmark.errors import DataError

ML100K = Path(
    os.environ.get(
        "GEMBENCH_ML100K", Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
    )
)
needs_ml100k = pytest.mark.skipif(
    not (ML100K / "ml-100k.inter").is_file(),
    reason=f"MovieLens-100K atomic files not found at {ML100K} (set GEMBENCH_ML100K; "
           "the data stays outside the repository, see shared/data/README.md)",
)


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return import_recbole(ML100K, tmp_path_factory.mktemp("recbole") / "ml-100k", progress=False)


# --------------------------------------------------------------------------- MovieLens-100K
@needs_ml100k
def test_ml100k_counts(ml100k):
    assert ml100k.name == "ml-100k"
    assert ml100k.meta["tables"] == {
        "users": {"rows": 943},
        "loras": {"rows": 1682},
        "images": {"rows": 0},
        "interactions": {"rows": 100000},
    }
    inter = ml100k.arrow("interactions").to_pandas()
    assert set(inter["kind"]) == {"rate"} and set(inter["item_kind"]) == {"lora"}
    assert inter["weight"].sum() == 352986  # mean rating 3.52986
    assert inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1682
    assert ml100k.meta["counts"]["loras_only_in_inter"] == 0
    assert ml100k.meta["counts"]["users_only_in_inter"] == 0
    assert ml100k.ids("users").is_unique and ml100k.ids("loras").is_unique
    assert ml100k.verify() == []


@needs_ml100k
def test_ml100k_known_rows(ml100k):
    first = ml100k.arrow("interactions").slice(0, 1).to_pylist()[0]
    assert first == {
        "user_id": "196", "item_id": "242", "item_kind": "lora", "kind": "rate",
        "timestamp": datetime(1997, 12, 4, 15, 55, 49), "weight": 3.0,
    }
    toy = ml100k.arrow("loras").slice(0, 1).to_pylist()[0]
    assert toy["lora_id"] == "1"
    assert toy["tags"] == ["Animation", "Children's", "Comedy"]
    assert toy["movie_title"] == ["Toy", "Story"]  # token_seq, as RecBole splits it
    assert toy["release_year"] == "1995"
    assert toy["creator_id"] is None and toy["base_model"] is None
    user = ml100k.arrow("users").slice(0, 1).to_pylist()[0]
    assert user == {"user_id": "1", "age": "24", "gender": "M", "occupation": "technician",
                    "zip_code": "85711"}


# --------------------------------------------------------------------------- small files
INTER = "u:token\ti:token\tr:float\tt:float\n" "a\tx\t4\t10\n" "b\ty\t2.5\t20.9\n" "a\tz\t\t30\n"


def test_custom_fields_and_items_only_in_inter(tmp_path):
    src = tmp_path / "toy"
    _write(src, "toy.inter", INTER)
    _write(src, "toy.item", "i:token\tgenre:token\tvec:float_seq\n" "x\tdrama\t1 2\n" "w\t\t\n")
    ds = import_recbole(src, tmp_path / "ds", user_field="u", item_field="i",
                        rating_field="r", time_field="t", tag_field="genre", progress=False)
    loras = ds.arrow("loras").to_pylist()
    assert [r["lora_id"] for r in loras] == ["x", "w", "y", "z"]
    assert [r["tags"] for r in loras] == [["drama"], [], [], []]
    assert loras[0]["vec"] == [1.0, 2.0] and loras[1]["vec"] == []  # empty seq: empty list
    assert ds.meta["counts"]["loras_only_in_inter"] == 2
    inter = ds.arrow("interactions").to_pydict()
    assert inter["weight"] == [4.0, 2.5, 1.0]  # a missing rating counts 1
    assert inter["timestamp"][1] == datetime(1970, 1, 1, 0, 0, 20)
    assert [r["user_id"] for r in ds.arrow("users").to_pylist()] == ["a", "b"]


def test_no_rating_no_time_and_image_items(tmp_path):
    src = tmp_path / "plain"
    _write(src, "plain.inter", "user_id:token\titem_id:token\n" "1\t7\n" "2\t7\n")
    ds = import_recbole(src, tmp_path / "ds", item_kind="image", progress=False)
    assert ds.arrow("interactions")["weight"].to_pylist() == [1.0, 1.0]
    assert ds.arrow("interactions")["item_kind"].to_pylist() == ["image", "image"]
    assert ds.arrow("interactions")["timestamp"].null_count == 2
    assert ds.arrow("images")["image_id"].to_pylist() == ["7"]
    assert ds.arrow("loras").num_rows == 0


def test_name_from_the_only_inter_file(tmp_path):
    src = tmp_path / "folder"
    _write(src, "other.inter", "user_id:token\titem_id:token\n1\t2\n")
    assert import_recbole(src, tmp_path / "ds", progress=False).name == "other"
    with pytest.raises(DataError, match="missing.inter"):
        import_recbole(src, tmp_path / "ds", name="missing", progress=False)


def test_wrong_column_count(tmp_path):
    path = _write(tmp_path / "bad", "bad.inter",
                  "user_id:token\titem_id:token\trating:float\n1\t2\t3\n4\t5\n6\t7\t8\n")
    with pytest.raises(DataError) as err:
        import_recbole(tmp_path / "bad", tmp_path / "ds", progress=False)
    assert err.value.path == str(path)
    assert err.value.row == 2 and "line 3" in str(err.value)
    assert "expected 3" in str(err.value)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("header", ["user_id\titem_id:token", "user_id:token\titem_id:int",
                                    "user_id:token\tuser_id:token"])
def test_malformed_header(tmp_path, header):
    path = _write(tmp_path, "h.inter", header + "\n1\t2\n")
    with pytest.raises(DataError, match="line 1") as err:
        read_atomic(path)
    assert err.value.path == str(path)
    assert "name:type" in err.value.rule


def test_bad_float_and_missing_id_field(tmp_path):
    path = _write(tmp_path / "f", "f.inter", "user_id:token\titem_id:token\trating:float\n"
                  "1\t2\t3\n1\t3\tfive\n")
    with pytest.raises(DataError, match="five") as err:
        import_recbole(tmp_path / "f", tmp_path / "ds", progress=False)
    assert (err.value.path, err.value.row) == (str(path), 2)
    path = _write(tmp_path / "g", "g.inter", "uid:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="user_field"):
        import_recbole(tmp_path / "g", tmp_path / "ds", progress=False)


def test_duplicate_item_in_feature_file(tmp_path):
    src = tmp_path / "d"
    _write(src, "d.inter", "user_id:token\titem_id:token\n1\t2\n")
    path = _write(src, "d.item", "item_id:token\n2\n3\n2\n")
    with pytest.raises(DataError, match="duplicate") as err:
        import_recbole(src, tmp_path / "ds", progress=False)
    assert (err.value.path, err.value.row) == (str(path), 3)
