"""Tracks: one :class:`~benchmark.tracks.base.TrackSpec` per track, registered by name.

Adding a track is one module (or folder) here that defines its spec, plus the entry in
:data:`SPECS`; the leaderboard, the runners, the CLI and the API read every track property
(question, protocols, columns, main score, ranked metrics, method protocol, jobs) from it.
"""

from __future__ import annotations

from typing import Any

from benchmark.tracks.base import Metric, TrackSpec

__all__ = ["SPECS", "Metric", "TrackSpec", "get_spec", "spec_for_records", "spec_for_table"]

#: the full-ranking tables' default columns and main score
RANKING_COLUMNS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50",
                   "hit@10", "mrr@10")
RANKING_PROTOCOLS = ("leave-last-out", "temporal", "random", "cold-start")
RANKING_METHOD = "benchmark.protocols:RankingMethod"
PAIR_METHOD = "benchmark.preference:PreferenceMethod"

SPECS: dict[str, TrackSpec] = {spec.name: spec for spec in (
    TrackSpec("lora-rec", "which LoRAs will this user use next?", RANKING_PROTOCOLS,
              RANKING_COLUMNS, "ndcg@10", RANKING_METHOD, "benchmark.run.jobs:run_one",
              item_kind="lora", not_ranked=("avg_popularity",)),
    TrackSpec("image-rec", "which images will this user like?", RANKING_PROTOCOLS,
              (*RANKING_COLUMNS, "recall@100", "ndcg@100"), "ndcg@10", RANKING_METHOD,
              "benchmark.run.jobs:run_one", item_kind="image", not_ranked=("avg_popularity",)),
    # records of the rerank protocol carry their ranking track's name (lora-rec, image-rec)
    TrackSpec("rerank", "does a second stage reorder a first stage's short list better?",
              ("rerank",), ("recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10",
                            "cond_recall@5", "cond_ndcg@5"), "ndcg@5", RANKING_METHOD,
              "benchmark.rerank:rerank_records",
              not_ranked=("avg_popularity", "first_stage_hit"),
              references=("reversed-first-stage",)),
    TrackSpec("preference", "which of two images does this user prefer?", ("per-user-pairs",),
              ("accuracy", "accuracy_seen", "accuracy_unseen", "user_accuracy",
               "user_accuracy_unseen", "auc", "auc_unseen", "accuracy_plain"), "accuracy",
              PAIR_METHOD, "benchmark.preference:run_preference", item_kind="image",
              records="pairs"),
    TrackSpec("rating", "how does this user rate each image?", ("per-user-ratings", "source-"),
              ("spearman", "spearman_seen", "spearman_unseen", "pearson", "pearson_unseen",
               "pair_accuracy", "pair_accuracy_unseen"), "spearman", PAIR_METHOD,
              "benchmark.ratings:evaluate_ratings", item_kind="image",
              record_track="preference", records="ratings"),
    TrackSpec("lora-edit", "edit a LoRA toward this user's taste", ("leave-last-out",),
              ("gain", "win_rate", "fidelity", "distance"), "gain",
              "benchmark.lora.track:DirectionEditor", "benchmark.lora.track:run_lora_edit",
              item_kind="lora", not_ranked=("distance",)),
)}


def get_spec(name: str) -> TrackSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown track {name!r}; known tracks: {sorted(SPECS)}") from None


def spec_for_table(track: str, protocol: str | None, records: list[dict[str, Any]] = ()
                   ) -> TrackSpec:
    """The spec of a leaderboard table (``track``, ``protocol``) and its records."""
    if protocol and str(protocol).startswith("rerank"):
        return SPECS["rerank"]
    if records and all("n_ratings_test" in r for r in records):
        return SPECS["rating"]
    return SPECS.get(track) or SPECS["lora-rec"]


def spec_for_records(records: list[dict[str, Any]]) -> TrackSpec:
    first = records[0]
    return spec_for_table(first["track"], first["split"].get("protocol"), records)
