"""Attribution scores as the explorer shows them: a score's level on the theme's scale, its
style in the token stream and the heat map, its text bar and shade glyph, and the attribution on
show (one row of a stored record).

Kept apart from the widgets so that the stream, the attribution pane, the legend and the matrix
screen read one definition, and so it can be tested without a terminal. Unsigned methods
(gradient norm, saliency, attention) are shown as |score| / the row's largest |score| on the
theme's sequential scale; signed ones (input × gradient, integrated gradients) as score / the
row's largest |score| on the diverging scale. Without colour (NO_COLOR) the top contributors are
bold (the top three also underlined), negative scores italic, and bars and shades carry the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.style import Style
from rich.text import Text

from tokentui.core.attribution import Attribution, Method, method, top_contributors
from tokentui.tui.theme import DivergingScale, MetricScale
from tokentui.tui.widgets.alternatives import bar

SHADES = " ░▒▓█"  # the heat map's cells without colour, from nothing to the row's largest
TOP = 10  # contributors listed in the attribution pane
TOP_MARKED = 3  # of them, underlined too (NO_COLOR)
_DIM = Style(dim=True)


def levels(scores: np.ndarray, signed: bool) -> np.ndarray:
    """Each score's share of the largest |score| of its row (the last axis): in [-1, 1] when
    `signed`, else |score| in [0, 1]. A row of zeros stays zero."""
    a = np.asarray(scores, dtype=np.float64)
    top = np.abs(a).max(axis=-1, keepdims=True) if a.size else np.zeros(a.shape[:-1] + (1,))
    out: np.ndarray = np.divide(a if signed else np.abs(a), top, out=np.zeros_like(a), where=top > 0)
    return out


def cell_style(level: float, signed: bool, scale: MetricScale, diverging: DivergingScale) -> Style:
    """The colour of a score whose level (see `levels`) is `level`."""
    return diverging.style(level) if signed else scale.style(level)


def shade(level: float) -> str:
    """A glyph for |level| (0 … 1): blank only for an exact zero."""
    a = abs(level)
    if not a > 0:
        return SHADES[0]
    return SHADES[max(1, min(len(SHADES) - 1, int(np.ceil(a * (len(SHADES) - 1)))))]


def score_bar(level: float, width: int) -> str:
    """A text bar of |level| (0 … 1) in eighths of a cell."""
    return bar(abs(level), width)


def fmt_score(score: float) -> str:
    """A score in at most 9 cells, its sign kept."""
    return f"{score:.4g}"


def fmt_column(scores: list[float]) -> list[str]:
    """Scores to be read in one column: one number of decimals for all, 4 significant digits of
    the largest (10.29, 2.66, 1.44 — not 10.29, 2.658, 1.44, whose points did not line up);
    each as `fmt_score` where the largest is too large or too small for fixed decimals."""
    import math

    top = max((abs(s) for s in scores if math.isfinite(s)), default=0.0)
    if not 1e-3 <= top < 1e5:
        return [fmt_score(s) for s in scores]
    decimals = max(0, 3 - math.floor(math.log10(top)))
    return [f"{s:.{decimals}f}" for s in scores]


@dataclass
class Shown:
    """The attribution on show: row `position` of `record`, chosen on branch `branch` of run
    `run_id`. The stream colours positions 0…position−1 by it while the cursor moves on."""

    record: Attribution
    run_id: str
    branch: int
    position: int
    scores: np.ndarray = field(init=False)  # float32 [position]: the row's scores before the target
    levels: np.ndarray = field(init=False)  # the scores' levels (see `levels`)
    top: list[int] = field(init=False)  # the largest |score| first
    rank: dict[int, int] = field(init=False)  # position → its place among `top` (1-based)

    def __post_init__(self) -> None:
        row = self.record.row(self.position)
        if row is None:
            raise ValueError(f"the record does not hold position {self.position}")
        self.scores = row
        self.levels = levels(row, self.method.signed)
        self.top = top_contributors(row, TOP)
        self.rank = {p: i + 1 for i, p in enumerate(self.top)}

    @property
    def method(self) -> Method:
        return method(self.record.method)

    @property
    def row_index(self) -> int:
        return self.record.positions.index(self.position)

    def target_value(self) -> float | None:
        v = self.record.target_values
        return None if v is None else float(v[self.row_index])

    def completeness(self) -> float | None:
        c = self.record.completeness
        return None if c is None else float(c[self.row_index])

    def style(self, i: int, scale: MetricScale, diverging: DivergingScale, no_color: bool) -> Style:
        """Position i's style in the stream (the target's own mark is the widget's)."""
        if i >= self.position:
            return _DIM
        if not no_color:
            return cell_style(float(self.levels[i]), self.method.signed, scale, diverging)
        r = self.rank.get(i)
        style = Style(bold=r is not None, underline=r is not None and r <= TOP_MARKED)
        if self.method.signed and self.scores[i] < 0:
            style += Style(italic=True)
        return style


def append_scale(text: Text, scale: MetricScale, diverging: DivergingScale, signed: bool, suffix: str = "") -> None:
    """The colour strip of the scores' scale, one cell a step: "− … +" on the diverging scale for
    signed methods, "low … high" on the sequential one otherwise (`suffix` after the last word)."""
    if signed:
        text.append("− ")
        n = len(diverging.backgrounds)
        for i in range(n):
            text.append(" ", style=diverging.style((i - n // 2) / (n // 2)))
        text.append(" +" + suffix)
    else:
        text.append("low ")
        n = len(scale.backgrounds)
        for i in range(n):
            text.append(" ", style=scale.style((i + 0.5) / n, False))
        text.append(" high" + suffix)
