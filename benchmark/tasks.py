"""Tracks: a track is data selection + protocol + metrics, registered by name.

The CLI only composes registered pieces (MTEB / lm-evaluation-harness style):
``gembench run --tracks lora-rec`` looks the track up here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmark.metrics import DEFAULT_RANKING_METRICS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class RankingTrack:
    """A full-ranking recommendation track over one item kind.

    ``kinds`` lists interaction kinds in order of preference: the first kind
    present in a data set is the one used (ImageGem has no per-user likes, so
    ``image-rec`` falls back from ``like`` to ``create`` there); the kind used
    is recorded in the split.
    """

    name: str
    item_kind: str
    kinds: tuple[str, ...]
    question: str
    metrics: tuple[str, ...] = field(default=tuple(DEFAULT_RANKING_METRICS))
    protocol: str = "full-ranking"

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
    ),
}


#: tracks that are not full ranking, each run by its own module (`gembench run --tracks
#: preference`; `gembench edit run` for lora-edit): name -> (question, protocol)
OTHER_TRACKS: dict[str, tuple[str, str]] = {
    "preference": ("which of two images does this user prefer?",
                   "per-user pairs, held-out users, few-shot k; benchmark.preference"),
    "lora-edit": ("edit a LoRA toward this user's taste",
                  "PCA weight space, render, judge; benchmark.lora.track"),
}


def get_track(name: str) -> RankingTrack:
    try:
        return TRACKS[name]
    except KeyError:
        raise KeyError(f"unknown track {name!r}; known tracks: {sorted(TRACKS)}") from None
