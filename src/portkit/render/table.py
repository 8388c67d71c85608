"""Aligned text tables with optional ANSI colour, without importing rich (start-up time).

A table is a header row plus rows of cells; a cell is a ``str`` or a ``Cell`` carrying a
style name. Styles become ANSI codes only when ``color`` is true (a TTY), so piped output
is plain text and golden files stay stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_ANSI = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str | None = None
    align: str = "left"  # "left" | "right"


def style(text: str, name: str | None, color: bool) -> str:
    """Wrap ``text`` in the ANSI code for style ``name`` (e.g. "red", "bold green")."""
    if not color or not name:
        return text
    codes = ";".join(_ANSI[n] for n in name.split() if n in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if codes else text


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Cell]],
    *,
    color: bool = False,
    right: Sequence[int] = (),
    gap: int = 2,
) -> str:
    """Lay out ``rows`` under ``headers``; columns listed in ``right`` are right-aligned."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    ncol = len(headers)
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row[:ncol]):
            widths[i] = max(widths[i], len(c.text))
    sep = " " * gap
    out: list[str] = []
    head = sep.join(
        (h.rjust(widths[i]) if i in right else h.ljust(widths[i])) for i, h in enumerate(headers)
    ).rstrip()
    out.append(style(head, "bold", color))
    for row in cells:
        parts: list[str] = []
        for i, c in enumerate(row[:ncol]):
            padded = c.text.rjust(widths[i]) if (i in right or c.align == "right") else c.text.ljust(widths[i])
            parts.append(style(padded, c.style, color))
        out.append(sep.join(parts).rstrip())
    return "\n".join(out)
