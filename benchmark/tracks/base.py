"""What a track is: one small declarative spec (MTEB / lm-evaluation-harness style).

A :class:`TrackSpec` names the question a track answers, the split protocols its records
are filed under, its metrics (each with higher-is-better and whether it is ranked), its
main score, the protocol its methods follow and the function that plans and runs its jobs.
The leaderboard, the runners, the CLI and the API read these properties from the spec;
nothing else keeps a list of track names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the method protocols, as ``"module:attr"`` strings (imported on use)
RANKING_METHOD = "benchmark.protocols:RankingMethod"
PAIR_METHOD = "benchmark.per_user:PreferenceMethod"


@dataclass(frozen=True)
class Metric:
    """A metric's properties: which way is better, and whether methods compete on it.

    ``ranked=False``: a description or a cost (a list's mean popularity, an edit's weight
    distance), shown but never bold and never tested.
    """

    name: str
    higher_is_better: bool = True
    ranked: bool = True


@dataclass(frozen=True)
class TrackSpec:
    """One track: question, protocols, metrics, main score, method protocol, jobs.

    ``columns``: the leaderboard's default columns (metric names as records store them);
    ``main_score``: the metric tables sort by; ``protocols``: record protocols of this
    track start with one of these; ``not_ranked``: metric-name prefixes that are not
    scores; ``method_protocol`` / ``jobs``: ``"module:attr"`` strings (imported on use),
    the class a method follows and the function that runs the track's jobs; ``records``:
    which records of ``record_track`` belong to this track (``"all"``, ``"ratings"``,
    ``"pairs"``: rating records carry ``n_ratings_test``).
    """

    name: str
    question: str
    protocols: tuple[str, ...]
    columns: tuple[str, ...]
    main_score: str
    method_protocol: str
    jobs: str
    item_kind: str | None = None
    not_ranked: tuple[str, ...] = ()
    record_track: str | None = None  # the ``track`` field of its records (default: name)
    records: str = "all"
    references: tuple[str, ...] = field(default=())  # control rows besides registry refs

    def metric(self, name: str) -> Metric:
        """``name``'s properties on this track."""
        return Metric(name, higher_is_better=True,
                      ranked=not any(name.startswith(p) for p in self.not_ranked))

    def is_ranked(self, name: str) -> bool:
        return self.metric(name).ranked

    def holds(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` is one of this track's (by track name, protocol, kind)."""
        if record.get("track") != (self.record_track or self.name):
            return False
        protocol = str(record.get("split", {}).get("protocol", ""))
        if not protocol.startswith(self.protocols):
            return False
        is_rating = "n_ratings_test" in record
        return self.records == "all" or (self.records == "ratings") == is_rating
