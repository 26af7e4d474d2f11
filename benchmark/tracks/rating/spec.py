"""The spec of the rating track (its records are filed under the preference track)."""

from __future__ import annotations

from benchmark.tracks.base import PAIR_METHOD, TrackSpec

SPECS = (
    TrackSpec("rating", "how does this user rate each image?", ("per-user-ratings", "source-"),
              ("spearman", "spearman_seen", "spearman_unseen", "pearson", "pearson_unseen",
               "pair_accuracy", "pair_accuracy_unseen"), "spearman", PAIR_METHOD,
              "benchmark.tracks.rating.track:evaluate_ratings", item_kind="image",
              record_track="preference", records="ratings"),
)
