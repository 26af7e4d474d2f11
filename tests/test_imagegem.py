"""ImageGem import on the hand-made sample in the release layout (datasets/imagegem-sample)."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from benchmark.data.imagegem import IMAGES_COLUMNS, MODELS_COLUMNS, import_imagegem
from benchmark.errors import DataError

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "imagegem-sample"
IMAGES_FILE = Path("ImageGem-images/data/train-00000-of-00001.parquet")
MODELS_FILE = Path("ImageGem-models/data/train-00000-of-00001.parquet")


def _import(src: Path, out: Path, **options):
    return import_imagegem(src, out, progress=False, **options)


def _tables(ds) -> dict[str, pd.DataFrame]:
    return {t: ds.arrow(t).to_pandas() for t in ("users", "loras", "images", "interactions")}


def _kind_counts(inter: pd.DataFrame) -> dict[str, int]:
    return inter["kind"].value_counts().to_dict()


def _copy_sample(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SAMPLE, src, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    return src


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    ds = _import(SAMPLE, tmp_path_factory.mktemp("imagegem") / "ds")
    return ds, _tables(ds)


# --------------------------------------------------------------------------- the sample itself
def test_sample_has_exactly_the_release_columns():
    assert pq.read_schema(SAMPLE / IMAGES_FILE).names == list(IMAGES_COLUMNS)
    assert pq.read_schema(SAMPLE / MODELS_FILE).names == list(MODELS_COLUMNS)
    assert len(IMAGES_COLUMNS) == 29 and len(MODELS_COLUMNS) == 45
    assert pq.read_metadata(SAMPLE / IMAGES_FILE).num_rows == 38
    assert pq.read_metadata(SAMPLE / MODELS_FILE).num_rows == 20


def test_sample_script_reproduces_the_checked_in_files():
    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for rows, path in ((module.image_rows(), IMAGES_FILE), (module.model_rows(), MODELS_FILE)):
        made = pa.table({k: pa.array(v, module.TYPES.get(k)) for k, v in rows.items()})
        assert made.equals(pq.read_table(SAMPLE / path))


# --------------------------------------------------------------------------- default import
def test_counts(sample):
    ds, t = sample
    assert len(t["users"]) == 8
    assert len(t["loras"]) == 10
    assert len(t["images"]) == 28  # 29 images, one uses only an unknown LoRA
    assert _kind_counts(t["interactions"]) == {"generate": 27, "upload": 10, "create": 28}
    assert ds.meta["name"] == "imagegem"
    assert ds.meta["dropped"] == {
        "model_rows_without_version_id": 0,
        "duplicate_file_rows": 10,
        "image_rows_without_image_or_user": 0,
        "image_rows_without_lora": 0,
        "image_lora_refs_unknown_lora": 2,
        "unknown_loras": 1,
        "image_lora_refs_filtered_lora": 0,
        "duplicate_image_lora_rows": 1,
        "images_without_kept_lora": 1,
        "generate_without_timestamp": 0,
        "upload_without_timestamp": 0,
        "create_without_timestamp": 0,
    }
    assert ds.meta["options"] == {
        "primary_only": False, "base_models": None, "exclude_own_loras": False,
    }
    assert set(ds.meta["source"]["files"]) == {str(IMAGES_FILE), str(MODELS_FILE)}
    assert ds.verify() == []
    for entity in ("users", "loras", "images"):
        assert ds.ids(entity).is_unique


def test_generate_keeps_first_created_at_and_counts_images(sample):
    _, t = sample
    inter, images = t["interactions"], t["images"].set_index("image_id")
    gen = inter[inter["kind"] == "generate"].set_index(["user_id", "item_id"])
    assert not gen.index.duplicated().any()
    # 5000102 (2023-08-15) comes after 5000101 (2023-09-01) in the file but is earlier
    row = gen.loc[(images.loc["5000101", "user_id"], "201001")]
    assert row["timestamp"] == datetime(2023, 8, 15, 9, 0, 0)
    assert row["weight"] == 2
    row = gen.loc[(images.loc["5000120", "user_id"], "201002")]
    assert (row["timestamp"], row["weight"]) == (datetime(2023, 9, 19, 9, 0, 0), 3)
    # the duplicated (5000109, 201002) file row counts once
    row = gen.loc[(images.loc["5000109", "user_id"], "201002")]
    assert row["weight"] == 1
    assert gen["weight"].sum() == 35  # one per kept (image, LoRA) pair
    assert (inter.loc[inter["kind"] != "generate", "weight"] == 1).all()
    assert inter["timestamp"].is_monotonic_increasing


def test_images_and_their_loras(sample):
    _, t = sample
    images = t["images"].set_index("image_id")
    assert list(images.loc["5000125", "lora_ids"]) == ["201003", "201006", "201010"]
    assert list(images.loc["5000109", "lora_ids"]) == ["201002", "201007"]
    assert list(images.loc["5000112", "lora_ids"]) == ["201008"]  # 209999 is unknown
    assert "5000113" not in images.index
    assert images.loc["5000106", "created_at"] == datetime(2023, 9, 6, 22, 45, 10)
    assert images.loc["5000127", "nsfw"] == "Soft"
    assert {"url", "like_count", "heart_count", "prompt"} <= set(images.columns)
    create = t["interactions"].query("kind == 'create'")
    assert set(create["item_id"]) == set(images.index)
    assert (create["item_kind"] == "image").all()


def test_loras_pick_the_primary_file(sample):
    _, t = sample
    loras = t["loras"].set_index("lora_id")
    assert loras.loc["201004", "file_id"] == "300008"  # primary row comes second in the file
    assert loras.loc["201010", "file_id"] == "300019"  # no primary file: the first row
    assert loras.loc["201001", "file_id"] == "300001"
    assert list(loras.loc["201003", "tags"]) == ["style", "cyberpunk", "neon", "city"]
    assert list(loras.loc["201006", "trained_words"]) == []
    assert loras.loc["201003", "created_at"] == datetime(2023, 6, 20, 19, 42, 10)
    assert loras["base_model"].value_counts().to_dict() == {"SD 1.5": 5, "SDXL 1.0": 3, "Pony": 2}
    upload = t["interactions"].query("kind == 'upload'").set_index("item_id")
    assert (upload.loc[loras.index, "user_id"] == loras["creator_id"]).all()
    assert set(t["users"]["user_id"]) >= set(loras["creator_id"])


# --------------------------------------------------------------------------- options
def test_primary_only(tmp_path):
    ds = _import(SAMPLE, tmp_path / "ds", primary_only=True)
    t = _tables(ds)
    assert "201010" not in set(t["loras"]["lora_id"])
    assert len(t["loras"]) == 9
    assert len(t["images"]) == 26  # 5000118 and 5000124 used only 201010
    assert _kind_counts(t["interactions"]) == {"generate": 25, "upload": 9, "create": 26}
    assert ds.meta["dropped"]["loras_non_primary"] == 1
    assert ds.meta["dropped"]["image_lora_refs_filtered_lora"] == 4
    assert ds.meta["options"]["primary_only"] is True
    images = t["images"].set_index("image_id")
    assert list(images.loc["5000119", "lora_ids"]) == ["201006"]


def test_base_models(tmp_path):
    ds = _import(SAMPLE, tmp_path / "ds", base_models=["Pony"])
    t = _tables(ds)
    assert sorted(t["loras"]["lora_id"]) == ["201005", "201008"]
    assert sorted(t["images"]["image_id"]) == [
        "5000104", "5000112", "5000114", "5000115", "5000116", "5000129",
    ]
    assert len(t["users"]) == 5
    assert _kind_counts(t["interactions"]) == {"generate": 5, "upload": 2, "create": 6}
    assert set(t["interactions"].query("item_kind == 'lora'")["item_id"]) <= {"201005", "201008"}
    assert ds.meta["dropped"]["loras_other_base_model"] == 8
    assert ds.meta["options"]["base_models"] == ["Pony"]


def test_base_models_that_match_nothing(tmp_path):
    with pytest.raises(DataError, match="SD 1.5"):
        _import(SAMPLE, tmp_path / "ds", base_models=["SD1.5"])


def test_exclude_own_loras(tmp_path):
    ds = _import(SAMPLE, tmp_path / "ds", exclude_own_loras=True)
    t = _tables(ds)
    gen = t["interactions"].query("kind == 'generate'")
    creator = t["loras"].set_index("lora_id")["creator_id"]
    assert len(gen) == 21  # users 0, 1, 2, 3, 4 and 6 each used one LoRA of their own
    assert ds.meta["dropped"]["generate_own_lora"] == 6
    assert not (gen["item_id"].map(creator) == gen["user_id"]).any()
    # the images and uploads themselves stay
    assert _kind_counts(t["interactions"])["create"] == 28
    assert _kind_counts(t["interactions"])["upload"] == 10


# --------------------------------------------------------------------------- other layouts
def _assert_same_tables(a, b):
    for name in ("users", "loras", "images", "interactions"):
        assert a.arrow(name).equals(b.arrow(name)), name


def test_export_csv_layout(tmp_path, sample):
    src = tmp_path / "csv"
    src.mkdir()
    pacsv.write_csv(pq.read_table(SAMPLE / IMAGES_FILE), src / "images.csv")
    pacsv.write_csv(pq.read_table(SAMPLE / MODELS_FILE), src / "models.csv")
    ds = _import(src, tmp_path / "ds")
    _assert_same_tables(ds, sample[0])
    assert ds.meta["source"]["layout"] == {"images": "1 csv file(s)", "models": "1 csv file(s)"}


def test_export_parquet_layout(tmp_path, sample):
    src = tmp_path / "flat"
    src.mkdir()
    shutil.copy(SAMPLE / IMAGES_FILE, src / "images.parquet")
    shutil.copy(SAMPLE / MODELS_FILE, src / "models.parquet")
    _assert_same_tables(_import(src, tmp_path / "ds"), sample[0])


def test_several_shards(tmp_path, sample):
    """Hub layout with several parquet shards, and save_to_disk's Arrow stream shards."""
    images, models = pq.read_table(SAMPLE / IMAGES_FILE), pq.read_table(SAMPLE / MODELS_FILE)
    src = tmp_path / "hub"
    for table, data in (("ImageGem-images", images), ("ImageGem-models", models)):
        folder = src / table / "data"
        folder.mkdir(parents=True)
        cut = data.num_rows // 2
        for i, part in enumerate((data.slice(0, cut), data.slice(cut))):
            pq.write_table(part, folder / f"train-0000{i}-of-00002.parquet")
    (src / "ImageGem-images" / ".cache").mkdir()
    pq.write_table(images.slice(0, 3), src / "ImageGem-images" / ".cache" / "x.parquet")
    ds = _import(src, tmp_path / "ds")
    _assert_same_tables(ds, sample[0])
    assert ds.meta["source"]["layout"]["images"] == "2 parquet file(s)"

    disk = tmp_path / "disk"
    for table, data in (("ImageGem-images", images), ("ImageGem-models", models)):
        folder = disk / table / "train"
        folder.mkdir(parents=True)
        for i, part in enumerate((data.slice(0, 7), data.slice(7))):
            with pa.ipc.new_stream(folder / f"data-0000{i}-of-00002.arrow", data.schema) as w:
                w.write_table(part)
    _assert_same_tables(_import(disk, tmp_path / "ds2"), sample[0])


# --------------------------------------------------------------------------- errors
def test_missing_column(tmp_path):
    src = _copy_sample(tmp_path)
    path = src / IMAGES_FILE
    pq.write_table(pq.read_table(path).drop_columns(["seed", "userHash"]), path)
    with pytest.raises(DataError) as err:
        _import(src, tmp_path / "ds")
    text = str(err.value)
    assert str(path) in text and "seed" in text and "userHash" in text
    assert err.value.path == str(path)
    assert "29 columns" in err.value.rule
    assert not (tmp_path / "ds").exists()


def test_missing_model_column(tmp_path):
    src = _copy_sample(tmp_path)
    path = src / MODELS_FILE
    pq.write_table(pq.read_table(path).drop_columns(["primary"]), path)
    with pytest.raises(DataError, match="primary") as err:
        _import(src, tmp_path / "ds")
    assert err.value.path == str(path)


def test_truncated_parquet(tmp_path):
    src = _copy_sample(tmp_path)
    path = src / MODELS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        _import(src, tmp_path / "ds")
    assert err.value.path == str(path)
    assert "parquet" in str(err.value)


def test_bad_date(tmp_path):
    src = _copy_sample(tmp_path)
    path = src / IMAGES_FILE
    table = pq.read_table(path)
    dates = table["createdAt"].to_pylist()
    dates[5] = "2023-13-45 99:00:00"
    table = table.set_column(table.schema.get_field_index("createdAt"), "createdAt",
                             pa.array(dates))
    pq.write_table(table, path)
    with pytest.raises(DataError) as err:
        _import(src, tmp_path / "ds")
    assert (err.value.path, err.value.row) == (str(path), 6)
    assert "createdAt" in str(err.value) and "2023-13-45" in str(err.value)


def test_wrong_type(tmp_path):
    src = _copy_sample(tmp_path)
    path = src / IMAGES_FILE
    table = pq.read_table(path)
    i = table.schema.get_field_index("createdAt")
    pq.write_table(table.set_column(i, "createdAt", pa.array(range(table.num_rows))), path)
    with pytest.raises(DataError, match="createdAt") as err:
        _import(src, tmp_path / "ds")
    assert err.value.path == str(path)


def test_missing_table(tmp_path):
    src = tmp_path / "src"
    (src / "ImageGem-images").mkdir(parents=True)
    with pytest.raises(DataError, match="no .parquet or .arrow") as err:
        _import(src, tmp_path / "ds")
    assert err.value.path == str(src / "ImageGem-images") and "images.csv" in err.value.rule
    shutil.copytree(SAMPLE / "ImageGem-images", src / "ImageGem-images", dirs_exist_ok=True)
    with pytest.raises(DataError, match="no ImageGem-models table") as err:
        _import(src, tmp_path / "ds")
    assert err.value.path == str(src) and "models.parquet" in err.value.rule


def test_type_variants(tmp_path, sample):
    """Float ids, tz-aware timestamps, boolean flags and list tags read the same."""
    src = _copy_sample(tmp_path)
    images = pq.read_table(src / IMAGES_FILE)
    models = pq.read_table(src / MODELS_FILE)

    def put(table, name, values):
        return table.set_column(table.schema.get_field_index(name), name, values)

    images = put(images, "imageId", images["imageId"].cast(pa.float64()))
    images = put(images, "modelVersionId", images["modelVersionId"].cast(pa.string()))
    created = pc.strptime(images["createdAt"], format="%Y-%m-%d %H:%M:%S", unit="ms")
    images = put(images, "createdAt", created.cast(pa.timestamp("ms", tz="UTC")))
    prompts = images["prompt"].to_pylist()
    prompts[0] = "NA"
    images = put(images, "prompt", pa.array(prompts))
    models = put(models, "primary", models["primary"].cast(pa.bool_()))
    models = put(models, "tags", pc.split_pattern(models["tags"], ", "))
    published = models["publishedAt"].to_pylist()
    published = [v.replace("T", " ").replace(".000Z", "") for v in published]
    models = put(models, "publishedAt", pa.array(published))
    pq.write_table(images, src / IMAGES_FILE)
    pq.write_table(models, src / MODELS_FILE)
    ds = _import(src, tmp_path / "ds")
    for name in ("users", "loras", "interactions"):
        assert ds.arrow(name).equals(sample[0].arrow(name)), name
    got = ds.arrow("images").drop_columns(["prompt"])
    assert got.equals(sample[0].arrow("images").drop_columns(["prompt"]))

    # the same data as CSV: "NA" stays a prompt, not a missing value
    flat = tmp_path / "csv"
    flat.mkdir()
    pacsv.write_csv(images, flat / "images.csv")
    pacsv.write_csv(models.drop_columns(["tags"]).append_column(
        "tags", pq.read_table(SAMPLE / MODELS_FILE)["tags"]), flat / "models.csv")
    first = _import(flat, tmp_path / "ds2").arrow("images").slice(0, 1).to_pylist()[0]
    assert first["prompt"] == "NA"
