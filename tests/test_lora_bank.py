"""LoRA bank and latent space: readers, canonical forms (hand-computed), index, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from benchmark.errors import DataError
from benchmark.lora.bank import (
    build_index,
    canonical_layer_name,
    from_vector,
    layout_of,
    open_index,
    read_lora,
    to_vector,
    write_lora,
)
from benchmark.lora.space import LatentSpace, fit_space, write_edit

R6 = np.sqrt(6.0)


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def kohya(path, up, down, alpha=None, prefix="lora_unet_blk_0_q", meta=None):
    t = {f"{prefix}.lora_up.weight": f32(up), f"{prefix}.lora_down.weight": f32(down)}
    if alpha is not None:
        t[f"{prefix}.alpha"] = f32(alpha)
    save_file(t, str(path), metadata=meta)
    return path


def peft(path, up, down, prefix="unet.blk_0.q", meta=None):
    save_file({f"{prefix}.lora_B.weight": f32(up), f"{prefix}.lora_A.weight": f32(down)},
              str(path), metadata=meta)
    return path


def test_layer_names_agree_across_styles():
    assert canonical_layer_name("lora_unet_blk_0_q") == "unet_blk_0_q"
    assert canonical_layer_name("unet.blk_0.q") == "unet_blk_0_q"
    assert canonical_layer_name("base_model.model.unet.blk_0.q") == "unet_blk_0_q"


def test_rank1_canonical_form_by_hand(tmp_path):
    # delta W = [[0, 6], [0, 0]]: s = 6, u = e1, v = e2 -> [sqrt6, 0, 0, sqrt6]
    k = read_lora(kohya(tmp_path / "k.safetensors", [[3], [0]], [[0, 2]], alpha=1.0))
    p = read_lora(peft(tmp_path / "p.safetensors", [[3], [0]], [[0, 2]]))
    assert (k.style, p.style) == ("kohya", "peft")
    assert list(k.layers) == list(p.layers) == ["unet_blk_0_q"]
    np.testing.assert_allclose(to_vector(k), [R6, 0, 0, R6], atol=1e-6)
    np.testing.assert_allclose(to_vector(p), [R6, 0, 0, R6], atol=1e-6)
    # alpha = 2 on rank 1 doubles delta W: s = 12
    k2 = read_lora(kohya(tmp_path / "k2.safetensors", [[3], [0]], [[0, 2]], alpha=2.0))
    np.testing.assert_allclose(to_vector(k2), [np.sqrt(12), 0, 0, np.sqrt(12)], atol=1e-6)
    # sign: v's largest entry is made positive, u takes the flip
    neg = read_lora(kohya(tmp_path / "n.safetensors", [[-3], [0]], [[0, 2]], alpha=1.0))
    np.testing.assert_allclose(to_vector(neg), [-R6, 0, 0, R6], atol=1e-6)


def test_mixed_rank_reduces_to_top_component_and_raw_keeps_factors(tmp_path):
    # rank 2, alpha 2 (scale 1): delta W = diag(3, 1) -> top triple (3, e1, e1)
    lora = read_lora(kohya(tmp_path / "r2.safetensors", [[1, 0], [0, 1]], [[3, 0], [0, 1]],
                           alpha=2.0))
    np.testing.assert_allclose(to_vector(lora), [np.sqrt(3), 0, np.sqrt(3), 0], atol=1e-6)
    assert layout_of(lora).dim == 4
    # raw: [(alpha / r) up, down] with alpha = 1 -> up halved
    lora1 = read_lora(kohya(tmp_path / "r2b.safetensors", [[1, 0], [0, 1]], [[3, 0], [0, 1]],
                            alpha=1.0))
    np.testing.assert_allclose(to_vector(lora1, "raw"), [0.5, 0, 0, 0.5, 3, 0, 0, 1])
    layout = layout_of(lora1, "raw")
    assert layout.dim == 8 and layout.layers == (("unet_blk_0_q", 2, 2, 2),)
    up, down, alpha = from_vector(to_vector(lora1, "raw"), layout)["unet_blk_0_q"]
    np.testing.assert_allclose(up @ down * alpha / 2, [[1.5, 0], [0, 0.5]])


@pytest.mark.parametrize("make, rule", [
    (lambda p: p.write_bytes(b"not safetensors at all"), "safetensors"),
    (lambda p: kohya(p, [[1, 0], [0, 1]], [[1, 0]]), "up is (out, r)"),
    (lambda p: save_file({"x.weight": f32([1])}, str(p)), "keys end in"),
    (lambda p: save_file({"a.lora_up.weight": f32([[1]])}, str(p)), "both factors"),
    (lambda p: kohya(p, [[np.nan]], [[1]]), "finite"),
])
def test_bad_files_raise_data_error_naming_the_file(tmp_path, make, rule):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(DataError) as e:
        read_lora(path)
    assert e.value.path == str(path)
    assert rule in str(e.value)


def test_index_groups_skips_bad_files_and_memory_maps(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    kohya(src / "a.safetensors", [[3], [0]], [[0, 2]], alpha=1.0,
          meta={"ss_base_model_version": "sd_v1"})
    peft(src / "b.safetensors", [[1, 0], [0, 1]], [[3, 0], [0, 1]],
         meta={"gembench.base_model": "sd_v1"})  # rank 2, alpha = r: same rank1 layout
    peft(src / "c.safetensors", [[1], [1], [1]], [[1, 1]],
         meta={"gembench.base_model": "sd_v1"})  # 3 x 2: another layout
    kohya(src / "d.safetensors", [[1], [0]], [[0, 1]], alpha=1.0)  # no base model: unknown
    (src / "broken.safetensors").write_bytes(b"\x00" * 10)
    kohya(src / "mismatch.safetensors", [[1, 0], [0, 1]], [[1, 0]])
    index = build_index(src, tmp_path / "index", progress=False)
    assert [(g["base_model"], g["n"]) for g in index.groups] == [
        ("sd_v1", 2), ("sd_v1", 1), ("unknown", 1)]
    assert sorted(s["path"].rsplit("/", 1)[1] for s in index.skipped) == [
        "broken.safetensors", "mismatch.safetensors"]
    reopened = open_index(tmp_path / "index")
    vectors = reopened.vectors(0)
    assert isinstance(vectors, np.memmap) and vectors.shape == (2, 4)
    np.testing.assert_allclose(vectors, [[R6, 0, 0, R6], [np.sqrt(3), 0, np.sqrt(3), 0]],
                               atol=1e-6)
    assert reopened.ids(0) == ["a", "b"]
    assert [e["style"] for e in reopened.entries(0)] == ["kohya", "peft"]
    assert reopened.largest_group() == 0


def test_round_trip_through_pca_and_safetensors_is_exact_for_rank1(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for n in range(12):
        two = [("blk.0.q", 5, 4), ("blk.1.k", 3, 6)]
        layers = {name.replace(".", "_"): (f32(rng.standard_normal((o, 1))),
                                          f32(rng.standard_normal((1, i))), 1.0)
                  for name, o, i in two}
        write_lora(src / f"l{n:02d}.safetensors", layers, style="kohya" if n % 2 else "peft")
    index = build_index(src, tmp_path / "index", progress=False)
    assert len(index.groups) == 1 and index.groups[0]["n"] == 12
    space = fit_space(index, 0, n_components=None)  # full: min(12, 18) = 12 components
    assert space.components_.shape == (12, 18)
    np.testing.assert_allclose(space.explained_variance_ratio_.sum(), 1.0, atol=1e-9)
    x = np.asarray(index.vectors(0))
    z = space.transform(x)
    np.testing.assert_allclose(space.inverse_transform(z), x, atol=1e-5)
    for row in (0, 1):  # one PEFT source, one kohya source
        source = src / f"l{row:02d}.safetensors"
        out = write_edit(space, z[row], source, tmp_path / f"edit{row}.safetensors")
        back, orig = read_lora(out), read_lora(source)
        assert back.style == orig.style and back.prefixes == orig.prefixes
        np.testing.assert_allclose(to_vector(back), x[row], atol=1e-5)


def test_incremental_pca_streams_batches_like_one_batch():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((50, 3)) @ rng.standard_normal((3, 6))).astype(np.float32)
    one = LatentSpace(3, batch_size=1000).fit(x)
    many = LatentSpace(3, batch_size=8).fit(x)  # 8-row batches; a 2-row tail joins the last
    np.testing.assert_allclose(many.inverse_transform(many.transform(x)), x, atol=1e-4)
    np.testing.assert_allclose(one.explained_variance_ratio_.sum(), 1.0, atol=1e-9)
    with pytest.raises(DataError):
        LatentSpace(7).fit(x)


def test_space_save_load(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    space = LatentSpace(4).fit(x)
    loaded = LatentSpace.load(space.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.components_, space.components_)
    assert loaded.layout_ is None and loaded.n_samples_ == 20
