"""The spec of the lora-edit track: edit a LoRA toward this user's taste."""

from __future__ import annotations

from benchmark.tracks.base import TrackSpec

SPECS = (
    TrackSpec("lora-edit", "edit a LoRA toward this user's taste", ("leave-last-out",),
              ("gain", "win_rate", "fidelity", "distance"), "gain",
              "benchmark.tracks.lora_edit.track:DirectionEditor",
              "benchmark.tracks.lora_edit.track:run_lora_edit",
              item_kind="lora", not_ranked=("distance",)),
)
