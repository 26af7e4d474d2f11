"""Errors a user is meant to read: each names the file, the row and the rule."""

from __future__ import annotations


class GembenchError(Exception):
    """Base class: the CLI prints these as one line and exits with code 2."""

    exit_code = 2


class DataError(GembenchError):
    """Bad input data: a malformed file, a missing column, an unknown id, a duplicate row.

    ``row`` counts data rows from 1 within ``path``, the header excluded (in a CSV
    file with a header, row N is line N + 1).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.row = row
        self.rule = rule
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.row is not None:
            where.append(f"row {self.row}")
        text = (": ".join([", ".join(where), self.message]) if where else self.message)
        if self.rule:
            text += f" (rule: {self.rule})"
        return text


class SubmissionError(DataError):
    """A predictions file that breaks a submission rule."""


class UntrustedCode(DataError):
    """A file (record, judge, config) names code that is not registered: nothing is imported
    without ``--trust-code`` (``trust_code=True``)."""


class NotApplicable(GembenchError):
    """A method cannot run on this data (e.g. ``oracle`` without ground truth)."""
