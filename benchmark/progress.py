"""Stable import path for progress bars (they live in :mod:`benchmark.core.progress`)."""

from benchmark.core.progress import progress_bar

__all__ = ["progress_bar"]
