"""Names are data, not markup: one escaper per output format."""

from __future__ import annotations

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "^": r"\textasciicircum{}",
                  "~": r"\textasciitilde{}", "\n": " ", "\r": " "}


def _latex_escape(text: str) -> str:
    """Every LaTeX special character of ``text`` escaped, in one pass (so the braces of
    ``\\textbackslash{}`` are not escaped again); line breaks become spaces."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def md_cell(text: object) -> str:
    """``text`` safe inside one Markdown table cell: ``\\`` and ``|`` escaped, line breaks
    as spaces, so a name never ends its row or adds one (a name is data, not markup)."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return "".join(" " if ch in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029" else ch for ch in out)


