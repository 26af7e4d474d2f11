"""Names that become path components: one pattern, and a check that a path stays in its root.

Every name gembench turns into a file or folder name (``--name``, data set names, split
protocols, track and method names) must match :data:`NAME_PATTERN`: a letter or digit, then
up to 127 letters, digits or ``. _ : + @ -``; never ``..``, a slash, a backslash, whitespace
or a control character. Why: the names come from files anyone can edit (``dataset.json``,
``split.json``, records), and a name such as ``../../x`` would write outside ``results/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.core.errors import DataError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = ("a name is a letter or digit followed by up to 127 letters, digits or . _ : + @ -"
             ", without '..' (docs/security.md)")


def safe_name(value: object, what: str, path: str | os.PathLike | None = None) -> str:
    """``value`` when it matches :data:`NAME_PATTERN` (and has no ``..``); else a DataError
    naming ``what`` (and ``path``, the file it came from)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise DataError(f"{what} {value!r} is not a safe name",
                        path=None if path is None else str(path), rule=NAME_RULE)
    return value


def under_root(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` when it resolves to a place inside ``root`` (symbolic links followed);
    else a DataError. Checked before anything is written there."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if not target.is_relative_to(base):
        raise DataError(f"{path} lies outside {root}", path=str(path),
                        rule="gembench writes only under its own folders")
    return Path(path)
