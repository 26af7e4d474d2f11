"""Rating metrics count every user: constant scores are scored as ties, exclusions are shown."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.leaderboard import RATING_METRICS, build_tables, to_markdown
from benchmark.ratings import (
    EXCLUDE_REASONS,
    evaluate_ratings,
    make_rating_split,
    pair_accuracy_per_user,
    pearson_per_user,
    spearman_per_user,
)

EXACT = [f"u{i:02d}" for i in range(10)]      # the method knows these users' ratings
HARD = [f"u{i:02d}" for i in range(10, 40)]   # ... and is constant (or guesses) on these


def _ten_plus_thirty() -> tuple[np.ndarray, np.ndarray]:
    """40 users with test ratings 1..5 each (10 pairs of differently rated images each)."""
    users = np.repeat(EXACT + HARD, 5)
    truth = np.tile(np.arange(1.0, 6.0), 40)
    return users, truth


# ----------------------------------------------------------------------------- functions
def test_exact_on_10_constant_on_30_is_not_perfect():
    users, truth = _ten_plus_thirty()
    score = np.where(np.isin(users, EXACT), truth, 3.0)
    sp, pe = spearman_per_user(users, truth, score), pearson_per_user(users, truth, score)
    # (10 * 1 + 30 * 0) / 40 (before: the 30 were dropped and both read 1.0)
    assert sp.mean == 0.25 and pe.mean == 0.25
    assert (sp.n_users, sp.n_scored, sp.n_excluded, sp.n_constant_score) == (40, 40, 0, 30)
    assert sp.values.tolist() == [1.0] * 10 + [0.0] * 30
    assert sp.constant_score.tolist() == [False] * 10 + [True] * 30
    acc = pair_accuracy_per_user(users, truth, score).set_index("user_id")
    # every user has C(5, 2) = 10 pairs; exact users all right, constant users all ties (0.5)
    assert (acc["n_pairs"] == 10).all() and len(acc) == 40
    assert acc.loc[EXACT, "pair_accuracy"].eq(1.0).all()
    assert acc.loc[HARD, "pair_accuracy"].eq(0.5).all()
    assert acc["pair_accuracy"].mean() == (10 * 1 + 30 * 0.5) / 40 == 0.625


def test_partly_tied_scores_use_average_ranks_and_half_credit():
    # ratings 1,2,3,4; scores 1,1,2,3: score ranks 1.5,1.5,3,4
    users, truth, score = ["u"] * 4, [1, 2, 3, 4], [1, 1, 2, 3]
    rho = spearman_per_user(users, truth, score)
    # Pearson of (1,2,3,4) and (1.5,1.5,3,4): dx = -1.5,-.5,.5,1.5; dy = -1,-1,.5,1.5
    # sxy = 1.5+.5+.25+2.25 = 4.5, sxx = 5, syy = 1+1+.25+2.25 = 4.5 -> 4.5 / sqrt(22.5)
    assert rho.values[0] == pytest.approx(4.5 / np.sqrt(22.5), abs=1e-12)
    assert rho.values[0] == pytest.approx(stats.spearmanr(truth, score).statistic, abs=1e-12)
    assert not rho.constant_score[0]
    # 6 pairs: (1,2) tied scores -> 0.5, the other 5 ordered right -> 5.5 / 6
    acc = pair_accuracy_per_user(users, truth, score)
    assert acc["pair_accuracy"].tolist() == [5.5 / 6] and acc["n_pairs"].tolist() == [6]


def test_constant_scores_are_exact_and_scale_free():
    # 0.1 three times: the float mean is not 0.1, the scores are still exactly constant -> 0
    sp = pearson_per_user(["u"] * 3, [1, 2, 3], [0.1, 0.1, 0.1])
    assert sp.values.tolist() == [0.0] and sp.constant_score.tolist() == [True]
    # ratings 1,1,2 (tied) with constant scores: scored, 0; pair accuracy 0.5 on 2 pairs
    assert spearman_per_user(["u"] * 3, [1, 1, 2], [5, 5, 5]).values.tolist() == [0.0]
    assert pair_accuracy_per_user(["u"] * 3, [1, 1, 2], [5, 5, 5])[
        ["pair_accuracy", "n_pairs"]].values.tolist() == [[0.5, 2]]
    # huge, tiny and barely different scores: r of the values themselves, no 0/0 or overflow
    x = np.array([0.3, -1.2, 2.0, 0.7])
    t = np.array([1.0, 2.0, 4.0, 3.0])
    want = stats.pearsonr(t, x).statistic
    for s in (x * 8e307, x * 1e-200):  # 8e307: the plain sum of the scores overflows
        assert pearson_per_user(["u"] * 4, t, s).values[0] == pytest.approx(want, abs=1e-12)
    near = 1.0 + x * 1e-12  # differences a few thousand ulps: defined, r of (near - 1)
    assert pearson_per_user(["u"] * 4, t, near).values[0] == pytest.approx(
        stats.pearsonr(t, near - 1.0).statistic, abs=1e-9)
    assert pearson_per_user(["u"] * 2, [1, 2], [1.0, 1.0 + 2**-52]).values.tolist() == [1.0]


def test_constant_rating_and_single_rating_users_are_excluded_and_counted():
    users = ["flat"] * 3 + ["one"] + ["ok"] * 3 + ["const"] * 3
    truth = [4, 4, 4, 2, 1, 2, 3, 1, 2, 3]
    score = [1, 2, 3, 9, 1, 2, 3, 0, 0, 0]
    for f in (spearman_per_user, pearson_per_user):
        r = f(users, truth, score)
        assert r.user_ids.tolist() == ["const", "ok"] and r.values.tolist() == [0.0, 1.0]
        assert r.excluded == {"fewer_than_2": 1, "constant_rating": 1}
        assert tuple(r.excluded) == EXCLUDE_REASONS
        assert (r.n_users, r.n_scored, r.n_excluded, r.n_constant_score) == (4, 2, 2, 1)
    # pair accuracy scores exactly the same users (flat has no differently rated pair)
    acc = pair_accuracy_per_user(users, truth, score)
    assert acc.set_index("user_id")["pair_accuracy"].to_dict() == {"const": 0.5, "ok": 1.0}
    with pytest.raises(ValueError, match="max_pairs_per_user"):
        pair_accuracy_per_user(users, truth, score, max_pairs_per_user=0)


# ----------------------------------------------------------------------------- evaluate
def _ratings_frame() -> pd.DataFrame:
    """40 users with 25 distinct ratings (5 test ratings each), plus 'flat' (25 equal
    ratings) and 'short' (5 ratings: 1 test rating)."""
    rng = np.random.default_rng(7)
    users = [*EXACT, *HARD]
    rows = [(u, f"{u}-i{j}", float(r)) for u in users
            for j, r in enumerate(rng.permutation(np.arange(1, 26)))]
    rows += [("flat", f"flat-i{j}", 4.0) for j in range(25)]
    rows += [("short", f"short-i{j}", float(j + 1)) for j in range(5)]
    return pd.DataFrame(rows, columns=["user_id", "image_id", "rating"])


class _Method:
    """Knows the ratings of EXACT users; on the others constant (or seeded random guesses)."""

    def __init__(self, ratings: pd.DataFrame, hard: str = "constant", name: str = "m"):
        self.table = {(u, i): r for u, i, r in ratings.itertuples(index=False)}
        self.hard, self.name = hard, name

    def fit(self, train, side):
        return self

    def score(self, user_ids, image_ids):
        rng = np.random.default_rng(3)
        exact = np.isin(np.asarray(user_ids, dtype=object), EXACT)
        known = np.array([self.table[(u, i)] for u, i in zip(user_ids, image_ids, strict=True)])
        other = (np.full(len(known), 7.0) if self.hard == "constant"
                 else rng.normal(size=len(known)))
        return np.where(exact, known, other).astype(np.float32)


@pytest.fixture(scope="module")
def split():
    return make_rating_split(_ratings_frame(), unseen_ratio=0.25, seed=0)


def test_evaluate_counts_every_user(split, tmp_path):
    assert split.test.groupby("user_id").size().to_dict() == (
        dict.fromkeys(EXACT + HARD + ["flat"], 5) | {"short": 1})
    out = evaluate_ratings(_Method(_ratings_frame()), split, n_boot=50, results_dir=tmp_path)
    m, rec = out["metrics"], out["record"]
    assert m["spearman"] == 0.25 and m["pearson"] == 0.25 and m["pair_accuracy"] == 0.625
    assert (rec["n_users"], rec["n_users_scored"], rec["n_users_evaluated"]) == (42, 40, 40)
    assert (rec["n_users_excluded"], rec["n_users_excluded_fewer_than_2"],
            rec["n_users_excluded_constant_rating"], rec["n_users_constant_score"]) == (2, 1, 1, 30)
    assert out["excluded"]["all"] == {"fewer_than_2": 1, "constant_rating": 1}
    groups = out["user_counts"]
    assert groups["seen"]["n_users"] + groups["unseen"]["n_users"] == 42
    assert groups["seen"]["n_users_scored"] + groups["unseen"]["n_users_scored"] == 40
    assert rec["n_users_scored_unseen"] == groups["unseen"]["n_users_scored"]
    assert rec["user_counts"] == json.loads(out["path"].read_text())["user_counts"]
    # per user: every scored user is in the record, the 30 constant ones flagged
    per = pd.DataFrame(rec["per_user"]).set_index("user_id")
    assert sorted(per.index) == sorted(EXACT + HARD)
    assert per["constant_score"].sum() == 30 and per.loc[HARD, "spearman"].eq(0).all()
    assert per.loc[HARD, "pair_accuracy"].eq(0.5).all()
    # the seen / unseen means are the means of their own users
    unseen = per["unseen"]
    assert m["spearman_unseen"] == pytest.approx(per.loc[unseen, "spearman"].mean(), abs=1e-12)
    assert m["pair_accuracy_seen"] == pytest.approx(per.loc[~unseen, "pair_accuracy"].mean(),
                                                    abs=1e-12)


def test_evaluate_random_guess_by_hand(split):
    method = _Method(_ratings_frame(), hard="random")
    out = evaluate_ratings(method, split, n_boot=50)
    test = split.test
    score = method.score(test["user_id"].to_numpy(object), test["image_id"].to_numpy(object))
    rho, r, acc = [], [], []
    for u in EXACT + HARD:  # by hand: scipy per user and every pair counted
        m = (test["user_id"] == u).to_numpy()
        t, s = test["rating"].to_numpy(float)[m], score[m].astype(float)
        rho.append(stats.spearmanr(t, s).statistic)
        r.append(stats.pearsonr(t, s).statistic)
        credit = [1.0 if (t[i] - t[j]) * (s[i] - s[j]) > 0 else 0.5 if s[i] == s[j] else 0.0
                  for i, j in combinations(range(len(t)), 2) if t[i] != t[j]]
        acc.append(np.mean(credit))
    assert rho[:10] == pytest.approx([1.0] * 10) and acc[:10] == [1.0] * 10
    assert out["metrics"]["spearman"] == pytest.approx(np.mean(rho), abs=1e-12)
    assert out["metrics"]["pearson"] == pytest.approx(np.mean(r), abs=1e-6)  # float32 scores
    assert out["metrics"]["pair_accuracy"] == pytest.approx(np.mean(acc), abs=1e-12)
    assert out["record"]["n_users_scored"] == 40 and out["record"]["n_users_constant_score"] == 0


def test_leaderboard_shows_users_and_exclusions(split, tmp_path):
    frame = _ratings_frame()
    for hard, name in (("constant", "constant-on-hard"), ("random", "guess-on-hard")):
        evaluate_ratings(_Method(frame, hard, name), split, n_boot=50, results_dir=tmp_path)
    (table,), notes = build_tables(tmp_path)
    assert notes == [] and table["metrics"] == list(RATING_METRICS)
    assert table["sort_metric"] == "spearman"
    row = next(r for r in table["rows"] if r["method"] == "constant-on-hard")
    assert row["n_users_evaluated"] == 40
    assert row["users"] == {"n_users": 42, "n_users_scored": 40, "n_users_excluded": 2,
                            "excluded": {"constant_rating": 1, "fewer_than_2": 1},
                            "n_users_constant_score": 30}
    md = to_markdown(table)
    assert "| users | excluded | constant scores |" in md
    assert "| 40 of 42 | 2 | 30 |" in md and "| 40 of 42 | 2 | 0 |" in md
    assert ("2 of 42 users with test ratings excluded from every metric (1 whose test ratings "
            "are all equal, 1 with fewer than 2 test ratings: no order to predict)") in md
    assert "0.2500" in md and "0.6250" in md
