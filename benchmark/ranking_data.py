"""The full-ranking data of a split: what a method fits on, what it is scored against, and
its training view; and one fit + evaluate of a ranking method.

Shared by every job that fits a ranking method (runs, tuning, the rerank track's first
stage, the lora-edit track's user model, reproduce), so they all see the same rows and the
same view. It sits below the tracks (``benchmark.tracks.ranking`` re-exports it) so that
the tracks built on a ranking method never import another track.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.store import Dataset
from benchmark.evaluate import RankingEvaluation, evaluate_ranking
from benchmark.protocols import InteractionData, RankingMethod, SideInfo
from benchmark.splits import Split


def track_data(split: Split, item_kind: str, part: str = "test"
               ) -> tuple[InteractionData, sp.csr_matrix]:
    """Fit data and relevance matrix for evaluating ``part`` of one item kind.

    For ``test`` the fit data is train + valid; for ``valid`` it is train.
    """
    fit_parts = ["train", "valid"] if part == "test" else ["train"]
    frames = {p: split.part(p, item_kind) for p in ("train", "valid", "test")}
    users = pd.Index(
        np.unique(np.concatenate([frames[p]["user_id"].astype(str).to_numpy() for p in frames])),
        dtype=object,
    )
    items = split.items(item_kind)
    source = str(split.path or "<split>")
    fit = InteractionData.from_frame(
        pd.concat([frames[p] for p in fit_parts], ignore_index=True), users, items, item_kind,
        source=source,
    )
    held_out = InteractionData.from_frame(frames[part], users, items, item_kind, source=source)
    return fit, held_out.matrix


def track_side(ds: Dataset, split: Split, item_kind: str, part: str, fit: InteractionData,
               *, seed: int = 0, extra: dict[str, Any] | None = None) -> SideInfo:
    """The side information of a ranking track scored on ``part``: its training view.

    Hidden from the view: every interaction of the parts after ``fit`` (test; valid and test
    when tuning on valid), and with them their images and prompts (benchmark.views).
    """
    from benchmark.views import ranking_view

    hidden_parts = ["test"] if part == "test" else ["valid", "test"]
    frames = [split.part(p, item_kind) for p in hidden_parts]
    hidden = InteractionData.from_frame(pd.concat(frames, ignore_index=True), fit.user_ids,
                                        fit.item_ids, item_kind,
                                        source=str(split.path or "<split>")).matrix
    view = ranking_view(ds, fit, hidden, visible="train+valid" if part == "test" else "train")
    return SideInfo(view=view, item_kind=item_kind, seed=seed, extra=extra)


def run_method(
    method: RankingMethod,
    fit: InteractionData,
    relevant: sp.csr_matrix,
    side: SideInfo,
    metric_names: tuple[str, ...],
    memory_budget_mb: float = 512.0,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[RankingEvaluation, dict[str, float]]:
    """Fit, then evaluate on ``device`` (cpu | cuda | auto | cpu-torch); seconds of each."""
    t0 = time.perf_counter()
    method.fit(fit, side)
    t1 = time.perf_counter()
    popularity = np.asarray(fit.matrix.getnnz(axis=0), dtype=np.float64)
    evaluation = evaluate_ranking(
        method, fit.matrix, relevant, metric_names, memory_budget_mb=memory_budget_mb,
        item_popularity=popularity, progress=progress, desc=f"{method.name}", device=device,
    )
    t2 = time.perf_counter()
    return evaluation, {"fit": t1 - t0, "evaluate": t2 - t1}


def metrics_of(track: Any, metrics: Sequence[str] | None) -> tuple[str, ...]:
    """``metrics`` checked against ``track`` (a RankingTrack), or its defaults when None."""
    return track.metrics if metrics is None else track.check_metrics(metrics)
