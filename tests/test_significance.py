"""Paired tests over users and Holm's correction, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.significance import (
    align,
    compare_with_best,
    holm,
    paired_bootstrap_p,
    wilcoxon_p,
)


def test_holm_on_known_pvalues():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.2]) == pytest.approx([0.2])
    assert holm([]) == []


def test_wilcoxon_exact_by_hand():
    # five positive differences, no ties: exact two-sided p = 2 / 2**5
    assert wilcoxon_p(np.array([1.0, 2, 3, 4, 5]), np.zeros(5)) == pytest.approx(0.0625)


def test_identical_vectors_are_not_significant():
    a = np.random.default_rng(0).random(50)
    assert wilcoxon_p(a, a) == 1.0
    assert paired_bootstrap_p(a, a) == 1.0
    out = compare_with_best({"x": ([f"u{i}" for i in range(50)], a),
                             "y": ([f"u{i}" for i in range(50)], a)})
    assert out["x"]["best"] and out["y"]["tied_with_best"]  # tie on the mean: x by name


def test_clearly_better_method_is_significant():
    rng = np.random.default_rng(1)
    good = (rng.random(300) < 0.8).astype(float)
    bad = (rng.random(300) < 0.2).astype(float)
    assert wilcoxon_p(good, bad) < 1e-10
    assert paired_bootstrap_p(good, bad) == pytest.approx(1 / 10_001)
    ids = [f"u{i}" for i in range(300)]
    out = compare_with_best({"bad": (ids, bad), "good": (ids, good), "same": (ids, good * 1.0)})
    assert out["good"]["best"] and out["good"]["p"] is None
    assert out["same"]["tied_with_best"] and out["same"]["p"] == 1.0
    assert not out["bad"]["tied_with_best"]
    assert out["bad"]["p_holm"] == pytest.approx(min(1.0, 2 * out["bad"]["p"]), rel=1e-6)


def test_bootstrap_is_seeded_and_small_shift_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.random(40)
    b = a + rng.normal(0, 0.2, 40)
    p1, p2 = paired_bootstrap_p(a, b, seed=3), paired_bootstrap_p(a, b, seed=3)
    assert p1 == p2 and 0.0 < p1 <= 1.0
    assert p1 > 0.05


def test_align_by_user_id():
    a, b = align(["u2", "u1", "u3"], [2.0, 1.0, 3.0], ["u3", "u1", "u9"], [30.0, 10.0, 90.0])
    assert a.tolist() == [1.0, 3.0] and b.tolist() == [10.0, 30.0]


def test_unknown_test_is_an_error():
    with pytest.raises(ValueError, match="unknown test"):
        compare_with_best({"x": (["u1"], [1.0])}, test="t-test")
