"""Tracks: one :class:`~benchmark.tracks.base.TrackSpec` per track, registered by name.

Adding a track is one folder here, ``<track>/`` with its ``spec.py`` (the spec) and its
code (``track.py``); :data:`SPECS` finds it. The leaderboard, the runners, the CLI and the
API read every track property (question, protocols, columns, main score, ranked metrics,
method protocol, jobs) from it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from benchmark.tracks.base import PAIR_METHOD, RANKING_METHOD, Metric, TrackSpec

__all__ = ["PAIR_METHOD", "RANKING_METHOD", "SPECS", "Metric", "TrackSpec", "get_spec",
           "spec_for_records", "spec_for_table"]

#: the built-in tracks' folders, in the order tables and ``gembench list`` show them; any
#: other folder with a ``spec.py`` is a track too (after these, by name)
BUILT_IN = ("ranking", "rerank", "preference", "rating", "lora_edit")


def _discover() -> dict[str, TrackSpec]:
    """Every ``benchmark/tracks/<folder>/spec.py``'s ``SPECS``, by track name.

    Why discovery: adding a track is one folder with its spec, and nothing else to edit.
    Spec modules import only :mod:`benchmark.tracks.base`, so this stays light.
    """
    here = Path(__file__).parent
    found = sorted(p.parent.name for p in here.glob("*/spec.py"))
    folders = [f for f in BUILT_IN if f in found] + [f for f in found if f not in BUILT_IN]
    specs: dict[str, TrackSpec] = {}
    for folder in folders:
        for spec in importlib.import_module(f"benchmark.tracks.{folder}.spec").SPECS:
            if spec.name in specs:
                raise ValueError(f"track {spec.name!r} is declared twice "
                                 f"(benchmark/tracks/{folder}/spec.py)")
            specs[spec.name] = spec
    return specs


SPECS: dict[str, TrackSpec] = _discover()


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
