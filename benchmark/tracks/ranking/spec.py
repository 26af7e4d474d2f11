"""The specs of the full-ranking tracks, lora-rec and image-rec."""

from __future__ import annotations

from benchmark.tracks.base import RANKING_METHOD, TrackSpec

#: the full-ranking tables' default columns and main score
RANKING_COLUMNS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50",
                   "hit@10", "mrr@10")
RANKING_PROTOCOLS = ("leave-last-out", "temporal", "random", "cold-start")

SPECS = (
    TrackSpec("lora-rec", "which LoRAs will this user use next?", RANKING_PROTOCOLS,
              RANKING_COLUMNS, "ndcg@10", RANKING_METHOD, "benchmark.run.jobs:run_one",
              item_kind="lora", not_ranked=("avg_popularity",)),
    TrackSpec("image-rec", "which images will this user like?", RANKING_PROTOCOLS,
              (*RANKING_COLUMNS, "recall@100", "ndcg@100"), "ndcg@10", RANKING_METHOD,
              "benchmark.run.jobs:run_one", item_kind="image", not_ranked=("avg_popularity",)),
)
