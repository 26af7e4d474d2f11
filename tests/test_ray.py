"""The Ray engine (issue #10) writes what the local engine writes: stores, records, tunings.

One local Ray (2 CPUs) is started for the whole module: its start-up costs ~10 s.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from benchmark import distributed as D  # noqa: E402
from benchmark import embed as E  # noqa: E402
from benchmark.data.synthetic import synthesize  # noqa: E402
from benchmark.runner import run_benchmark  # noqa: E402
from benchmark.tuning import tune  # noqa: E402

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
SLUG = "open_clip-gem-tiny-none"
TIMING = {"created_utc", "last_run_seconds"}  # the only metadata allowed to differ


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("cfg")
    (folder / "gem-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "gem-tiny.json")
    torch.manual_seed(0)
    return E.load_encoder("open_clip:gem-tiny:none", device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(10):
        arr = rng.integers(0, 256, (24 + i, 20 + 2 * i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    (folder / "img05.png").write_bytes(b"not a png at all")  # corrupt: listed as missing
    return folder


@pytest.fixture(scope="module")
def local_store(encoder, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    res = E.embed(encoder, out, images=images, batch_size=3, progress=False)
    assert res["complete"] and res["computed_batches"] == 4
    return E.read_store(out, SLUG, mmap=False)


def assert_same_store(store, expected):
    arr, ids, meta = store
    arr0, ids0, meta0 = expected
    assert ids == ids0 == [f"img{i:02d}" for i in range(10) if i != 5]
    assert {k: v for k, v in meta.items() if k not in TIMING} == \
        {k: v for k, v in meta0.items() if k not in TIMING}
    assert arr.shape == arr0.shape == (9, 16) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, arr0, rtol=0, atol=1e-6)


def test_ray_embed_equals_local(local_ray, encoder, images, local_store, tmp_path):
    res = D.ray_embed(encoder, tmp_path, images=images, batch_size=3, workers=2,
                      progress=False)
    assert res["engine"] == "ray" and res["complete"] and res["computed_batches"] == 4
    assert res["missing"] == ["img05"]
    assert_same_store(E.read_store(tmp_path, SLUG, mmap=False), local_store)


def test_interrupted_run_resumes_across_engines(local_ray, encoder, images, local_store,
                                                tmp_path):
    folder = tmp_path / "embeddings" / SLUG
    # the local engine does batch 0 and stops
    part = E.embed(encoder, tmp_path, images=images, batch_size=3, max_batches=1,
                   progress=False)
    assert not part["complete"] and part["done_batches"] == 1

    # Ray resumes at batch 1; batch 1's first attempt fails and is retried; the run is
    # interrupted after batch 2 is written
    def stop(b):
        if b == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D.ray_embed(encoder, tmp_path, images=images, batch_size=3, workers=1,
                    fail_once=(1,), on_batch=stop, progress=False)
    state = json.loads((folder / "images.progress.json").read_text())
    assert state["done_batches"] == 3 and state["missing"] == ["img05"]

    # what Ray wrote is resumed (by the local engine: one Ray start-up less); nothing
    # finished is recomputed, only the last batch
    done = E.embed(encoder, tmp_path, images=images, batch_size=3, progress=False)
    assert done["complete"] and done["computed_batches"] == 1
    assert not (folder / "images.progress.json").exists()
    assert not (folder / "images.partial.npy").exists()
    assert_same_store(E.read_store(tmp_path, SLUG, mmap=False), local_store)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("data") / "synthetic-tiny", seed=0,
                      progress=False)


def _strip(record):
    """A record without what differs between two processes: time, memory and the versions
    of libraries the process happened to have imported (torch here, not in a worker)."""
    return {k: v for k, v in record.items()
            if k not in ("timing_s", "peak_memory_mb", "versions")}


def test_ray_run_benchmark_records_equal_local(local_ray, tmp_path):
    # (seed x track x method) tasks: two seeds of the registered tiny set, each its own data
    # draw (data/synthetic-tiny, data/synthetic-tiny-seed1), split and table; the
    # preference track (global-reward, every k) is one task per (seed, method) too.
    # clip-text: faiss search, whose rounding once depended on the thread count (a 1-CPU
    # Ray worker vs this process); it is pinned to one thread, and this guards it
    methods = ["random", "popularity", "itemknn", "clip-text", "global-reward"]
    common = dict(dataset="synthetic-tiny", methods=methods, data_dir=tmp_path / "data",
                  tracks=["lora-rec", "image-rec", "preference"],
                  leaderboard_dir=None, progress=False, seeds=[0, 1])
    local_lines: list[str] = []
    ray_lines: list[str] = []
    local = run_benchmark(results_dir=tmp_path / "local", echo=local_lines.append, **common)
    remote = D.ray_run_benchmark(results_dir=tmp_path / "ray", echo=ray_lines.append,
                                 **common)
    assert local["seeds"] == remote["seeds"] == [0, 1]
    assert (local["engine"], remote["engine"]) == ("local", "ray")
    assert len(local["records"]) == len(remote["records"]) == 2 * (2 * 4 + 5)  # 5 k
    assert [p.relative_to(tmp_path / "local") for p in local["records"]] == \
        [p.relative_to(tmp_path / "ray") for p in remote["records"]]
    protocols = {}
    for a, b in zip(local["records"], remote["records"], strict=True):
        ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
        for name, value in ra["metrics"].items():
            assert rb["metrics"][name] == pytest.approx(value, abs=1e-6)
        assert _strip(ra) == _strip(rb)
        protocols[ra["split"]["protocol"]] = (ra["seed"], ra["dataset"]["files_sha256"])
    ks = ["k0", "k5", "k10", "k20", "kall"]  # DEFAULT_KS
    assert sorted(protocols) == sorted(["leave-last-out", "leave-last-out-seed1"]
                                       + [f"per-user-pairs-{k}" for k in ks]
                                       + [f"per-user-pairs-seed1-{k}" for k in ks])
    assert {seed for seed, _ in protocols.values()} == {0, 1}
    assert protocols["leave-last-out"][0] == 0 and protocols["leave-last-out-seed1"][0] == 1
    assert protocols["leave-last-out"][1] != protocols["leave-last-out-seed1"][1]  # 2 draws
    # same messages in the same order, timings aside
    assert [line.split("(fit")[0] for line in local_lines] == \
        [line.split("(fit")[0] for line in ray_lines]
    assert local_lines[0] == "seed 0" and "seed 1" in local_lines


def test_ray_tune_chooses_what_local_chooses(local_ray, tiny, tmp_path):
    common = dict(budget=3, dataset=tiny.path, data_dir=tmp_path / "data", progress=False,
                  echo=lambda *_: None)
    local = tune("lora-rec", "itemknn", tuned_dir=tmp_path / "local", **common)
    remote = D.ray_tune("lora-rec", "itemknn", tuned_dir=tmp_path / "ray", **common)
    assert remote["engine"] == "ray"
    assert remote["params"] == local["params"]
    assert [t["params"] for t in remote["trials"]] == [t["params"] for t in local["trials"]]
    assert [t["value"] for t in remote["trials"]] == \
        pytest.approx([t["value"] for t in local["trials"]], abs=1e-6)
    assert remote["track_fingerprint"] == local["track_fingerprint"]
    assert remote["trials"][0]["params"] == {"k": 100, "shrink": 0.0}  # defaults first


def test_unreachable_address_fails_fast_with_a_clear_error():
    import time

    from benchmark import api

    t0 = time.perf_counter()
    with pytest.raises(D.RayUnavailable, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:1'"):
        D._check_reachable("127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(D.RayUnavailable, match="'nohost'"):
        D._check_reachable("nohost")  # no port
    assert time.perf_counter() - t0 < 10
    D._check_reachable(None)  # a local Ray: nothing to check
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        api.run(engine="spark")


def test_vlm_rerank_on_ray_equals_local_and_shares_its_cache(local_ray, tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image
    from test_vlm_rerank import build_tiny_vlm, make_reranker

    model = build_tiny_vlm(tmp_path / "tiny-llava")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(
            images / f"i{i}.png")
    users, items = np.array([0, 1]), np.array([[3, 4, 5], [0, 4, -1]])
    for mode in ("yes-no", "describe-then-score"):
        kw = {"mode": mode, "max_description_tokens": 3}
        local = make_reranker(model, images, tmp_path / f"local-{mode}", **kw)
        expected = local.rerank(users, items)
        remote = make_reranker(model, images, tmp_path / f"ray-{mode}", engine="ray",
                               workers=2, **kw)
        got = remote.rerank(users, items)
        assert remote._loaded is None  # the driver never loads the weights
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        assert np.isneginf(got[1, 2]) and np.isfinite(got[:, :2]).all()
        # yes-no: 5 prompts in batches of 3 = 2 calls, as locally; describe: one generate
        # call per batch of users, then 2 users x 2 orders = 4 prompts
        calls = 2 if mode == "yes-no" else 1 + 2
        assert local.stats_["n_model_calls"] == remote.stats_["n_model_calls"] == calls
        assert remote.stats_["n_prompts"] == local.stats_["n_prompts"]
        # the driver cached every (user, candidate): a local rerun makes no model call
        again = make_reranker(model, images, tmp_path / f"ray-{mode}", **kw)
        np.testing.assert_array_equal(again.rerank(users, items), got)
        assert again.stats_["n_model_calls"] == 0 and again._loaded is None
        assert again.stats_["cache_hits"] == 5
