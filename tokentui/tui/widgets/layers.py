"""The layer view: logit-lens entropy per layer of the token under the cursor (horizontal bars),
and a strip of the selected metric over the branch's positions with the cursor marked."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from tokentui.core.metrics import METRICS
from tokentui.core.run import Run
from tokentui.tui.widgets.alternatives import bar

SPARK = "▁▂▃▄▅▆▇█"


def pooled(values: np.ndarray, cells: int) -> np.ndarray:
    """Mean-pool values (0..1, NaN allowed) into `cells` bins (a max saturates on long runs); NaN
    where a bin holds no value."""
    n = len(values)
    cells = max(1, min(cells, n))
    edges = np.linspace(0, n, cells + 1).astype(int)
    out = np.full(cells, np.nan)
    for c in range(cells):
        chunk = values[edges[c] : max(edges[c] + 1, edges[c + 1])]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[c] = chunk.mean()
    return out


def sparkline(cells: np.ndarray, n_values: int, cursor: int | None) -> Text:
    """Pooled cells → sparkline text, the cell holding the cursor position reversed."""
    text = Text()
    if not len(cells) or not n_values:
        return text
    cur = None if cursor is None else min(len(cells) - 1, int(cursor * len(cells) / n_values))
    chars = "".join(" " if v != v else SPARK[min(7, int(v * 8))] for v in cells.tolist())
    text.append(chars)
    if cur is not None:
        text.stylize("reverse bold", cur, cur + 1)
    return text


class LayersPane(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._pooled: tuple[np.ndarray, int, np.ndarray] | None = None  # (levels, width, cells)
        self._args: tuple | None = None

    def on_resize(self) -> None:
        """Bars and the strip are sized to the pane: draw them again at its new width."""
        if self._args is not None:
            self.show(*self._args)

    def show(self, run: Run | None, branch_id: int, position: int, metric: str, levels: np.ndarray) -> None:
        """`levels`: the metric over the branch, normalised (the token stream's own array)."""
        self._args = (run, branch_id, position, metric, levels)
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"), layout=False)
            return
        step = run.step(branch_id, position)
        inner = self.content_region.width or 40
        width = max(4, inner - 13)
        lines = [Text(f"lens entropy per layer · pos {position}", style="bold")]
        ent = step.layer_entropy
        top = max(1e-9, float(np.nanmax(ent))) if np.isfinite(ent).any() else 1.0
        for layer, h in enumerate(ent.tolist(), start=1):
            if math.isnan(h):
                lines.append(Text(f"L{layer:<3} {'…':>6}", style="dim"))
            else:
                lines.append(Text(f"L{layer:<3} {h:6.3f} ") + Text(bar(h / top, width), style="magenta"))
        lines.append(Text(f"{METRICS[metric].name} over branch (tall=unsure)", style="bold"))
        cells = max(10, inner)
        if self._pooled is None or self._pooled[0] is not levels or self._pooled[1] != cells:
            self._pooled = (levels, cells, pooled(levels, cells))
        lines.append(sparkline(self._pooled[2], len(levels), position))
        self.update(Group(*lines), layout=False)
