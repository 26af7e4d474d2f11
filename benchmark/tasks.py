"""Tracks: a track is data selection + protocol + metrics, registered by name.

The CLI only composes registered pieces (MTEB / lm-evaluation-harness style):
``gembench run --tracks lora-rec`` looks the track up here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmark.metrics import DEFAULT_RANKING_METRICS, parse_metric

if TYPE_CHECKING:
    import pandas as pd

#: the smallest per-track maximum cut-off: every ranking track takes lists of at least 100
MIN_MAX_K = 100


@dataclass(frozen=True)
class RankingTrack:
    """A full-ranking recommendation track over one item kind.

    ``kinds`` lists interaction kinds in order of preference: the first kind
    present in a data set is the one used (ImageGem has no per-user likes, so
    ``image-rec`` falls back from ``like`` to ``create`` there); the kind used
    is recorded in the split.

    ``metrics`` are the track's default metrics (``gembench run --metrics`` replaces
    them); ``max_k`` (at least :data:`MIN_MAX_K`) is the largest cut-off it evaluates and
    the most items a submission may rank per user. The engine's top-K is the largest
    cut-off asked.
    """

    name: str
    item_kind: str
    kinds: tuple[str, ...]
    question: str
    metrics: tuple[str, ...] = field(default=tuple(DEFAULT_RANKING_METRICS))
    protocol: str = "full-ranking"
    max_k: int = MIN_MAX_K

    def __post_init__(self) -> None:
        if isinstance(self.max_k, bool) or not isinstance(self.max_k, int) \
                or self.max_k < MIN_MAX_K:
            raise ValueError(f"track {self.name!r}: max_k must be an int >= {MIN_MAX_K}, "
                             f"got {self.max_k!r}")
        self.check_metrics(self.metrics)

    def check_metrics(self, names: Iterable[str] | str) -> tuple[str, ...]:
        """``names`` (a sequence or a comma list) as canonical metric names, duplicates
        dropped; one ValueError for an unknown name or a cut-off above :attr:`max_k`."""
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        out: list[str] = []
        for name in names:
            base, k = parse_metric(name)
            if k > self.max_k:
                raise ValueError(f"metric {name!r}: cut-off {k} is above the {self.name} "
                                 f"track's max K = {self.max_k}")
            canonical = f"{base}@{k}"
            if canonical not in out:
                out.append(canonical)
        if not out:
            raise ValueError(f"no metrics given for the {self.name} track")
        return tuple(out)

    def interaction_kind(self, available: set[str]) -> str | None:
        """The interaction kind this track uses on a data set with ``available`` kinds."""
        return next((k for k in self.kinds if k in available), None)

    def select(self, interactions: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
        """This track's rows of an interactions table, and the interaction kind used."""
        of_kind = interactions[interactions["item_kind"] == self.item_kind]
        kind = self.interaction_kind(set(of_kind["kind"].unique()))
        if kind is None:
            return of_kind.iloc[:0], None
        return of_kind[of_kind["kind"] == kind], kind


TRACKS: dict[str, RankingTrack] = {
    "lora-rec": RankingTrack(
        name="lora-rec",
        item_kind="lora",
        kinds=("generate", "rate", "download"),
        question="which LoRAs will this user use next?",
    ),
    "image-rec": RankingTrack(
        name="image-rec",
        item_kind="image",
        kinds=("like", "create"),
        question="which images will this user like?",
        # ImageGem reports image recommendation at Recall@100: comparable by default
        metrics=(*DEFAULT_RANKING_METRICS, "recall@100", "ndcg@100"),
    ),
}


def get_track(name: str) -> RankingTrack:
    try:
        return TRACKS[name]
    except KeyError:
        raise KeyError(f"unknown track {name!r}; known tracks: {sorted(TRACKS)}") from None
