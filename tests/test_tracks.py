"""Track specs (what each table reads) and check_method (a method against its protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import api
from benchmark.conformance import ProtocolViolation, check_method
from benchmark.leaderboard import REFERENCE_METHODS, sort_metric, table_metrics
from benchmark.protocols import RankingMethod
from benchmark.tracks import SPECS, get_spec, spec_for_table


def test_every_track_has_one_spec_and_the_tables_read_it():
    assert set(SPECS) == {"lora-rec", "image-rec", "rerank", "preference", "rating",
                          "lora-edit"}
    assert table_metrics("image-rec", "leave-last-out")[-2:] == ("recall@100", "ndcg@100")
    assert sort_metric("lora-rec", "rerank-itemknn-c10") == "ndcg@5"
    assert sort_metric("lora-edit", "leave-last-out") == "gain"
    assert spec_for_table("preference", "source-split",
                          [{"n_ratings_test": 3}]).name == "rating"
    assert not get_spec("lora-edit").is_ranked("distance")
    assert get_spec("lora-edit").is_ranked("gain")
    assert {"oracle", "oracle-direction", "reversed-first-stage"} <= REFERENCE_METHODS
    assert "rerank" in api.registered()["tracks"]
    with pytest.raises(KeyError, match="unknown track"):
        get_spec("no-such-track")


def test_holds_tells_a_tracks_records_apart():
    pair = {"track": "preference", "split": {"protocol": "per-user-pairs-k5"}}
    rating = {"track": "preference", "split": {"protocol": "per-user-ratings-kall"},
              "n_ratings_test": 10}
    assert SPECS["preference"].holds(pair) and not SPECS["preference"].holds(rating)
    assert SPECS["rating"].holds(rating) and not SPECS["rating"].holds(pair)
    assert SPECS["rerank"].holds({"track": "rerank", "split": {"protocol": "rerank-x-c10"}})


class Good(RankingMethod):
    name = "check-good"

    def __init__(self, alpha: float = 1.0, seed: int = 0):
        self.alpha, self.seed = alpha, seed

    def fit(self, train, side):
        self.pop_ = np.asarray(train.matrix.sum(axis=0), np.float32).ravel() * self.alpha
        return self

    def score(self, user_idx):
        return np.tile(self.pop_, (len(user_idx), 1))


class NoSelf(Good):
    name = "check-no-self"

    def fit(self, train, side):
        super().fit(train, side)


class WrongShape(Good):
    name = "check-wrong-shape"

    def score(self, user_idx):
        return self.pop_[None, :-1].repeat(len(user_idx), 0)


class Unseeded(Good):
    name = "check-unseeded"

    def score(self, user_idx):
        return np.random.default_rng().random((len(user_idx), len(self.pop_)))


class Stateful(Good):
    name = "check-stateful"

    def fit(self, train, side):
        self.counts = 1  # learned state without a trailing underscore
        return super().fit(train, side)


def test_check_method_passes_a_conforming_method():
    passed = check_method(Good, "lora-rec")
    assert "fit(train, side) returns self" in passed
    assert "the same seed gives the same scores" in passed


@pytest.mark.parametrize("cls,rule", [
    (NoSelf, "returns self"), (WrongShape, "shape"), (Unseeded, "same seed"),
    (Stateful, "ending in '_'"),
])
def test_check_method_names_the_broken_rule(cls, rule):
    with pytest.raises(ProtocolViolation, match=rule):
        check_method(cls, "image-rec")


def test_check_method_on_the_preference_track():
    passed = api.check_method("baselines.pref_global:GlobalReward", "preference")
    assert "pair scores are finite" in passed
