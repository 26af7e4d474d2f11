"""The real lora-edit renderer on a tiny randomly initialised SD pipeline (CPU, no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers", reason="the real renderer is the 'render' extra (diffusers)")
pytest.importorskip("peft", reason="the real renderer is the 'render' extra (peft)")
open_clip = pytest.importorskip("open_clip")

from benchmark.errors import DataError  # noqa: E402
from benchmark.lora import render_diffusers as R  # noqa: E402

# a LoRA load must never find another's leftovers (peft warns "Already found a peft_config")
pytestmark = pytest.mark.filterwarnings("error:Already found a:UserWarning")

PROMPTS = ["a cat", "a red house"]
SEEDS = [7]
# the LoRA adapts these attention layers of the tiny UNet: (module, in, out)
LAYERS = [
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 8, 8),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 32, 8),
    ("up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v", 8, 8),
    ("up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v", 32, 8),
]
RANK = 2


def _tiny_pipeline(folder):
    import transformers as T
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(4, 8), norm_num_groups=2, cross_attention_dim=32,
        attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 8),
        norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2)
    text = T.CLIPTextModel(T.CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # read from the files (transformers 5 ignores ``vocab_file=``: it takes ``vocab=``)
    tok = T.CLIPTokenizer.from_pretrained(folder, model_max_length=16)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is ~5x faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from benchmark.embed import load_encoder

    folder = tmp_path_factory.mktemp("clipcfg")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                          "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 1}}
    (folder / "gem-render-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / "gem-render-tiny.json")
    torch.manual_seed(0)
    return load_encoder("open_clip:gem-render-tiny:none", device="cpu")


@pytest.fixture(scope="module")
def renderer(tmp_path_factory, encoder):
    pipe = _tiny_pipeline(tmp_path_factory.mktemp("tok"))
    return R.DiffusersRenderer(pipe, prompts=PROMPTS, seeds=SEEDS, encoder=encoder, steps=2,
                               height=32, width=32, guidance_scale=5.0, batch_size=2,
                               device="cpu", progress=False)


def _weights():
    rng = np.random.default_rng(0)
    return {name: (rng.normal(0, 1.0, (RANK, d_in)).astype(np.float32),
                   rng.normal(0, 1.0, (d_out, RANK)).astype(np.float32))
            for name, d_in, d_out in LAYERS}


def _peft_state():
    out = {}
    for name, (a, b) in _weights().items():
        out[f"unet.{name}.lora_A.weight"] = torch.from_numpy(a)
        out[f"unet.{name}.lora_B.weight"] = torch.from_numpy(b)
    return out


def _kohya_state(alpha):
    out = {}
    for name, (a, b) in _weights().items():
        key = "lora_unet_" + name.replace(".", "_")
        out[f"{key}.lora_down.weight"] = torch.from_numpy(a)
        out[f"{key}.lora_up.weight"] = torch.from_numpy(b)
        out[f"{key}.alpha"] = torch.tensor(float(alpha))
    return out


def test_render_shapes_seeds_scale_and_unload(renderer, tmp_path):
    from safetensors.torch import save_file

    base = renderer.render(None)
    assert base.shape == (2, 16) and base.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-6)
    assert not np.array_equal(base[0], base[1])  # two prompts, two images
    np.testing.assert_array_equal(renderer.render(None), base)  # same seeds, same images

    images = renderer.render_images(None)
    assert len(images) == 2 and images[0].size == (32, 32) and images[0].mode == "RGB"

    peft_file = tmp_path / "peft.safetensors"
    save_file(_peft_state(), str(peft_file))
    kohya_file = tmp_path / "kohya.safetensors"
    save_file(_kohya_state(alpha=RANK), str(kohya_file))  # alpha = rank: scaling 1

    zero = renderer.render(peft_file, scale=0.0)
    np.testing.assert_array_equal(zero, base)  # W x + 0 * B A x == W x, exactly
    one = renderer.render(peft_file, scale=1.0)
    assert one.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
    assert np.abs(one - base).max() > 1e-3  # the LoRA changes the pictures
    np.testing.assert_array_equal(renderer.render(peft_file), one)  # reproducible
    assert not any(renderer.pipeline_.get_list_adapters().values())
    np.testing.assert_array_equal(renderer.render(None), base)  # unload restored the base

    # kohya keys with alpha = rank draw exactly what the PEFT keys draw; a mapping of
    # numpy arrays with bare module names too
    np.testing.assert_allclose(renderer.render(kohya_file), one, atol=1e-5)
    bare = {k.removeprefix("unet."): v.numpy() for k, v in _peft_state().items()}
    np.testing.assert_allclose(renderer.render(bare), one, atol=1e-5)
    # kohya alpha = rank / 2 halves the update: the same as PEFT weights at scale 0.5
    # (numpy values and 0-d alphas, as benchmark.lora.track.as_state_dicts makes them)
    half = renderer.render({k: v.numpy() for k, v in _kohya_state(alpha=RANK / 2).items()})
    np.testing.assert_allclose(half, renderer.render(peft_file, scale=0.5), atol=1e-5)
    assert np.abs(half - one).max() > 1e-4

    # rows are prompt-major; an image depends on its own (prompt, seed) only
    two_seeds = R.DiffusersRenderer(renderer.pipeline_, prompts=PROMPTS[:1], seeds=[7, 8],
                                    encoder=renderer.encoder_, steps=2, height=32, width=32,
                                    guidance_scale=5.0, batch_size=2, device="cpu",
                                    progress=False).render(None)
    assert two_seeds.shape == (2, 16) and two_seeds.dtype == np.float32
    np.testing.assert_allclose(two_seeds[0], base[0], atol=1e-5)  # "a cat", seed 7
    assert np.abs(two_seeds[1] - two_seeds[0]).max() > 1e-3  # seed 8 draws another image

    many = renderer.render_many([None, peft_file])
    assert many.shape == (2, 2, 16)
    np.testing.assert_array_equal(many[0], base)
    np.testing.assert_array_equal(many[1], one)


def test_local_folder_and_bad_loras(renderer, encoder, tmp_path):
    renderer.setup()
    folder = tmp_path / "tiny-sd"
    renderer.pipeline_.save_pretrained(folder)
    from_disk = R.DiffusersRenderer(str(folder), prompts=PROMPTS, seeds=SEEDS, encoder=encoder,
                                    steps=2, height=32, width=32, guidance_scale=5.0,
                                    batch_size=1, device="cpu", local_files_only=True,
                                    progress=False)
    np.testing.assert_allclose(from_disk.render(None), renderer.render(None), atol=1e-5)
    info = from_disk.describe()
    assert info["pipeline"] == "StableDiffusionPipeline" and info["scheduler"] == "DDIMScheduler"
    assert info["seeds"] == [7] and info["steps"] == 2 and info["encoder"].endswith(":none")
    assert from_disk.get_params()["base_model"] == str(folder) and from_disk.n_images == 2

    with pytest.raises(DataError, match="no such LoRA file"):
        renderer.render(tmp_path / "missing.safetensors")
    with pytest.raises(DataError, match=r"row 2: key 'unet.x.weight' is not a LoRA weight"):
        renderer.render({"unet.a.lora_A.weight": np.zeros((1, 8), np.float32),
                         "unet.x.weight": np.zeros((8, 8), np.float32)})
    wrong = {"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight":
             np.zeros((RANK, 5), np.float32),  # in_features is 8, not 5
             "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight":
             np.zeros((8, RANK), np.float32)}
    with pytest.raises(DataError, match="does not fit the base model"):
        renderer.render(wrong)
    np.testing.assert_array_equal(renderer.render(None), from_disk.render(None))
    # a failed load leaves nothing behind: no adapter config, no LoRA wrapper layers
    from peft.tuners.tuners_utils import BaseTunerLayer

    for model in (renderer.pipeline_.unet, renderer.pipeline_.text_encoder):
        assert not hasattr(model, "peft_config")
        assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    # a folder of LoRA files -> renders.npy + renders.json
    from safetensors.torch import save_file

    loras = tmp_path / "loras"
    (loras / "sub").mkdir(parents=True)
    save_file(_peft_state(), str(loras / "peft.safetensors"))
    save_file(_kohya_state(alpha=RANK), str(loras / "sub" / "kohya.safetensors"))
    res = R.render_to_folder(renderer, loras, tmp_path / "out")
    arr = np.load(tmp_path / "out" / "renders.npy")
    meta = json.loads((tmp_path / "out" / "renders.json").read_text())
    assert arr.shape == (3, 2, 16) and arr.dtype == np.float32 and res["shape"] == [3, 2, 16]
    assert meta["ids"] == ["<base>", "peft", "sub/kohya"] and meta["scale"] == 1.0
    assert meta["prompts"] == PROMPTS and meta["seeds"] == SEEDS
    np.testing.assert_array_equal(arr[0], renderer.render(None))
    np.testing.assert_array_equal(arr[1], renderer.render(loras / "peft.safetensors"))
    np.testing.assert_allclose(arr[2], arr[1], atol=1e-5)
    with pytest.raises(DataError, match="no .safetensors files"):
        R.render_to_folder(renderer, tmp_path / "out", tmp_path / "out2")

    with pytest.raises(R.RenderError, match="cannot load diffusers pipeline"):
        R.DiffusersRenderer(str(tmp_path / "nope"), encoder=encoder, device="cpu",
                            local_files_only=True).setup()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_the_cpu_noise(renderer, encoder):
    """The noise comes from CPU generators, so CUDA renders match CPU ones (float32)."""
    cpu = renderer.render(None)
    pipe = _tiny_pipeline_like(renderer)
    gpu = R.DiffusersRenderer(pipe, prompts=PROMPTS, seeds=SEEDS, encoder=encoder, steps=2,
                              height=32, width=32, guidance_scale=5.0, device="auto",
                              progress=False)
    out = gpu.render(None)
    assert gpu.device_ == "cuda" and out.shape == cpu.shape
    np.testing.assert_allclose(out, cpu, atol=2e-2)


def _tiny_pipeline_like(renderer):
    import copy

    return copy.deepcopy(renderer.pipeline_)
