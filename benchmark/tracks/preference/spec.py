"""The spec of the preference track: which of two images does this user prefer?"""

from __future__ import annotations

from benchmark.tracks.base import PAIR_METHOD, TrackSpec

SPECS = (
    TrackSpec("preference", "which of two images does this user prefer?", ("per-user-pairs",),
              ("accuracy", "accuracy_seen", "accuracy_unseen", "user_accuracy",
               "user_accuracy_unseen", "auc", "auc_unseen", "accuracy_plain"), "accuracy",
              PAIR_METHOD, "benchmark.tracks.preference.track:run_preference",
              item_kind="image", records="pairs"),
)
