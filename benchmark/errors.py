"""Stable import path for the user-facing errors (they live in :mod:`benchmark.core.errors`)."""

from benchmark.core.errors import (
    DataError,
    GembenchError,
    NotApplicable,
    SubmissionError,
    UntrustedCode,
)

__all__ = ["DataError", "GembenchError", "NotApplicable", "SubmissionError", "UntrustedCode"]
