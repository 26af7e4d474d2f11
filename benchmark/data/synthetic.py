"""Synthetic data: a seeded generative world whose ground truth is known (DESIGN.md, "Data").

The model, in the order it is drawn (t in [0, 1] is time over the data period):

- ``n_clusters`` style clusters: unit centres in a ``d_style`` space, with Dirichlet sizes and a
  pseudo-word vocabulary each.
- users: taste0 = normalise(centre + noise); taste(t) = normalise(taste0 + t * drift_u), the drift
  heading for another cluster; an activity window [start_u, end_u]; image and like counts with
  power-law (Pareto) tails above a floor; a log "fame" that makes their images popular.
- LoRAs (ids in creation order, created over [-lora_prehistory, 1)): a creator among the
  uploaders, mostly in the creator's cluster; style = normalise(centre + noise); Zipf popularity
  (a random rank per LoRA); a base model with skewed probabilities; tags from the cluster's words.
- images: user u at time t picks 1-3 distinct LoRAs, among those created by t, with probability
  ∝ popularity_l * exp(beta * <taste_u(t), style_l>); style = normalise(mean LoRA style + noise);
  the prompt is words of the first LoRA's and the user's clusters, and ~``prompt_reuse`` of the
  images reuse one of the same user's earlier prompts.
- likes: user u at a time t in its window likes an image made by somebody else before t, with
  probability ∝ image_popularity * exp(beta * <taste_u(t), style_i>).
- preferences: for a random subset of users, pairs (one drawn like a like, one by popularity, in
  random order), label = 1 (a preferred) ~ Bernoulli(sigmoid(beta_pref * (utility_a -
  utility_b))) with the final taste.
- embeddings ("synthetic-clip", 512-d): normalise(common + P style + noise), P an orthonormal
  map, so that cosine similarity of embeddings follows similarity of styles, CLIP-like.

Sampling ∝ popularity * exp(beta * similarity) over 242K LoRAs or 5M images per event would be
too slow, so each event draws ``n_candidates`` candidates ∝ popularity (restricted to the items
that exist at its time: a prefix, since items are sorted by creation) and picks among them with
the Gumbel-max trick on beta * similarity (sampling-importance-resampling).

Contract with the ``oracle`` baseline (``truth/``, written with ``DatasetWriter.write_truth``):
the true utility of item i (a LoRA or an image) for user u is::

    beta * <user_taste_final[u], {lora,image}_style[i]> + {lora,image}_log_popularity[i]

where ``user_taste_final`` is the taste at the user's last image or like (uploads do not count)
and log popularities are log-probabilities (they sum to 1 after exp). The generator's choice
probabilities are ∝ exp(utility) at the user's time of the event, up to the candidate sampling
(which slightly favours popular items) and the time restriction; ranking by the utility is the
oracle. Base models are not matched between an image's LoRAs (not modelled).

Tables: ids are fixed-width strings (``u0000012``, ``l0000123``, ``i00001234``) so string order
is numeric order; ``interactions`` holds ``upload`` (creator -> LoRA at its creation),
``generate`` (user -> LoRA, one row per pair at its first use, weight = number of uses),
``create`` (user -> image) and ``like`` (user -> image, never one's own, after its creation).

Determinism: every chunk of work draws from its own stream ``default_rng([seed, stream, chunk])``
and chunk boundaries depend only on the config, so the same (config, seed) gives byte-identical
files with the same library versions, whatever the CPU and the BLAS thread count; the data set
carries no wall-clock time. No float goes through BLAS or LAPACK, whose sums are ordered by the
CPU kernel and the thread split: inner products are ``np.einsum(..., optimize=False)`` in float64
(numpy's own loops, no BLAS; float32 products are exact in float64), the orthonormal map is a
Householder QR written with those loops
(:func:`benchmark.data.synthetic_draws.orthonormal_columns`). The transcendentals
(``log``, ``exp``, ``**``) that numpy dispatches to CPU-specific SIMD code (AVX-512 and AVX2
results differ in the last bit) run in float64, and what is stored from them is rounded to
float32; a 1-ulp float64 difference changes a decision only at a tie to ~1e-16 (see
docs/reproducibility.md).
The ``full`` scale streams tables, embeddings and interactions chunk by chunk; what stays in memory
is per-image state every like needs (styles, times, popularity: ~0.8 GB). Measured on 2 cores:
tiny 0.07 s, small 3.4 s (0.3 GB), full 3.2 min with a peak RSS of 1.3 GB (11.7 GB on disk).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from benchmark.data import synthetic_draws as draws
from benchmark.data.store import Dataset, DatasetWriter
from benchmark.errors import DataError
from benchmark.schema import schema_of

__all__ = ["ENCODER", "GENERATOR_VERSION", "SCALES", "SyntheticConfig", "synthesize"]

GENERATOR_VERSION = "1"
ENCODER = "synthetic-clip"
ID_WIDTH = draws.ID_WIDTH

# random streams: (seed, stream[, chunk]) -> one independent generator each
_WORLD, _USERS, _LORAS, _LORA_EMB, _IMAGES, _LIKES, _PREFS = range(7)

@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator: a data set is a pure function of (config, seed)."""

    name: str = "custom"
    n_users: int = 4_000
    n_loras: int = 8_000
    n_images: int = 60_000
    d_style: int = 32
    emb_dim: int = 512
    n_clusters: int = 24
    cluster_concentration: float = 2.0  # Dirichlet prior of cluster sizes; lower = more skewed
    taste_noise: float = 0.7  # spread of a user's taste around its cluster centre
    style_noise: float = 0.7  # spread of a LoRA's style around its cluster centre
    image_noise: float = 0.15  # image style = normalise(mean of its LoRAs' styles + noise)
    drift: float = 0.6  # norm of a user's taste drift over the whole period
    beta: float = 8.0  # weight of taste in the utility (popularity has weight 1)
    beta_pref: float = 1.0  # sharpness of pairwise preference labels
    lora_zipf: float = 1.0  # LoRA popularity ∝ rank ** -lora_zipf
    creator_fame: float = 0.7  # mean of a user's log fame (Exp: Pareto-tailed popularity)
    image_appeal: float = 0.5  # mean of an image's own log appeal (Exp)
    activity_alpha: float = 1.3  # Pareto tail of images per user
    min_images_per_user: int = 5
    likes_per_user: float = 25.0  # mean
    min_likes_per_user: int = 6
    likes_alpha: float = 1.3  # Pareto tail of likes per user
    like_oversample: float = 1.3  # like events drawn per wanted like (repeats are dropped)
    loras_per_image: tuple[float, ...] = (0.55, 0.30, 0.15)  # P(1 LoRA), P(2), P(3)
    n_candidates: int = 64  # candidates per event for the importance sampling
    prompt_reuse: float = 0.4  # share of images reusing one of the user's earlier prompts
    words_per_cluster: int = 24
    uploader_frac: float = 0.33  # share of users who upload LoRAs
    uploader_alpha: float = 1.0  # Pareto tail of LoRAs per uploader
    pareto_cap: float = 1000.0  # largest Pareto weight (smallest: 1), so nobody owns the data
    creator_same_cluster: float = 0.8  # P(a LoRA is in its creator's taste cluster)
    lora_prehistory: float = 0.25  # LoRAs are created over [-lora_prehistory, 1)
    min_window: float = 0.15  # shortest user activity window, as a share of the period
    emb_common: float = 1.0  # norm of the direction every embedding shares (CLIP-like)
    emb_noise: float = 0.6  # norm of the isotropic embedding noise
    pref_user_frac: float = 0.25  # share of users with pairwise preferences
    pairs_per_user: int = 20
    base_models: tuple[str, ...] = (
        "SD 1.5",
        "SDXL 1.0",
        "Pony",
        "Illustrious",
        "Flux.1 D",
        "SD 2.1",
    )
    base_model_probs: tuple[float, ...] = (0.42, 0.26, 0.14, 0.08, 0.07, 0.03)
    start: str = "2023-01-01"  # t = 0, UTC
    period_days: int = 540  # t = 1
    chunk_images: int = 262_144  # users are processed in chunks of about this many images
    chunk_likes: int = 262_144
    block: int = 8_192  # events per vectorised candidate-sampling block

    def check(self) -> None:
        """Raise :class:`DataError` for a config the generator cannot honour."""
        problems = []
        if min(self.n_users, self.n_loras, self.n_images, self.n_clusters) < 1:
            problems.append("counts must be positive")
        if self.n_images < self.n_users * self.min_images_per_user:
            problems.append("n_images < n_users * min_images_per_user")
        if self.likes_per_user < self.min_likes_per_user or not self.loras_per_image:
            problems.append("likes_per_user < min_likes_per_user, or no loras_per_image")
        if self.n_users >= 10 ** ID_WIDTH["u"] or self.n_loras >= 10 ** ID_WIDTH["l"]:
            problems.append("too many users or LoRAs for the id width")
        if self.n_images >= 10 ** ID_WIDTH["i"]:
            problems.append("too many images for the id width")
        if len(self.base_models) != len(self.base_model_probs):
            problems.append("base_models and base_model_probs differ in length")
        if self.words_per_cluster < 6:
            problems.append("words_per_cluster must be >= 6")
        if problems:
            raise DataError("; ".join(problems), rule=f"synthetic config {self.name!r}")


SCALES: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        name="tiny",
        n_users=100,
        n_loras=150,
        n_images=1_500,
        n_clusters=6,
        likes_per_user=15.0,
        pairs_per_user=10,
    ),
    "small": SyntheticConfig(name="small"),
    "full": SyntheticConfig(
        name="full",
        n_users=57_000,
        n_loras=242_000,
        n_images=5_000_000,
        n_clusters=64,
        likes_per_user=30.0,
    ),
}


def synthesize(
    scale: str | SyntheticConfig,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    progress: bool = True,
) -> Dataset:
    """Build the synthetic data set ``scale`` (a name in :data:`SCALES` or a config) in ``out``."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise DataError(f"unknown synthetic scale {scale!r}", rule=f"one of {list(SCALES)}")
        cfg = SCALES[scale]
    else:
        cfg = scale
    cfg.check()
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}", rule="synthetic seed")
    meta = {
        "name": f"synthetic-{cfg.name}",
        "source": "synthetic",
        "version": GENERATOR_VERSION,
        "scale": cfg.name,
        "seed": seed,
        "config": asdict(cfg),
    }
    with DatasetWriter(out, meta) as writer:
        _Generator(cfg, seed, writer, progress).run()
    return Dataset(out)


# helpers ----------------------------------------------------------------------------------------
class _Generator:
    """Holds the world's arrays while the phases stream their tables into the writer."""

    def __init__(self, cfg: SyntheticConfig, seed: int, writer: DatasetWriter, progress: bool):
        self.cfg, self.seed, self.w, self.progress = cfg, seed, writer, progress
        start = datetime.fromisoformat(cfg.start)
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
        self.t0 = int(start.timestamp())
        self.period_s = cfg.period_days * 86_400
        self.kmax = len(cfg.loras_per_image)

    def run(self) -> None:
        cfg = self.cfg
        self._world()
        self._users()
        self._loras()
        self.w.open_table("interactions", schema_of("interactions"))
        self._write_loras()
        self._images()
        self._likes()
        self.w.close_table("interactions")
        self.user_taste_final = self._taste(np.arange(cfg.n_users), self.last_t)
        self._preferences()
        self.w.write_truth(
            {
                "user_taste_final": self.user_taste_final.astype(np.float32),
                "lora_style": self.lora_style,
                "image_style": self.image_style,
                "lora_log_popularity": self.lora_log_pop.astype(np.float32),
                "image_log_popularity": self.image_log_pop.astype(np.float32),
            },
            {
                "beta": float(cfg.beta),
                "beta_pref": float(cfg.beta_pref),
                "utility": "beta * <user_taste_final[u], style[i]> + log_popularity[i]",
                "seed": self.seed,
                "config": asdict(cfg),
                "period": {"start": self.t0, "end": self.t0 + self.period_s, "unit": "s"},
                "generator_version": GENERATOR_VERSION,
            },
        )

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit_scale=True, disable=not self.progress, leave=False)

    def _seconds(self, t: np.ndarray) -> pa.Array:
        secs = self.t0 + np.floor(t * self.period_s).astype(np.int64)
        return pa.array(secs.astype("datetime64[s]"))

    def _taste(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        x = self.taste0[users] + t.astype(np.float32)[:, None] * self.drift[users]
        return draws.normalise(x)

    def _interactions(
        self,
        user: np.ndarray,
        item: pa.Array,
        item_kind: str,
        kind: str,
        t: np.ndarray,
        weight: np.ndarray | None = None,
    ) -> None:
        n = len(user)
        self.w.append(
            "interactions",
            pa.table(
                {
                    "user_id": draws.ids("u", user),
                    "item_id": item,
                    "item_kind": pa.repeat(item_kind, n),
                    "kind": pa.repeat(kind, n),
                    "timestamp": self._seconds(t),
                    "weight": pa.array(
                        np.ones(n, np.float32) if weight is None else weight.astype(np.float32)
                    ),
                }
            ),
        )

    def _embed(
        self, sink: _RowSink, start: int, style: np.ndarray, rng: np.random.Generator
    ) -> None:
        """CLIP-like rows: normalise(common + P style + noise), written in blocks."""
        for sl in draws.blocks(len(style), self.cfg.block):
            e = draws.matmul(style[sl], self.proj).astype(np.float32)  # no BLAS: see draws.matmul
            e += self.common
            e += draws.noise(rng, e.shape, self.cfg.emb_noise)
            sink.write(start + sl.start, draws.normalise(e))

    # phases -------------------------------------------------------------------------------------
    def _world(self) -> None:
        cfg, rng = self.cfg, draws.rng(self.seed, _WORLD)
        self.centres = draws.normalise(rng.standard_normal((cfg.n_clusters, cfg.d_style)))
        self.cluster_p = rng.dirichlet(np.full(cfg.n_clusters, cfg.cluster_concentration))
        # orthonormal columns: one shared direction, then a map preserving inner products
        basis = draws.orthonormal_columns(rng.standard_normal((cfg.emb_dim, cfg.d_style + 1)))
        self.common = (cfg.emb_common * basis[:, 0]).astype(np.float32)
        self.proj = np.ascontiguousarray(basis[:, 1:].T, dtype=np.float32)
        words = draws.pseudo_words(rng, cfg.n_clusters * cfg.words_per_cluster)
        # vocabulary: cluster c's words at [c * V, (c + 1) * V), generic words after them
        self.vocab = pa.array(np.concatenate([words, np.array(draws.GENERIC_WORDS)]))
        self.n_cluster_words = len(words)

    def _users(self) -> None:
        cfg, rng = self.cfg, draws.rng(self.seed, _USERS)
        n, d = cfg.n_users, cfg.d_style
        self.user_cluster = rng.choice(cfg.n_clusters, size=n, p=self.cluster_p)
        self.taste0 = draws.normalise(
            self.centres[self.user_cluster].astype(np.float32)
            + draws.noise(rng, (n, d), cfg.taste_noise)
        )
        target = rng.choice(cfg.n_clusters, size=n, p=self.cluster_p)
        heading = self.centres[target] - self.taste0 + draws.noise(rng, (n, d), 0.5)
        self.drift = (cfg.drift * draws.normalise(heading)).astype(np.float32)
        self.win_start = rng.random(n) * (1.0 - cfg.min_window)
        length = cfg.min_window + rng.random(n) * (1.0 - cfg.min_window)
        self.win_end = np.minimum(1.0, self.win_start + length)
        self.n_img = draws.power_counts(
            rng, n, cfg.n_images, cfg.min_images_per_user, cfg.activity_alpha, cfg.pareto_cap
        )
        n_likes = round(n * cfg.likes_per_user)
        self.n_likes = draws.power_counts(
            rng, n, n_likes, cfg.min_likes_per_user, cfg.likes_alpha, cfg.pareto_cap
        )
        self.log_fame = rng.exponential(cfg.creator_fame, n)
        uploader = rng.random(n) < cfg.uploader_frac
        uploader[rng.integers(0, n)] = True
        self.uploaders = np.flatnonzero(uploader)
        self.last_t = np.zeros(n)

    def _loras(self) -> None:
        cfg, rng = self.cfg, draws.rng(self.seed, _LORAS)
        n, pre = cfg.n_loras, cfg.lora_prehistory
        # ids in creation order, so "exists at t" is a prefix; the oldest opens the history
        self.lora_t = np.sort(rng.random(n)) * (1.0 + pre) - pre
        self.lora_t[0] = -pre
        weights = draws.pareto(rng, cfg.uploader_alpha, len(self.uploaders), cfg.pareto_cap)
        self.lora_creator = self.uploaders[
            rng.choice(len(self.uploaders), size=n, p=weights / weights.sum())
        ]
        own = rng.random(n) < cfg.creator_same_cluster
        other = rng.choice(cfg.n_clusters, size=n, p=self.cluster_p)
        self.lora_cluster = np.where(own, self.user_cluster[self.lora_creator], other)
        self.lora_style = draws.normalise(
            self.centres[self.lora_cluster].astype(np.float32)
            + draws.noise(rng, (n, cfg.d_style), cfg.style_noise)
        )
        log_w = -cfg.lora_zipf * np.log(rng.permutation(n) + 1.0)
        self.lora_log_pop = log_w - draws.logsumexp(log_w)
        self.lora_cum = np.cumsum(np.exp(self.lora_log_pop))
        self.lora_base = rng.choice(
            len(cfg.base_models),
            size=n,
            p=np.asarray(cfg.base_model_probs) / sum(cfg.base_model_probs),
        )
        v = cfg.words_per_cluster
        n_tags = rng.integers(2, 6, n)
        tag_idx = self.lora_cluster[:, None] * v + draws.distinct_draws(rng, n, v, 5)
        self.lora_tag_valid = np.arange(5) < n_tags[:, None]
        self.lora_tag_idx = tag_idx[self.lora_tag_valid]

    def _write_loras(self) -> None:
        cfg, n = self.cfg, self.cfg.n_loras
        users = np.arange(cfg.n_users)
        self.w.write_table("users", pa.table({"user_id": draws.ids("u", users)}),
                           schema_of("users"))
        self.lora_ids = draws.ids("l", np.arange(n))
        tags = draws.list_array(self.vocab.take(pa.array(self.lora_tag_idx)), self.lora_tag_valid)
        self.w.write_table(
            "loras",
            pa.table(
                {
                    "lora_id": self.lora_ids,
                    "creator_id": draws.ids("u", self.lora_creator),
                    "base_model": pa.array(np.asarray(cfg.base_models)[self.lora_base]),
                    "tags": tags,
                    "created_at": self._seconds(self.lora_t),
                }
            ),
            schema_of("loras"),
        )
        self._interactions(self.lora_creator, self.lora_ids, "lora", "upload", self.lora_t)
        sink = _RowSink(self.w, "lora", n, cfg.emb_dim)
        self._embed(sink, 0, self.lora_style, draws.rng(self.seed, _LORA_EMB))
        sink.close()
        self.w.write_embedding_ids(ENCODER, "lora", self.lora_ids)

    def _images(self) -> None:
        cfg, n = self.cfg, self.cfg.n_images
        self.image_style = np.empty((n, cfg.d_style), np.float32)
        self.image_t = np.empty(n)
        self.image_user = np.empty(n, np.int32)
        self.image_log_w = np.empty(n)
        self.w.open_table("images", schema_of("images"))
        sink = _RowSink(self.w, "image", n, cfg.emb_dim)
        # reuse probability among non-first images, so that unique prompts ~ (1 - reuse) * n
        self.reuse_p = min(1.0, cfg.prompt_reuse * n / max(1, n - cfg.n_users))
        g0 = 0
        with self._bar(n, "images") as bar:
            for c, (u0, u1) in enumerate(draws.chunks(self.n_img, cfg.chunk_images)):
                g1 = g0 + int(self.n_img[u0:u1].sum())
                self._image_chunk(draws.rng(self.seed, _IMAGES, c), u0, u1, g0, g1, sink)
                bar.update(g1 - g0)
                g0 = g1
        sink.close()
        self.w.close_table("images")
        self.w.write_embedding_ids(ENCODER, "image", draws.ids("i", np.arange(n)))
        self.image_log_pop = self.image_log_w - draws.logsumexp(self.image_log_w)

    def _image_chunk(
        self, rng: np.random.Generator, u0: int, u1: int, g0: int, g1: int, sink: _RowSink
    ) -> None:
        cfg, n = self.cfg, g1 - g0
        counts = self.n_img[u0:u1]
        local = np.repeat(np.arange(u1 - u0), counts)
        users = u0 + local
        key = local + rng.random(n)
        key.sort()  # uniform times, sorted within each user
        t = self.win_start[users] + (self.win_end[users] - self.win_start[users]) * (key - local)
        k = 1 + rng.choice(
            self.kmax, size=n, p=np.asarray(cfg.loras_per_image) / sum(cfg.loras_per_image)
        )
        picks = np.empty((n, self.kmax), np.int64)
        for sl in draws.blocks(n, cfg.block):
            avail = np.searchsorted(self.lora_t, t[sl], side="right")
            cand = draws.draw_prefix(self.lora_cum, avail,
                                     rng.random((len(avail), cfg.n_candidates)))
            score = draws.gumbel_scores(
                rng, self.lora_style, cand, self._taste(users[sl], t[sl]), cfg.beta
            )
            picks[sl] = draws.top_distinct(score, cand, k[sl], self.kmax)
        valid = picks >= 0
        mean = (self.lora_style[np.where(valid, picks, 0)] * valid[..., None]).sum(axis=1)
        mean /= valid.sum(axis=1, keepdims=True).astype(np.float32)
        style = draws.normalise(mean + draws.noise(rng, mean.shape, cfg.image_noise))
        log_w = self.log_fame[users] + rng.exponential(cfg.image_appeal, n)
        prompts = self._prompts(rng, counts, local, users, picks[:, 0])

        ids = draws.ids("i", np.arange(g0, g1))
        flat = picks[valid]
        self.w.append(
            "images",
            pa.table(
                {
                    "image_id": ids,
                    "user_id": draws.ids("u", users),
                    "lora_ids": draws.list_array(self.lora_ids.take(pa.array(flat)), valid),
                    "prompt": prompts,
                    "created_at": self._seconds(t),
                }
            ),
        )
        # generate: one row per (user, LoRA), first use time, weight = number of uses
        row = np.repeat(np.arange(n), valid.sum(axis=1))
        pair = users[row].astype(np.int64) * cfg.n_loras + flat
        pair, first, uses = np.unique(pair, return_index=True, return_counts=True)
        g_user, g_lora, g_t = pair // cfg.n_loras, pair % cfg.n_loras, t[row[first]]
        order = np.lexsort((g_t, g_user))
        self._interactions(
            g_user[order],
            self.lora_ids.take(pa.array(g_lora[order])),
            "lora",
            "generate",
            g_t[order],
            uses[order],
        )
        self._interactions(users, ids, "image", "create", t)

        self._embed(sink, g0, style, rng)
        self.image_style[g0:g1] = style
        self.image_t[g0:g1] = t
        self.image_user[g0:g1] = users
        self.image_log_w[g0:g1] = log_w
        self.last_t[u0:u1] = t[np.cumsum(counts) - 1]

    def _prompts(
        self,
        rng: np.random.Generator,
        counts: np.ndarray,
        local: np.ndarray,
        users: np.ndarray,
        first_lora: np.ndarray,
    ) -> pa.Array:
        """Prompt texts: new ones from cluster words, the rest copies of the user's earlier."""
        cfg, n = self.cfg, len(local)
        first = (np.cumsum(counts) - counts)[local]
        pos = np.arange(n) - first
        reuse = (pos > 0) & (rng.random(n) < self.reuse_p)
        src = np.arange(n)
        src[reuse] = first[reuse] + (rng.random(int(reuse.sum())) * pos[reuse]).astype(np.int64)
        while True:  # pointer jumping: a copy of a copy is a copy of the original
            nxt = src[src]
            if np.array_equal(nxt, src):
                break
            src = nxt
        orig = np.flatnonzero(src == np.arange(n))
        m, v = len(orig), cfg.words_per_cluster
        style_words = self.lora_cluster[first_lora[orig]][:, None] * v + draws.distinct_draws(
            rng, m, v, 5
        )
        user_words = (self.user_cluster[users[orig]][:, None] * v
                      + draws.distinct_draws(rng, m, v, 2))
        generic = self.n_cluster_words + draws.distinct_draws(rng, m, len(draws.GENERIC_WORDS), 2)
        words = np.concatenate([generic, style_words, user_words], axis=1)
        n_words = np.array([2, 5, 2])
        lo = np.array([1, 3, 1])
        keep = np.concatenate(
            [
                np.arange(k) < rng.integers(a, k + 1, m)[:, None]
                for a, k in zip(lo, n_words, strict=True)
            ],
            axis=1,
        )
        text = pc.binary_join(draws.list_array(self.vocab.take(pa.array(words[keep])), keep), " ")
        rank = np.cumsum(src == np.arange(n)) - 1
        return text.take(pa.array(rank[src]))

    def _image_index(self) -> None:
        """Images sorted by creation time with cumulative popularity: "exists by t" = prefix."""
        self.by_time = np.argsort(self.image_t, kind="stable")
        self.t_sorted = self.image_t[self.by_time]
        self.image_cum = np.cumsum(np.exp(self.image_log_pop[self.by_time]))

    def _likes(self) -> None:
        cfg = self.cfg
        self._image_index()
        # draw more events than wanted: repeats of a (user, image) pair are dropped afterwards
        n_draws = np.ceil(self.n_likes * cfg.like_oversample).astype(np.int64)
        with self._bar(int(n_draws.sum()), "likes") as bar:
            for c, (u0, u1) in enumerate(draws.chunks(n_draws, cfg.chunk_likes)):
                rng = draws.rng(self.seed, _LIKES, c)
                users = np.repeat(np.arange(u0, u1), n_draws[u0:u1])
                span = self.win_end[users] - self.win_start[users]
                t = self.win_start[users] + span * rng.random(len(users))
                liked = np.empty(len(users), np.int64)
                for sl in draws.blocks(len(users), cfg.block):
                    avail = np.searchsorted(self.t_sorted, t[sl], side="right")
                    liked[sl] = self._pick_images(rng, users[sl], t[sl], avail)
                    bar.update(sl.stop - sl.start)
                ok = liked >= 0
                users, t, liked = users[ok], t[ok], liked[ok]
                order = np.lexsort((t, users))  # earliest like of a pair first, then dedup
                users, t, liked = users[order], t[order], liked[order]
                _, first = np.unique(
                    users.astype(np.int64) * cfg.n_images + liked, return_index=True
                )
                users, t, liked = users[first], t[first], liked[first]
                # a random subset of at most n_likes[u] per user, then in (user, time) order
                order = np.lexsort((rng.random(len(users)), users))
                rank = np.arange(len(order)) - np.searchsorted(users[order], users[order])
                keep = np.sort(order[rank < self.n_likes[users[order]]])
                users, t, liked = users[keep], t[keep], liked[keep]
                order = np.lexsort((t, users))
                users, t, liked = users[order], t[order], liked[order]
                self._interactions(users, draws.ids("i", liked), "image", "like", t)
                np.maximum.at(self.last_t, users, t)

    def _pick_images(
        self, rng: np.random.Generator, users: np.ndarray, t: np.ndarray, avail: np.ndarray
    ) -> np.ndarray:
        """One image per event ∝ popularity * exp(beta * sim), made by others before t; -1: none."""
        cfg = self.cfg
        pos = draws.draw_prefix(
            self.image_cum, np.maximum(avail, 1), rng.random((len(users), cfg.n_candidates))
        )
        cand = self.by_time[pos]
        score = draws.gumbel_scores(rng, self.image_style, cand, self._taste(users, t), cfg.beta)
        score[(self.image_user[cand] == users[:, None]) | (avail == 0)[:, None]] = -np.inf
        best = draws.top_distinct(score, cand, np.ones(len(users), np.int64), 1)[:, 0]
        return best

    def _preferences(self) -> None:
        cfg, n_img = self.cfg, self.cfg.n_images
        rng = draws.rng(self.seed, _PREFS)
        chosen = np.flatnonzero(rng.random(cfg.n_users) < cfg.pref_user_frac)
        users = np.repeat(chosen, cfg.pairs_per_user)
        t = self.last_t[users]
        a = np.empty(len(users), np.int64)
        b = np.empty(len(users), np.int64)
        with self._bar(len(users), "preferences") as bar:
            for sl in draws.blocks(len(users), cfg.block):
                a[sl] = self._pick_images(rng, users[sl], t[sl], np.full(sl.stop - sl.start, n_img))
                b[sl] = self.by_time[
                    draws.draw_prefix(
                        self.image_cum,
                        np.full(sl.stop - sl.start, n_img),
                        rng.random((sl.stop - sl.start, 1)),
                    )[:, 0]
                ]
                bar.update(sl.stop - sl.start)
        swap = rng.random(len(users)) < 0.5
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        util = [
            cfg.beta * np.einsum("ij,ij->i", self.user_taste_final[users], self.image_style[x])
            + self.image_log_pop[x]
            for x in (np.maximum(a, 0), b)
        ]
        p = 1.0 / (1.0 + np.exp(-cfg.beta_pref * (util[0] - util[1])))
        label = (rng.random(len(users)) < p).astype(np.float32)
        ok = (
            (a >= 0)
            & (a != b)
            & (self.image_user[b] != users)
            & (self.image_user[np.maximum(a, 0)] != users)
        )
        self.w.write_table(
            "preferences",
            pa.table(
                {
                    "user_id": draws.ids("u", users[ok]),
                    "image_a": draws.ids("i", a[ok]),
                    "image_b": draws.ids("i", b[ok]),
                    "label": pa.array(label[ok]),
                }
            ),
            schema_of("preferences"),
        )


class _RowSink:
    """Fills an ``.npy`` made by ``DatasetWriter.open_embeddings`` with positioned writes.

    Writing through the memmap itself would keep every touched page resident in this process
    (10 GB at the full scale); plain writes go to the page cache and leave RSS flat.
    """

    def __init__(self, writer: DatasetWriter, kind: str, rows: int, dim: int):
        mm = writer.open_embeddings(ENCODER, kind, (rows, dim))
        self.offset, self.row_bytes = int(mm.offset), dim * 4
        del mm
        self.fd = os.open(writer.embedding_path(ENCODER, kind), os.O_WRONLY)

    def write(self, row: int, values: np.ndarray) -> None:
        buf = memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")
        pos = self.offset + row * self.row_bytes
        while buf:
            done = os.pwrite(self.fd, buf, pos)
            buf, pos = buf[done:], pos + done

    def close(self) -> None:
        os.close(self.fd)


def _main() -> None:  # pragma: no cover - manual measurement helper
    import sys
    import time

    scale, out = sys.argv[1], Path(sys.argv[2])
    start = time.perf_counter()
    synthesize(scale, out, seed=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(f"{scale}: {time.perf_counter() - start:.1f} s -> {out}")


if __name__ == "__main__":  # pragma: no cover
    _main()
