"""Paired significance tests over users: is a method significantly worse than the best?

One pure function per test. Per-user vectors come from the result records and
are aligned by ``user_id`` before any test; every p-value is two-sided. The
leaderboard compares every method with the best one per metric and corrects the
p-values across methods with Holm's step-down procedure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ALPHA = 0.05
TESTS = ("wilcoxon", "bootstrap")
TEST_DESCRIPTIONS = {
    "wilcoxon": "two-sided Wilcoxon signed-rank test over users, paired by user_id",
    "bootstrap": "two-sided paired bootstrap test over users, paired by user_id, "
                 "10,000 resamples, seeded",
}


def align(ids_a: Sequence[str], values_a: Sequence[float], ids_b: Sequence[str],
          values_b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The two vectors restricted to the users both have, in sorted user_id order."""
    a = dict(zip(map(str, ids_a), values_a, strict=True))
    b = dict(zip(map(str, ids_b), values_b, strict=True))
    common = sorted(a.keys() & b.keys())
    return (np.array([a[u] for u in common], dtype=np.float64),
            np.array([b[u] for u in common], dtype=np.float64))


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``a - b`` (zero differences dropped).

    All differences zero (e.g. identical vectors) gives p = 1.
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[np.abs(diff) > 1e-12]
    if len(diff) == 0:
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_bootstrap_p(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000,
                       seed: int = 0) -> float:
    """Two-sided paired bootstrap p-value of mean(a - b) = 0.

    Users are resampled with replacement; p is the share of resampled mean
    differences, centred on the observed one, at least as far from zero as the
    observed difference (with the +1 correction, so p > 0).
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diff)
    observed = float(diff.mean()) if n else 0.0
    if n == 0 or np.all(np.abs(diff - observed) < 1e-15):
        return 1.0 if abs(observed) < 1e-15 else 0.0
    rng = np.random.default_rng(seed)
    step = max(1, min(n_boot, 2_000_000 // n))
    means = np.empty(n_boot)
    for start in range(0, n_boot, step):
        size = min(step, n_boot - start)
        means[start:start + size] = diff[rng.integers(0, n, size=(size, n))].mean(axis=1)
    extreme = np.abs(means - observed) >= abs(observed) - 1e-15
    return float((extreme.sum() + 1) / (n_boot + 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return [float(v) for v in adjusted]


def compare_with_best(
    vectors: dict[str, tuple[Sequence[str], Sequence[float]]],
    test: str = "wilcoxon",
    alpha: float = ALPHA,
) -> dict[str, dict[str, Any]]:
    """Compare every method with the best (highest mean; ties by name) on one metric.

    ``vectors`` maps method -> (user_ids, per-user values). Returns, per method,
    ``best`` (bool), ``p`` (raw), ``p_holm`` (Holm-adjusted across the compared
    methods) and ``tied_with_best``: the best itself, or not significantly
    different from it at ``alpha`` after correction.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {TESTS}")
    if not vectors:
        return {}
    means = {m: float(np.mean(v)) if len(v) else float("-inf") for m, (_, v) in vectors.items()}
    best = sorted(means, key=lambda m: (-means[m], m))[0]
    others = sorted(m for m in vectors if m != best)
    raw = []
    for m in others:
        a, b = align(*vectors[best], *vectors[m])
        raw.append(wilcoxon_p(a, b) if test == "wilcoxon" else paired_bootstrap_p(a, b))
    adjusted = holm(raw)
    out: dict[str, dict[str, Any]] = {
        best: {"best": True, "p": None, "p_holm": None, "tied_with_best": True}
    }
    for m, p, q in zip(others, raw, adjusted, strict=True):
        out[m] = {"best": False, "p": round(p, 8), "p_holm": round(q, 8),
                  "tied_with_best": bool(q >= alpha)}
    return out
