"""``aesthetic``: the LAION aesthetic predictor idea — an MLP on CLIP image embeddings.

    x_0 = e_i / ||e_i||,   x_l = act(W_l x_{l-1} + b_l),   s(u, i) = x_L  (a scalar)

the same for every user (a population "how much people like it on average" score; the
preference track's non-personal floor). ``act`` is the identity by default, as in the released
LAION predictors (improved-aesthetic-predictor: Linear 768-1024-128-64-16-1 with dropout and
no non-linearity, on L2-normalised CLIP ViT-L/14 image embeddings), or ReLU (their ``relu``
variants); dropout is inactive at inference, so the weights are all there is.

The weights come from a local file (``weights=PATH``): a PyTorch state dict (``.pth``/``.pt``,
read with ``weights_only=True``) or ``.safetensors``, with 2-D ``<prefix><n>.weight`` (and
optional ``<prefix><n>.bias``) tensors applied in the order of n — e.g. ``layers.0``,
``layers.2``, ... of an ``nn.Sequential``. The embedding store must come from the CLIP the
predictor was trained on. Nothing is downloaded; without weights the method refuses to run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselines._pref_torch import ParamsMixin
from benchmark.errors import DataError
from benchmark.protocols import SideInfo
from benchmark.tracks.preference.track import DEFAULT_ENCODER, image_embeddings, lookup

_LAYER = re.compile(r"^(.*?)(\d+)\.weight$")


def load_mlp(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W, b), ...] of a linear stack from a state dict file, checked to chain to 1 output."""
    path = Path(path)
    if not path.is_file():
        raise DataError("aesthetic weights file not found", path=str(path),
                        rule="weights is a local .pth/.pt/.safetensors state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            state: dict[str, Any] = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
    except Exception as e:  # a corrupt or foreign file: say which
        raise DataError(f"cannot read aesthetic weights: {e}", path=str(path)) from e
    if not isinstance(state, dict):
        raise DataError("aesthetic weights are not a state dict", path=str(path))
    found = []
    for key, value in state.items():
        m = _LAYER.match(str(key))
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if m and arr.ndim == 2:
            bias = state.get(f"{m.group(1)}{m.group(2)}.bias")
            b = (np.asarray(bias.detach().cpu().numpy() if hasattr(bias, "detach") else bias)
                 if bias is not None else np.zeros(arr.shape[0]))
            found.append((m.group(1), int(m.group(2)), arr.astype(np.float64),
                          b.astype(np.float64)))
    if not found:
        raise DataError("no linear layers (<prefix><n>.weight, 2-D) in the weights",
                        path=str(path), rule="an MLP state dict such as layers.0.weight, ...")
    found.sort(key=lambda t: (t[0], t[1]))
    layers = [(w, b) for _, _, w, b in found]
    for i in range(1, len(layers)):
        if layers[i][0].shape[1] != layers[i - 1][0].shape[0]:
            raise DataError(f"layer {i} takes {layers[i][0].shape[1]} inputs but layer {i - 1} "
                            f"gives {layers[i - 1][0].shape[0]}", path=str(path),
                            rule="the linear layers chain")
    if layers[-1][0].shape[0] != 1:
        raise DataError(f"the last layer has {layers[-1][0].shape[0]} outputs", path=str(path),
                        rule="an aesthetic predictor outputs one score")
    return layers


class AestheticPredictor(ParamsMixin):
    name = "aesthetic"

    def __init__(self, weights: str | None = None, encoder: str = DEFAULT_ENCODER,
                 activation: str = "none", normalize: bool = True) -> None:
        self.weights = weights
        self.encoder = encoder
        self.activation = activation
        self.normalize = normalize

    def fit(self, train: pd.DataFrame, side: SideInfo) -> AestheticPredictor:
        """Loads the predictor and the image embeddings; the training pairs are not used."""
        if self.activation not in ("none", "relu"):
            raise ValueError(f"activation must be 'none' or 'relu', got {self.activation!r}")
        if self.weights is None:
            raise DataError(
                "aesthetic needs a local predictor weights file (weights=PATH); none given",
                rule="e.g. LAION's sac+logos+ava1-l14-linearMSE.pth with CLIP ViT-L/14 "
                     "image embeddings; nothing is downloaded")
        self.layers_ = load_mlp(self.weights)
        self.ids_, self.emb_ = image_embeddings(side, self.encoder)
        d_in = self.layers_[0][0].shape[1]
        if d_in != self.emb_.shape[1]:
            raise DataError(f"the predictor takes {d_in}-d embeddings, the {self.encoder!r} "
                            f"image embeddings are {self.emb_.shape[1]}-d",
                            path=str(self.weights),
                            rule="use the CLIP image embeddings the predictor was trained on")
        return self

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        x = np.asarray(self.emb_[lookup(self.ids_, image_ids)], np.float64)
        if self.normalize:
            n = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
        for i, (w, b) in enumerate(self.layers_):
            x = x @ w.T + b
            if self.activation == "relu" and i < len(self.layers_) - 1:
                x = np.maximum(x, 0.0)
        return x[:, 0].astype(np.float32)
