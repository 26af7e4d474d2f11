"""The spec of the rerank track (its records carry their ranking track's name)."""

from __future__ import annotations

from benchmark.tracks.base import RANKING_METHOD, TrackSpec

SPECS = (
    TrackSpec("rerank", "does a second stage reorder a first stage's short list better?",
              ("rerank",), ("recall@1", "recall@5", "ndcg@5", "ndcg@10", "mrr@10",
                            "cond_recall@5", "cond_ndcg@5"), "ndcg@5", RANKING_METHOD,
              "benchmark.tracks.rerank.track:rerank_records",
              not_ranked=("avg_popularity", "first_stage_hit"),
              references=("reversed-first-stage",)),
)
