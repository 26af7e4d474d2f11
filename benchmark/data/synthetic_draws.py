"""The synthetic world's building blocks: deterministic numerics and seeded draws.

Why a module of their own: every float here is computed without BLAS or LAPACK (numpy's own
loops, float64 accumulation), so the world is byte-identical whatever the thread count or
CPU (docs/reproducibility.md); the LoRA weight generator and the synthetic text encoder
use the same functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmark.errors import DataError

#: digits after the prefix, wide enough for the full scale, so string order = numeric order
ID_WIDTH = {"u": 7, "l": 7, "i": 8}

GENERIC_WORDS = (
    "masterpiece",
    "best quality",
    "highly detailed",
    "8k",
    "sharp focus",
    "cinematic lighting",
    "portrait",
    "full body",
    "close-up",
    "wide shot",
    "soft light",
    "volumetric light",
    "depth of field",
    "intricate",
    "trending",
    "ultra realistic",
    "dramatic",
    "vibrant colors",
    "muted colors",
    "night",
    "sunset",
    "studio lighting",
    "bokeh",
    "octane render",
    "concept art",
    "illustration",
    "photo",
    "digital painting",
    "1girl",
    "1boy",
    "solo",
    "outdoors",
    "indoors",
    "looking at viewer",
    "smile",
    "landscape",
)
ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "ch",
    "sh",
    "th",
    "kr",
    "br",
    "dr",
)
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io")
CODAS = ("", "", "", "n", "r", "l", "s", "x")


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 inner products along the last axis (broadcasting), with numpy's own loops.

    ``einsum`` with ``optimize=False`` never calls the BLAS, so the order of the sum is numpy's,
    the same for every CPU kernel and thread count; float32 inputs are exact in float64.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.einsum("...i,...i->...", a, b, optimize=False)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (2-d) in float64 with numpy's own loops: no BLAS (see :func:`rowdot`)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.einsum("ij,jk->ik", a, b, optimize=False)


def orthonormal_columns(a: np.ndarray) -> np.ndarray:
    """Q of the reduced QR of ``a`` (m x n, m >= n): ``np.linalg.qr(a)[0]`` up to rounding.

    Householder reflections as LAPACK's dgeqr2/dorg2r compute them (same signs: R's diagonal
    is -sign(alpha) * norm), in float64 with numpy's own loops: LAPACK's blocked QR updates go
    through the BLAS, whose summation order depends on the CPU kernel and the thread count.
    """
    r = np.array(a, dtype=np.float64)
    m, n = r.shape
    vs, taus = [], []
    for k in range(n):
        x = r[k:, k]
        alpha, tail = float(x[0]), float(rowdot(x[1:], x[1:]))
        if tail == 0.0:  # nothing below the diagonal: H = I
            vs.append(np.zeros(m - k))
            taus.append(0.0)
            continue
        beta = -np.copysign(np.sqrt(alpha * alpha + tail), alpha)
        v = x / (alpha - beta)
        v[0] = 1.0
        tau = (beta - alpha) / beta
        r[k:, k:] -= (tau * v)[:, None] * np.einsum("i,ij->j", v, r[k:, k:], optimize=False)
        vs.append(v)
        taus.append(tau)
    q = np.eye(m, n)
    for k in reversed(range(n)):  # Q = H_0 ... H_{n-1} I[:, :n], applied from the right end
        v, tau = vs[k], taus[k]
        q[k:, k:] -= (tau * v)[:, None] * np.einsum("i,ij->j", v, q[k:, k:], optimize=False)
    return q


def normalise(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return x / np.maximum(norm, 1e-12).astype(x.dtype)


def noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Isotropic float32 noise whose rows have norm ~``scale``."""
    z = rng.standard_normal(shape, dtype=np.float32)
    z *= np.float32(scale / np.sqrt(shape[-1]))
    return z


def logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m, dtype=np.float64).sum()))


def ids(prefix: str, index: np.ndarray) -> pa.Array:
    """Fixed-width string ids (``u0000012``) for integer indices, vectorised in arrow."""
    digits = pc.utf8_lpad(
        pa.array(index, pa.int64()).cast(pa.string()), width=ID_WIDTH[prefix], padding="0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def pareto(rng: np.random.Generator, alpha: float, n: int, cap: float) -> np.ndarray:
    """Pareto(alpha) weights in [1, cap]: truncated, so one draw cannot own the whole data set."""
    u = rng.random(n)
    return (1.0 - u * (1.0 - cap**-alpha)) ** (-1.0 / alpha)


def power_counts(
    rng: np.random.Generator, n: int, total: int, floor: int, alpha: float, cap: float
) -> np.ndarray:
    """``n`` counts summing to ``total``: ``floor`` each plus a Pareto(alpha)-weighted share."""
    weights = pareto(rng, alpha, n, cap)
    return floor + rng.multinomial(total - n * floor, weights / weights.sum())


def chunks(counts: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges of entities holding about ``size`` counted rows each."""
    starts = np.cumsum(counts) - counts
    cut = np.flatnonzero(np.diff(starts // size)) + 1
    edges = np.concatenate([[0], cut, [len(counts)]])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def blocks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def draw_prefix(cum: np.ndarray, avail: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn ∝ weight among the first ``avail[i]`` entries (``cum``: inclusive cumsum).

    The queries are sorted before the binary search: on a multi-million-entry table that is
    ~4x faster, because consecutive searches then hit the same cache lines.
    """
    x = (u * cum[avail - 1][:, None]).ravel()
    order = np.argsort(x)
    idx = np.empty(x.size, np.int64)
    idx[order] = np.searchsorted(cum, x[order], side="right")
    return np.minimum(idx.reshape(u.shape), (avail - 1)[:, None])


def gumbel_scores(
    rng: np.random.Generator, style: np.ndarray, cand: np.ndarray, taste: np.ndarray, beta: float
) -> np.ndarray:
    """beta * <taste, style[cand]> + Gumbel noise: its argmax samples ∝ exp(beta * sim).

    float64, without BLAS (:func:`rowdot`); the Gumbel noise is -log(-log(g)) of a float32
    uniform, taken in float64 (numpy's float32 ``log`` differs between AVX2 and older CPUs).
    """
    n, m = cand.shape
    taste = taste[:, None, :]
    score = np.empty((n, m))
    for sl in blocks(n, 1024):  # gathered float64 styles of 1,024 events at a time: 16 MB
        sty = np.take(style, cand[sl].ravel(), axis=0).reshape(sl.stop - sl.start, m, -1)
        score[sl] = rowdot(sty, taste[sl])
    score *= beta
    g = rng.random((n, m), dtype=np.float32)
    np.maximum(g, np.float32(1e-30), out=g)
    score -= np.log(-np.log(g.astype(np.float64)))
    return score


def top_distinct(score: np.ndarray, cand: np.ndarray, k: np.ndarray, kmax: int) -> np.ndarray:
    """The best ``k[i]`` distinct candidates per row (Gumbel-top-k), left-aligned, -1 padded."""
    rows = np.arange(len(cand))
    out = np.full((len(cand), kmax), -1, np.int64)
    for r in range(kmax):
        j = np.argmax(score, axis=1)
        chosen = cand[rows, j]
        ok = (r < k) & np.isfinite(score[rows, j])
        out[ok, r] = chosen[ok]
        if r + 1 < kmax:
            score[cand == chosen[:, None]] = -np.inf
    return out


def distinct_draws(rng: np.random.Generator, n: int, size: int, k: int) -> np.ndarray:
    """[n, k] indices in [0, size), distinct within a row: start + j * step with step coprime."""
    steps = np.array([s for s in range(1, size) if np.gcd(s, size) == 1])
    start = rng.integers(0, size, n)
    step = steps[rng.integers(0, len(steps), n)]
    return (start[:, None] + np.arange(k) * step[:, None]) % size


def list_array(values: pa.Array, valid: np.ndarray) -> pa.ListArray:
    """A list array whose row i holds the ``valid[i].sum()`` next entries of ``values``."""
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def pseudo_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct pronounceable words (the cluster vocabularies)."""
    m = 4 * n + 64
    parts = []
    for syllable in range(3):
        onset = np.array(ONSETS)[rng.integers(0, len(ONSETS), m)]
        vowel = np.array(VOWELS)[rng.integers(0, len(VOWELS), m)]
        if syllable == 2:  # a third syllable for about half of the words
            keep = rng.random(m) < 0.5
            onset, vowel = np.where(keep, onset, ""), np.where(keep, vowel, "")
        parts += [onset, vowel]
    parts.append(np.array(CODAS)[rng.integers(0, len(CODAS), m)])
    words = pc.binary_join_element_wise(*[pa.array(p) for p in parts], "").to_numpy(
        zero_copy_only=False
    )
    _, first = np.unique(words, return_index=True)
    first = np.sort(first)
    if len(first) < n:
        raise DataError("could not draw enough distinct words", rule="synthetic vocabulary")
    return words[first[:n]]


# the generator ----------------------------------------------------------------------------------
