"""``clip-score``: a zero-reference global scorer, image–prompt agreement.

    s(u, i) = cos(e_i, t_i) = <e_i, t_i> / (||e_i|| ||t_i||)

with e_i the image's CLIP embedding and t_i the CLIP text embedding of the image's prompt
(0 where either norm is 0). The same for every user and it learns nothing from the training
pairs: the floor a personalised scorer has to beat (CLIPScore of Hessel et al. is
``2.5 max(cos, 0)``; the clipping only adds ties, so the plain cosine is used).

Text embeddings are read, in order, from ``side.extra["text_ids"]`` +
``side.extra["text_embeddings"]`` (hand-made data; ids are image ids), or from the data set's
text store ``embeddings/<encoder>/<kind>.npy`` + ``<kind>.ids.parquet`` for kind ``text``,
``texts``, ``prompt`` or ``prompts`` — image and text embeddings must come from the same CLIP.
The synthetic data sets ship no prompt embeddings: the method then raises a DataError naming
the missing store. With a real CLIP they are made by

    gembench embed --encoder open_clip:ViT-B-32:openai --texts DATA/images.parquet \\
        --out DATA --kind text --name ENCODER

(ids from the ``image_id`` column; ENCODER = the folder of the image embeddings).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselines._pref_torch import ParamsMixin
from benchmark.errors import DataError
from benchmark.protocols import SideInfo
from benchmark.tracks.preference.track import DEFAULT_ENCODER, image_embeddings, lookup

TEXT_KINDS = ("text", "texts", "prompt", "prompts")


def text_embeddings(side: SideInfo, encoder: str = DEFAULT_ENCODER
                    ) -> tuple[pd.Index, np.ndarray]:
    """(image ids, prompt embeddings) from ``side.extra`` or the data set's text store."""
    if "text_embeddings" in side.extra:
        if "text_ids" not in side.extra:
            raise DataError("side.extra has text_embeddings but no text_ids",
                            rule="text_ids[i] is the image whose prompt is row i")
        ids = pd.Index(np.asarray(side.extra["text_ids"], dtype=object).astype(str))
        emb = np.asarray(side.extra["text_embeddings"], dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(ids):
            raise DataError(f"text_embeddings has shape {emb.shape} for {len(ids)} text_ids",
                            rule="one embedding row per text id")
        return ids, emb
    view = side.view
    if view is None:
        raise DataError("clip-score needs prompt (text) embeddings: none in side.extra and "
                        "no data set given")
    for kind in TEXT_KINDS:
        if kind in view.embedding_kinds(encoder):
            ids = view.embedding_ids(encoder, kind)
            emb = view.embeddings(encoder, kind)
            if len(ids) != len(emb):
                raise DataError(f"{len(ids)} ids for {len(emb)} embedding rows",
                                path=f"embeddings/{encoder}/{kind}.ids.parquet",
                                rule="one id per embedding row")
            return ids, emb
    raise DataError(
        f"clip-score needs prompt embeddings from the image encoder {encoder!r}; this data set "
        "has none (the synthetic worlds ship image embeddings only)",
        path=f"embeddings/{encoder}/text.npy",
        rule=f"make them with `gembench embed --encoder <clip> --texts "
             f"<dataset>/images.parquet --out <dataset> --kind text "
             f"--name {encoder}` using the CLIP model of the image embeddings")


class ClipScore(ParamsMixin):
    name = "clip-score"

    def __init__(self, encoder: str = DEFAULT_ENCODER) -> None:
        self.encoder = encoder

    def fit(self, train: pd.DataFrame, side: SideInfo) -> ClipScore:
        """Loads the image and prompt embeddings; the training pairs are not used."""
        self.ids_, self.emb_ = image_embeddings(side, self.encoder)
        self.text_ids_, self.text_emb_ = text_embeddings(side, self.encoder)
        if self.text_emb_.shape[1] != self.emb_.shape[1]:
            raise DataError(f"prompt embeddings have dimension {self.text_emb_.shape[1]}, "
                            f"image embeddings {self.emb_.shape[1]}",
                            rule="image and prompt embeddings come from the same CLIP model")
        return self

    def score(self, user_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(image_ids, dtype=object).astype(str)
        rows = lookup(self.ids_, wanted)
        trow = self.text_ids_.get_indexer(wanted)
        if (trow < 0).any():
            bad = str(wanted[int(np.flatnonzero(trow < 0)[0])])
            raise DataError(f"image {bad!r} has no prompt embedding",
                            rule="every scored image has an embedded prompt")
        e = np.asarray(self.emb_[rows], np.float64)
        t = np.asarray(self.text_emb_[trow], np.float64)
        norm = np.linalg.norm(e, axis=1) * np.linalg.norm(t, axis=1)
        dot = np.einsum("ij,ij->i", e, t)
        return np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0).astype(np.float32)
