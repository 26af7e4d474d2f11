"""The full-ranking tracks, lora-rec and image-rec: which items will this user pick next?

Their specs are in :mod:`benchmark.tracks.ranking.spec`. The rows each track selects are a
:class:`benchmark.tasks.RankingTrack` (the split reads them, so they sit below the tracks);
the data a method fits on and is scored against is :mod:`benchmark.ranking_data` (the
rerank and lora-edit tracks fit ranking methods too); a run's job is
:func:`benchmark.run.jobs.run_one`.
"""
