"""The real renderer of the ``lora-edit`` track: a diffusers Stable Diffusion pipeline.

An edited LoRA is judged by what it draws. This renderer loads the LoRA into a Stable
Diffusion pipeline, draws a fixed set of prompts with fixed seeds, and embeds the images
with the content track's encoder (:func:`benchmark.embed.load_encoder`); a preference-track
judge then scores those embeddings. The synthetic world has a closed-form renderer; this one
is for real weights and is optional (the ``render`` extra: ``diffusers`` and ``peft``).

Reproducibility: image ``(prompt p, seed s)`` always starts from the noise of a CPU
``torch.Generator`` seeded with ``s``, so it is the same draw on CPU and CUDA, whatever LoRA is
loaded and whatever else is in the batch. Renders are independent: the LoRA is loaded as one
adapter, rendered, and unloaded (the base modules are restored) before the next one.
``lora=None`` renders the base model.

LoRA inputs: a ``.safetensors`` file or a ``{key: tensor or array}`` mapping, with kohya keys
(``lora_unet_*`` / ``lora_te_*`` with ``lora_down`` / ``lora_up`` / ``alpha``) or PEFT /
diffusers keys (``lora_A`` / ``lora_B``, prefixed ``unet.``, ``text_encoder.``,
``base_model.model.`` or bare module names). Heavy imports (torch, diffusers) happen inside
methods, so importing this module is cheap.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import DataError, GembenchError
from benchmark.progress import progress_bar

#: A fixed, subject-diverse prompt set: the LoRA's style has to show on each.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "a portrait of a woman, upper body",
    "a portrait of an old man with a beard",
    "a cat sitting on a windowsill",
    "a castle on a hill at sunset",
    "a city street at night, rain",
    "a bowl of fruit on a wooden table",
    "a forest path in autumn",
    "a spaceship above a planet",
)
#: Seeds drawn for every prompt.
DEFAULT_SEEDS: tuple[int, ...] = (0, 1)
#: The adapter name the renderer loads LoRAs under (one at a time).
ADAPTER = "gembench_render"

_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_LORA_RULE = ("LoRA keys are kohya (lora_unet_*/lora_te_* with lora_down/lora_up/alpha) "
              "or PEFT/diffusers (lora_A/lora_B)")


class RenderError(GembenchError):
    """The pipeline or encoder cannot be loaded, or cannot do what was asked."""


# LoRA state dicts ------------------------------------------------------------------
def _to_tensor(value: Any, key: str, source: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, float, int)):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(value)))
    raise DataError(f"key {key!r} holds a {type(value).__name__}, not a tensor or array",
                    path=source, rule="LoRA state dicts map keys to tensors or numpy arrays")


def _module_key(key: str) -> str:
    """A PEFT/diffusers key with the component prefix diffusers' SD loader expects."""
    if key.startswith(("unet.", "text_encoder.", "text_encoder_2.")):
        return key
    key = key.removeprefix("base_model.model.")
    return ("text_encoder." if key.startswith("text_model.") else "unet.") + key


def normalise_lora_keys(state: Mapping[str, Any], source: str = "<state dict>"
                        ) -> dict[str, Any]:
    """``state`` as torch tensors with keys diffusers' ``load_lora_weights`` accepts.

    Kohya keys pass unchanged (diffusers converts them and reads ``alpha``); PEFT keys get
    the ``unet.`` / ``text_encoder.`` prefix (``text_model.*`` modules are the text
    encoder's). Without ``alpha`` (PEFT files), diffusers uses ``alpha = rank``, i.e.
    ``W' = W + scale * B A``; with kohya ``alpha``, ``W' = W + scale * (alpha / rank) * B A``.
    """
    if not state:
        raise DataError("the LoRA has no weights", path=source, rule=_LORA_RULE)
    keys = list(state)
    kohya = [k.startswith(_KOHYA_PREFIXES) for k in keys]
    if any(kohya) and not all(kohya):
        row = kohya.index(False) + 1
        raise DataError(f"key {keys[row - 1]!r} is not kohya-style but others are",
                        path=source, row=row, rule="one key style per LoRA")
    out: dict[str, Any] = {}
    for row, key in enumerate(keys, 1):
        if "lora" not in key.removeprefix("lora_unet_").removeprefix("lora_te_") and not (
                kohya[row - 1] and key.endswith(".alpha")):
            raise DataError(f"key {key!r} is not a LoRA weight", path=source, row=row,
                            rule=_LORA_RULE)
        out[key if kohya[row - 1] else _module_key(key)] = _to_tensor(state[key], key, source)
    return out


def _expected_modules(state: Mapping[str, Any]) -> int:
    """How many layers a LoRA state dict adapts (one down/A matrix each)."""
    ends = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight",
            ".lora_linear_layer.down.weight")
    return sum(k.endswith(ends) for k in state)


def read_lora(lora: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(normalised state dict, source name) of a ``.safetensors`` file or a mapping."""
    if isinstance(lora, Mapping):
        return normalise_lora_keys(lora), "<state dict>"
    path = Path(lora)
    if not path.is_file():
        raise DataError("no such LoRA file", path=str(path))
    if path.suffix != ".safetensors":
        raise DataError("not a safetensors file", path=str(path),
                        rule="LoRA files are .safetensors (no pickle)")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # truncated or not safetensors at all
        raise DataError(f"unreadable safetensors file: {e}", path=str(path)) from e
    return normalise_lora_keys(state, str(path)), str(path)


# the renderer ----------------------------------------------------------------------------
class DiffusersRenderer:
    """Turn a LoRA into L2-normalised embeddings of the images it draws.

    Parameters
    ----------
    base_model:
        A Hugging Face model id or local folder (``DiffusionPipeline.from_pretrained``), a
        single ``.safetensors`` / ``.ckpt`` checkpoint (``StableDiffusionPipeline
        .from_single_file``), or a ready pipeline object (used as is, moved to ``device``).
    prompts, seeds:
        Every prompt is drawn once per seed: ``len(prompts) * len(seeds)`` images, rows in
        prompt-major order (``row = p * len(seeds) + s``).
    encoder:
        ``open_clip:<arch>:<pretrained>`` / ``hf:<id or folder>`` or an
        :class:`benchmark.embed.Encoder` instance.
    steps, height, width, guidance_scale, negative_prompt:
        Sampling settings passed to the pipeline.
    batch_size:
        Images per pipeline call (the noise of each image depends only on its seed).
    device:
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype:
        ``"auto"`` (float16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"``,
        ``"bfloat16"``; ignored for a pipeline object.
    local_files_only:
        Never reach the network when loading ``base_model`` / the encoder by name.
    progress:
        tqdm bars for long renders.
    """

    def __init__(
        self,
        base_model: Any,
        prompts: Sequence[str] = DEFAULT_PROMPTS,
        seeds: Sequence[int] = DEFAULT_SEEDS,
        encoder: Any = "open_clip:ViT-B-32:openai",
        steps: int = 25,
        height: int = 512,
        width: int = 512,
        guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        batch_size: int = 4,
        device: str = "auto",
        dtype: str = "auto",
        local_files_only: bool = False,
        progress: bool = True,
    ) -> None:
        self.base_model = base_model
        self.prompts = prompts
        self.seeds = seeds
        self.encoder = encoder
        self.steps = steps
        self.height = height
        self.width = width
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.local_files_only = local_files_only
        self.progress = progress

    # scikit-learn style parameters
    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The ``__init__`` arguments, read back from attributes."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def set_params(self, **params: Any) -> DiffusersRenderer:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"DiffusersRenderer has no parameter {key!r}; "
                                 f"it has {sorted(valid)}")
            setattr(self, key, value)
        for attr in ("pipeline_", "encoder_", "device_"):  # rebuilt on next use
            self.__dict__.pop(attr, None)
        return self

    @property
    def n_images(self) -> int:
        """Images (embedding rows) per render."""
        return len(self.prompts) * len(self.seeds)

    # setup ------------------------------------------------------------------------------
    def _resolve_device(self) -> str:
        import torch

        if self.device in (None, "", "auto"):
            return "cuda" if torch.cuda.is_available() else "cpu"
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise RenderError(f"device {self.device!r} asked for but CUDA is not available")
        return str(self.device)

    def _torch_dtype(self, device: str) -> Any:
        import torch

        if self.dtype in (None, "", "auto"):
            return torch.float16 if device.startswith("cuda") else torch.float32
        try:
            return {"float32": torch.float32, "float16": torch.float16,
                    "bfloat16": torch.bfloat16}[str(self.dtype)]
        except KeyError:
            raise RenderError(f"unknown dtype {self.dtype!r}: use auto, float32, float16 "
                              "or bfloat16") from None

    def _load_pipeline(self, device: str) -> Any:
        base = self.base_model
        if not isinstance(base, (str, os.PathLike)):
            return base
        try:
            import diffusers
        except ImportError as e:
            raise RenderError("the real renderer needs diffusers and peft: "
                              "pip install 'gembench[render]'") from e
        dtype = self._torch_dtype(device)
        path = Path(base)
        try:
            if path.is_file():
                return diffusers.StableDiffusionPipeline.from_single_file(
                    str(path), dtype=dtype, safety_checker=None,
                    requires_safety_checker=False, local_files_only=self.local_files_only)
            return diffusers.DiffusionPipeline.from_pretrained(
                str(base), dtype=dtype, safety_checker=None, requires_safety_checker=False,
                local_files_only=self.local_files_only)
        except Exception as e:  # not a pipeline folder, not cached and no network, ...
            raise RenderError(f"cannot load diffusers pipeline {str(base)!r}: {e}") from e

    def setup(self) -> DiffusersRenderer:
        """Load the pipeline and the encoder once (``render`` calls this on first use)."""
        if "pipeline_" in self.__dict__:
            return self
        try:
            import peft  # noqa: F401  (diffusers' LoRA loading needs the PEFT backend)
        except ImportError as e:
            raise RenderError("the real renderer needs diffusers and peft: "
                              "pip install 'gembench[render]'") from e
        device = self._resolve_device()
        pipe = self._load_pipeline(device)
        if not hasattr(pipe, "load_lora_weights"):
            raise RenderError(f"{type(pipe).__name__} cannot load LoRA weights "
                              "(no load_lora_weights)")
        if any(pipe.get_list_adapters().values()):
            raise RenderError("the base pipeline already has LoRA adapters "
                              f"{pipe.get_list_adapters()}: fuse_lora() and "
                              "unload_lora_weights() them first, or pass a clean pipeline")
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        if isinstance(self.encoder, str):
            from benchmark.embed import EmbedError, load_encoder

            try:
                enc = load_encoder(self.encoder, device=device)
            except EmbedError as e:
                raise RenderError(str(e)) from e
        else:
            enc = self.encoder
        self.device_ = device
        self.pipeline_ = pipe
        self.encoder_ = enc
        return self

    def describe(self) -> dict[str, Any]:
        """What a result record needs to say about how images were drawn and embedded."""
        self.setup()
        pipe = self.pipeline_
        base = self.base_model
        return {
            "renderer": "diffusers",
            "pipeline": type(pipe).__name__,
            "base_model": str(base) if isinstance(base, (str, os.PathLike)) else
            getattr(getattr(pipe, "config", None), "_name_or_path", None) or "<object>",
            "scheduler": type(pipe.scheduler).__name__,
            "dtype": str(getattr(pipe, "dtype", "")),
            "device": self.device_,
            "encoder": getattr(self.encoder_, "name", type(self.encoder_).__name__),
            "prompts": list(self.prompts),
            "seeds": [int(s) for s in self.seeds],
            "steps": self.steps, "height": self.height, "width": self.width,
            "guidance_scale": self.guidance_scale, "negative_prompt": self.negative_prompt,
        }

    # rendering ----------------------------------------------------------------------------
    def _load_lora(self, lora: str | os.PathLike | Mapping[str, Any], scale: float) -> None:
        state, source = read_lora(lora)
        pipe = self.pipeline_
        expected = _expected_modules(state)
        try:
            pipe.load_lora_weights(state, adapter_name=ADAPTER)
        except Exception as e:  # shapes that do not fit the base model, unknown modules
            raise DataError(f"the LoRA does not fit the base model: {e}", path=source,
                            rule="a LoRA's layers and shapes match the base model") from e
        loaded = self._adapted_layers()
        if loaded == 0:
            raise DataError("no key of the LoRA names a layer of the base model", path=source,
                            rule="a LoRA is trained for the base model it is rendered with")
        if expected and loaded != expected:
            warnings.warn(f"{source}: {expected} LoRA layers in the file, {loaded} loaded "
                          "into the base model", stacklevel=3)
        pipe.set_adapters([ADAPTER], adapter_weights=[float(scale)])

    def _adapted_layers(self) -> int:
        from peft.tuners.tuners_utils import BaseTunerLayer

        n = 0
        for name in getattr(self.pipeline_, "_lora_loadable_modules", ("unet", "text_encoder")):
            model = getattr(self.pipeline_, name, None)
            if model is None:
                continue
            n += sum(isinstance(m, BaseTunerLayer) and ADAPTER in getattr(m, "lora_A", {})
                     for m in model.modules())
        return n

    def _draw(self) -> list[Any]:
        import torch

        jobs = [(str(p), int(s)) for p in self.prompts for s in self.seeds]
        if not jobs:
            raise RenderError("no prompts or no seeds to render")
        size = max(1, int(self.batch_size))
        images: list[Any] = []
        with progress_bar(total=len(jobs), desc="render", unit="img",
                          enabled=self.progress and len(jobs) > size) as bar:
            for lo in range(0, len(jobs), size):
                chunk = jobs[lo:lo + size]
                generators = [torch.Generator("cpu").manual_seed(s) for _, s in chunk]
                kwargs: dict[str, Any] = {}
                if self.negative_prompt is not None:
                    kwargs["negative_prompt"] = [self.negative_prompt] * len(chunk)
                out = self.pipeline_(
                    prompt=[p for p, _ in chunk], num_inference_steps=int(self.steps),
                    height=int(self.height), width=int(self.width),
                    guidance_scale=float(self.guidance_scale), generator=generators,
                    output_type="pil", **kwargs)
                images.extend(out.images)
                bar.update(len(chunk))
        return images

    def render_images(self, lora: str | os.PathLike | Mapping[str, Any] | None = None,
                      scale: float = 1.0) -> list[Any]:
        """The PIL images ``lora`` (``None``: the base model) draws, prompt-major."""
        self.setup()
        if lora is None:
            return self._draw()
        try:
            self._load_lora(lora, scale)
            return self._draw()
        finally:  # renders are independent: restore the base modules whatever happened
            # (always: a failed load can leave LoRA wrappers and an empty peft_config behind)
            self.pipeline_.unload_lora_weights()

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """float32 ``[len(images), d]``, rows L2-normalised (``x / max(||x||, 1e-12)``)."""
        self.setup()
        size = max(1, int(self.batch_size))
        parts = [np.asarray(self.encoder_.encode_images(images[lo:lo + size]), dtype=np.float32)
                 for lo in range(0, len(images), size)]
        emb = np.concatenate(parts, axis=0)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def render(self, lora: str | os.PathLike | Mapping[str, Any] | None = None,
               scale: float = 1.0) -> np.ndarray:
        """float32 ``[len(prompts) * len(seeds), d]``: L2-normalised embeddings of the images
        ``lora`` draws at LoRA strength ``scale`` (``None``: the base model)."""
        return self.embed_images(self.render_images(lora, scale))

    def render_many(self, loras: Iterable[str | os.PathLike | Mapping[str, Any] | None],
                    scale: float = 1.0) -> np.ndarray:
        """float32 ``[n_loras, n_images, d]``: :meth:`render` for each LoRA, in order."""
        loras = list(loras)
        out = []
        with progress_bar(total=len(loras), desc="render loras", unit="lora",
                          enabled=self.progress) as bar:
            for lora in loras:
                out.append(self.render(lora, scale))
                bar.update(1)
        return np.stack(out) if out else np.zeros((0, self.n_images, 0), np.float32)


def list_loras(source: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """(ids, paths) of a ``.safetensors`` file or of a folder of them (id = file stem)."""
    src = Path(source)
    if src.is_file():
        return [src.stem], [src]
    if not src.is_dir():
        raise DataError("no such LoRA file or folder", path=str(src))
    paths = sorted(src.rglob("*.safetensors"))
    if not paths:
        raise DataError("no .safetensors files in the folder", path=str(src),
                        rule="LoRA files are .safetensors")
    return [p.relative_to(src).with_suffix("").as_posix() for p in paths], paths


def render_to_folder(renderer: DiffusersRenderer, loras: str | os.PathLike,
                     out: str | os.PathLike, scale: float = 1.0,
                     include_base: bool = True) -> dict[str, Any]:
    """Render every LoRA of ``loras`` (a file or folder) into ``out``.

    Writes ``renders.npy`` (float32 ``[n, n_images, d]``, row order of ``ids``; with
    ``include_base`` the first row, id ``"<base>"``, is the base model) and ``renders.json``
    (ids, scale and :meth:`DiffusersRenderer.describe`), both replaced atomically.
    """
    import json

    from benchmark.core.io import atomic_path, atomic_write_text

    ids, paths = list_loras(loras)
    items: list[Path | None] = list(paths)
    if include_base:
        ids, items = ["<base>", *ids], [None, *items]
    emb = renderer.render_many(items, scale)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "renders.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, emb)
    meta = {"ids": ids, "scale": float(scale), "shape": list(emb.shape),
            **renderer.describe()}
    atomic_write_text(folder / "renders.json", json.dumps(meta, indent=2) + "\n")
    return {**meta, "path": str(folder)}
