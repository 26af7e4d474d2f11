"""Personal preference pairs derived from behaviour in an ImageGem-schema data set.

ImageGem has no per-user likes (SEEDS.md): the only personal signal about images is which
images a user *made*. Following ImageGem's own use of prompt clusters, a pair puts an image
the user made against an image someone else made from a similar prompt:

1. prompts are embedded — the data set's prompt embeddings
   (``embeddings/<encoder>/prompt.npy``, rows in ``prompt.ids.parquet`` order of image ids)
   when ``encoder`` is given, else a deterministic hashed bag of words (scikit-learn
   ``HashingVectorizer``, unigrams + bigrams, 2^16 features) weighted by TF-IDF over the
   unique prompts — and clustered with seeded k-means (``n_clusters`` default
   ``round(sqrt(#unique prompts))``); equal prompts share a cluster;
2. per user, up to ``pairs_per_user`` of their images (a seeded sample) are each paired with
   one image drawn uniformly (seeded) from the same cluster among images made by *other*
   users; own images whose cluster holds no other user's image give no pair (counted);
3. label 1 for the user's own image; the side it is put on (``image_a`` / ``image_b``) is a
   seeded coin so that labels are balanced.

Caveats (datasets/imagegem.md): creating is not preferring (a user may make an image they
dislike, or explore); the negative is not known to be disliked; popular prompts and LoRAs
dominate clusters (a popularity confound); cluster quality bounds how "matched" a pair is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.io import atomic_write_text
from benchmark.data.store import Dataset
from benchmark.errors import DataError
from benchmark.per_user import PAIR_COLUMNS

HASH_FEATURES = 2**16


def prompt_features(prompts: list[str], n_features: int = HASH_FEATURES) -> Any:
    """TF-IDF of hashed word uni/bigrams (sparse, rows L2-normalised); deterministic."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    counts = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False,
                               norm=None, lowercase=True).transform(prompts)
    return TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(counts)


def cluster_prompts(images: pd.DataFrame, *, dataset: Dataset | None = None,
                    encoder: str | None = None, n_clusters: int | None = None,
                    seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster id of each image's prompt (images without a prompt get -1) and a summary."""
    from sklearn.cluster import MiniBatchKMeans

    prompts = images["prompt"].astype(object).where(images["prompt"].notna(), None)
    has = prompts.map(lambda p: isinstance(p, str) and p.strip() != "").to_numpy(bool)
    labels = np.full(len(images), -1, np.int64)
    if encoder is not None:
        if dataset is None:
            raise DataError("prompt embeddings need the data set", rule="pass dataset=")
        emb = np.asarray(dataset.embeddings(encoder, "prompt"), dtype=np.float32)
        ids_path = dataset.path / "embeddings" / encoder / "prompt.ids.parquet"
        ids = pd.Index(pd.read_parquet(ids_path)["id"].astype(str))
        rows = ids.get_indexer(images["image_id"].astype(str).to_numpy(object))
        has &= rows >= 0
        x, unit_rows = emb[rows[has]], np.flatnonzero(has)
        features = f"embeddings/{encoder}/prompt.npy"
        n_units = len(unit_rows)
    else:
        uniq, inverse = np.unique(prompts[has].to_numpy(str), return_inverse=True)
        x = prompt_features(uniq.tolist()) if len(uniq) else None
        features = f"hashed TF-IDF (HashingVectorizer, 2^{int(np.log2(HASH_FEATURES))})"
        n_units = len(uniq)
    if n_units == 0:
        return labels, {"features": features, "n_clusters": 0, "n_units": 0}
    k = int(n_clusters or max(1, round(np.sqrt(n_units))))
    k = min(k, n_units)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3,
                         batch_size=min(4096, max(256, n_units)))
    unit_labels = km.fit_predict(x)
    if encoder is not None:
        labels[unit_rows] = unit_labels
    else:
        labels[np.flatnonzero(has)] = unit_labels[inverse]
    return labels, {"features": features, "n_clusters": k, "n_units": int(n_units)}


def derive_personal_pairs(
    dataset: Dataset,
    *,
    pairs_per_user: int = 20,
    n_clusters: int | None = None,
    encoder: str | None = None,
    seed: int = 0,
    max_tries: int = 16,
    out: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pairs (own image vs another user's image from the same prompt cluster), per user.

    Returns ``PAIR_COLUMNS`` + ``cluster`` (label 1 = ``image_a`` is the user's own image);
    ``frame.attrs["summary"]`` holds the construction's parameters and counts. With ``out``
    the pairs are also written as ``out`` (parquet) + ``out`` with suffix ``.json``.
    Sampling the negative rejects same-user draws up to ``max_tries`` times (vectorised).
    """
    if pairs_per_user < 1:
        raise ValueError(f"pairs_per_user must be >= 1, got {pairs_per_user}")
    images = dataset.arrow("images", ["image_id", "user_id", "prompt"]).to_pandas()
    images = images[images["user_id"].notna()].reset_index(drop=True)
    images["user_id"] = images["user_id"].astype(str)
    images["image_id"] = images["image_id"].astype(str)
    labels, info = cluster_prompts(images, dataset=dataset, encoder=encoder,
                                   n_clusters=n_clusters, seed=seed)
    rng = np.random.default_rng(seed)
    clustered = np.flatnonzero(labels >= 0)
    # own images: a seeded sample of at most pairs_per_user per user
    users = images["user_id"].to_numpy(object)[clustered]
    o = np.lexsort((rng.random(len(clustered)), users))
    su = users[o]
    rank = np.arange(len(su)) - np.searchsorted(su, su, side="left")
    own = np.sort(clustered[o[rank < pairs_per_user]])
    # candidate pool sorted by cluster, so a cluster is a contiguous range
    by_cluster = clustered[np.argsort(labels[clustered], kind="stable")]
    cl_sorted = labels[by_cluster]
    lo = np.searchsorted(cl_sorted, labels[own], side="left")
    hi = np.searchsorted(cl_sorted, labels[own], side="right")
    user_arr = images["user_id"].to_numpy(object)
    neg = np.full(len(own), -1, np.int64)
    todo = np.flatnonzero(hi - lo > 1)
    for _ in range(max_tries):
        if len(todo) == 0:
            break
        pick = by_cluster[lo[todo] + (rng.random(len(todo)) * (hi[todo] - lo[todo]))
                          .astype(np.int64)]
        ok = user_arr[pick] != user_arr[own[todo]]
        neg[todo[ok]] = pick[ok]
        todo = todo[~ok]
    found = neg >= 0
    own, neg = own[found], neg[found]
    ids = images["image_id"].to_numpy(object)
    swap = rng.random(len(own)) < 0.5
    pairs = pd.DataFrame({
        "user_id": user_arr[own],
        "image_a": np.where(swap, ids[neg], ids[own]),
        "image_b": np.where(swap, ids[own], ids[neg]),
        "label": np.where(swap, 0.0, 1.0).astype(np.float32),
        "cluster": labels[own],
    })
    summary = {**info, "pairs_per_user": pairs_per_user, "seed": seed, "encoder": encoder,
               "dataset": dataset.name, "n_pairs": int(len(pairs)),
               "n_users": int(pairs["user_id"].nunique()),
               "own_images_without_partner": int((~found).sum()),
               "images_without_prompt": int((labels < 0).sum())}
    pairs.attrs["summary"] = summary
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        pairs.to_parquet(out, index=False)
        atomic_write_text(out.with_suffix(".json"),
                          json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return pairs


__all__ = ["PAIR_COLUMNS", "cluster_prompts", "derive_personal_pairs", "prompt_features"]
