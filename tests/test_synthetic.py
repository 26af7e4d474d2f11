"""The synthetic generator: speed, determinism, schema, integrity and the statistics it promises."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pytest

from benchmark.data.store import Dataset
from benchmark.data.synthetic import ENCODER, SCALES, synthesize
from benchmark.data.synthetic_draws import orthonormal_columns
from benchmark.schema import ID_COLUMN, TABLES

TRUTH = {
    "user_taste_final": ("users", True),
    "lora_style": ("loras", True),
    "image_style": ("images", True),
    "lora_log_popularity": ("loras", False),
    "image_log_popularity": ("images", False),
}
#: a world big enough for statistics, still built in well under a second
MID = replace(SCALES["tiny"], name="mid", n_users=300, n_loras=1_000, n_images=6_000, n_clusters=8)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return synthesize("tiny", tmp_path_factory.mktemp("tiny") / "ds", seed=0, progress=False)


@pytest.fixture(scope="module")
def mid(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return synthesize(MID, tmp_path_factory.mktemp("mid") / "ds", seed=3, progress=False)


def test_tiny_builds_fast(tmp_path: Path) -> None:
    synthesize("tiny", tmp_path / "warm", progress=False)  # imports and caches out of the timing
    start = time.perf_counter()
    synthesize("tiny", tmp_path / "ds", seed=5, progress=False)
    elapsed = time.perf_counter() - start
    print(f"tiny build: {elapsed:.3f} s")
    assert elapsed < 3.0


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = _digests(synthesize("tiny", tmp_path / "a", seed=7, progress=False).path)
    b = _digests(synthesize("tiny", tmp_path / "b", seed=7, progress=False).path)
    c = _digests(synthesize("tiny", tmp_path / "c", seed=8, progress=False).path)
    assert a == b
    assert len(a) >= 13
    assert set(a) == set(c)
    differing = {k for k in a if a[k] != c[k]}
    assert {
        "interactions.parquet",
        "images.parquet",
        "embeddings/synthetic-clip/image.npy",
        "truth/user_taste_final.npy",
    } <= differing


#: builds a data set in a fresh interpreter; prints the BLAS pools' thread counts it ran with
_BUILD = """
import sys
from benchmark.data.synthetic import synthesize
synthesize(sys.argv[1], sys.argv[2], seed=int(sys.argv[3]), progress=False)
try:
    from threadpoolctl import threadpool_info
except ImportError:
    threadpool_info = list
print([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
"""


def _build_with_blas_threads(out: Path, threads: int, scale: str = "tiny", seed: int = 0) -> dict:
    """Build ``scale`` in a subprocess whose BLAS pools have ``threads`` threads."""
    env = dict(os.environ)  # OPENBLAS_CORETYPE and the rest are inherited as they are
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, scale, str(out), str(seed)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    pools = json.loads(done.stdout.strip().splitlines()[-1] or "[]")
    assert all(n <= threads for n in pools), pools
    return json.loads((out / "dataset.json").read_text())["files"]


def test_same_bytes_whatever_the_blas_thread_count(tmp_path: Path) -> None:
    """1 and 2 BLAS threads give the same files (the generator uses no BLAS/LAPACK).

    Measured with OpenBLAS 0.3.31: with its Haswell kernel (AVX2 CPUs; the issue's
    b1739259406f6eaf) the old ``style @ proj`` (32 -> 512) summed differently on 1 and 2
    threads from 32 rows on (m*n*k = 2**19), so tiny (150 LoRAs, 1,500 images) is enough; this
    test failed there on the old code. Its SkylakeX kernel (AVX-512) is split-invariant at these
    sizes, so there the old code passed. ``OPENBLAS_CORETYPE`` is inherited, never set.
    """
    one = _build_with_blas_threads(tmp_path / "one", 1)
    two = _build_with_blas_threads(tmp_path / "two", 2)
    assert len(one) >= 13
    assert {k for k in one if one[k] != two.get(k)} == set()


#: files_sha256 (as records carry it) of synthetic-tiny, seed 0, with the pinned numpy and pyarrow
TINY_FILES_SHA256 = "6fca23810db7bfa4b5d7b583279104c4d884ba12e1538f836304909910a10b20"


def test_tiny_bytes_are_the_pinned_ones(tmp_path: Path) -> None:
    """A fresh build gives the committed checksum on any CPU (update it with GENERATOR_VERSION)."""
    pins = dict(
        line.strip().split("==", 1)
        for line in (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().split()
        if "==" in line
    )
    if (np.__version__, pyarrow.__version__) != (pins.get("numpy"), pins.get("pyarrow")):
        pytest.skip("numpy/pyarrow are not the pinned versions: other bytes are expected")
    files = synthesize("tiny", tmp_path / "ds", seed=0, progress=False).meta["files"]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    assert digest == TINY_FILES_SHA256


def test_orthonormal_columns_is_lapacks_q_without_lapack() -> None:
    rng = np.random.default_rng(4)
    for shape in ((512, 33), (7, 7), (40, 3), (5, 1)):
        a = rng.standard_normal(shape)
        q = orthonormal_columns(a)
        assert q.shape == shape
        np.testing.assert_allclose(q, np.linalg.qr(a)[0], atol=1e-12)  # same signs too
        np.testing.assert_allclose(q.T @ q, np.eye(shape[1]), atol=1e-12)
    a = np.triu(rng.standard_normal((6, 4)))  # zero below the diagonal: reflections are I
    np.testing.assert_allclose(orthonormal_columns(a), np.linalg.qr(a)[0], atol=1e-12)


def test_schema_embeddings_and_truth(tiny: Dataset) -> None:
    cfg = SCALES["tiny"]
    assert tiny.meta["name"] == "synthetic-tiny" and tiny.meta["source"] == "synthetic"
    assert tiny.meta["seed"] == 0 and tiny.meta["config"]["n_users"] == cfg.n_users
    assert tiny.verify() == []
    for name in TABLES:
        if name == "ratings":
            assert not tiny.has_table(name)
            continue
        frame = tiny.table(name)
        assert set(TABLES[name]) <= set(frame.columns), name
        assert len(frame) > 0, name
    counts = {"users": cfg.n_users, "loras": cfg.n_loras, "images": cfg.n_images}
    for entity, n in counts.items():
        assert len(tiny.ids(entity)) == n
    assert tiny.ids("users")[12] == "u0000012" and tiny.ids("images")[3] == "i00000003"
    assert tiny.encoders() == [ENCODER]
    for kind, entity in (("image", "images"), ("lora", "loras")):
        emb = tiny.embeddings(ENCODER, kind)
        assert emb.shape == (counts[entity], 512) and emb.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        ids = pd.read_parquet(tiny.path / "embeddings" / ENCODER / f"{kind}.ids.parquet")["id"]
        assert list(ids) == list(tiny.ids(entity))
    arrays, params = tiny.truth()
    assert set(arrays) == set(TRUTH)
    for key, (entity, is_style) in TRUTH.items():
        want = (counts[entity], cfg.d_style) if is_style else (counts[entity],)
        assert arrays[key].shape == want and arrays[key].dtype == np.float32, key
        if is_style:
            np.testing.assert_allclose(np.linalg.norm(arrays[key], axis=1), 1.0, atol=1e-5)
        else:
            assert abs(np.exp(arrays[key].astype(np.float64)).sum() - 1.0) < 1e-3
    assert isinstance(params["beta"], float) and params["config"]["n_images"] == cfg.n_images


def _check_integrity(ds: Dataset) -> None:
    users = set(ds.ids("users"))
    loras = ds.arrow("loras").to_pandas()
    images = ds.arrow("images").to_pandas()
    inter = ds.arrow("interactions").to_pandas()
    assert set(inter["kind"]) == {"upload", "generate", "create", "like"}
    assert inter["user_id"].isin(users).all()
    for kind, table in (("lora", loras), ("image", images)):
        rows = inter[inter["item_kind"] == kind]
        assert rows["item_id"].isin(set(table[ID_COLUMN[f"{kind}s"]])).all()
    assert set(inter.loc[inter["item_kind"] == "lora", "kind"]) == {"upload", "generate"}
    assert loras["creator_id"].isin(users).all() and images["user_id"].isin(users).all()
    used = images[["image_id", "user_id", "created_at", "lora_ids"]].explode("lora_ids")
    assert used["lora_ids"].notna().all() and used["lora_ids"].isin(set(loras["lora_id"])).all()
    assert images["lora_ids"].map(len).between(1, 3).all()
    assert images["lora_ids"].map(lambda x: len(set(x)) == len(x)).all()
    # a LoRA is used only after it was created
    made = used.merge(loras[["lora_id", "created_at"]], left_on="lora_ids", right_on="lora_id")
    assert (made["created_at_x"] >= made["created_at_y"]).all()

    likes = inter[inter["kind"] == "like"].merge(
        images[["image_id", "user_id", "created_at"]],
        left_on="item_id",
        right_on="image_id",
        suffixes=("", "_image"),
    )
    assert len(likes) == (inter["kind"] == "like").sum() > 0
    assert (likes["user_id"] != likes["user_id_image"]).all()
    assert (likes["timestamp"] >= likes["created_at"]).all()
    assert not likes.duplicated(["user_id", "item_id"]).any()

    create = inter[inter["kind"] == "create"]
    pd.testing.assert_frame_equal(
        create[["user_id", "item_id", "timestamp"]].reset_index(drop=True),
        images[["user_id", "image_id", "created_at"]].set_axis(
            ["user_id", "item_id", "timestamp"], axis=1
        ),
    )
    upload = inter[inter["kind"] == "upload"]
    assert list(upload["user_id"]) == list(loras["creator_id"])
    assert list(upload["timestamp"]) == list(loras["created_at"])

    prefs = ds.arrow("preferences").to_pandas()
    assert prefs["user_id"].isin(users).all()
    assert prefs["image_a"].isin(set(images["image_id"])).all()
    assert prefs["image_b"].isin(set(images["image_id"])).all()
    assert (prefs["image_a"] != prefs["image_b"]).all()
    assert set(prefs["label"]) <= {0.0, 1.0}


def _check_generate(ds: Dataset) -> None:
    inter = ds.arrow("interactions").to_pandas()
    gen = inter[inter["kind"] == "generate"]
    assert not gen.duplicated(["user_id", "item_id"]).any()
    images = ds.arrow("images").to_pandas().explode("lora_ids")
    uses = images.groupby(["user_id", "lora_ids"]).agg(
        n=("image_id", "size"), first=("created_at", "min")
    )
    got = gen.set_index(["user_id", "item_id"]).sort_index()
    uses = uses.sort_index()
    assert list(got.index) == list(uses.index)
    np.testing.assert_array_equal(got["weight"].to_numpy(), uses["n"].to_numpy())
    assert (got["timestamp"].to_numpy() == uses["first"].to_numpy()).all()


def test_referential_integrity(tiny: Dataset) -> None:
    _check_integrity(tiny)


def test_generate_is_deduplicated(tiny: Dataset) -> None:
    _check_generate(tiny)


def test_small_chunks_give_valid_data(tmp_path: Path) -> None:
    cfg = replace(SCALES["tiny"], chunk_images=200, chunk_likes=150, block=64)
    ds = synthesize(cfg, tmp_path / "ds", progress=False)
    assert len(ds.ids("images")) == cfg.n_images
    _check_integrity(ds)
    _check_generate(ds)


def test_counts_are_realistic(mid: Dataset) -> None:
    inter = mid.arrow("interactions").to_pandas()
    for kind in ("generate", "like"):
        per_user = inter[inter["kind"] == kind].groupby("user_id").size()
        per_user = per_user.reindex(mid.ids("users"), fill_value=0)
        assert (per_user >= 5).mean() > 0.9, kind
    prompts = mid.arrow("images", ["prompt"]).column("prompt")
    assert 0.5 < len(prompts.unique()) / len(prompts) < 0.7


def test_popularity_is_power_law(mid: Dataset) -> None:
    inter = mid.arrow("interactions").to_pandas()
    gen = inter[inter["kind"] == "generate"]
    per_lora = np.sort(gen.groupby("item_id").size().reindex(mid.ids("loras"), fill_value=0))
    top = per_lora[::-1][: len(per_lora) // 10].sum() / per_lora.sum()
    print(f"top 10% of LoRAs hold {top:.2f} of generate rows")
    assert top > 0.4


def test_oracle_beats_popularity_on_last_lora(mid: Dataset) -> None:
    inter = mid.arrow("interactions").to_pandas()
    gen = inter[inter["kind"] == "generate"].sort_values(["user_id", "timestamp", "item_id"])
    user = mid.ids("users").get_indexer(gen["user_id"])
    lora = mid.ids("loras").get_indexer(gen["item_id"])
    last = np.r_[user[1:] != user[:-1], True]
    test_user, test_lora = user[last], lora[last]
    n_loras = len(mid.ids("loras"))
    seen = np.zeros((len(mid.ids("users")), n_loras), bool)
    seen[user[~last], lora[~last]] = True
    seen = seen[test_user]
    arrays, params = mid.truth()
    oracle = (
        params["beta"] * arrays["user_taste_final"][test_user] @ arrays["lora_style"].T
        + arrays["lora_log_popularity"]
    )
    popular = np.broadcast_to(np.bincount(lora[~last], minlength=n_loras).astype(float), seen.shape)

    def hit_rate(score: np.ndarray, k: int = 10) -> float:
        score = np.where(seen, -np.inf, score)
        target = score[np.arange(len(score)), test_lora]
        rank = (score > target[:, None]).sum(axis=1)
        return float((rank < k).mean())

    hr_oracle, hr_pop = hit_rate(oracle), hit_rate(popular)
    print(f"HitRate@10 oracle {hr_oracle:.3f} popularity {hr_pop:.3f}")
    assert hr_oracle > 1.5 * hr_pop and hr_oracle - hr_pop > 0.1
